"""Evaluate tests/data/rules.json with one set of rulebook modules; standard library only, Python 3.9+.

Used by test_rulebook.py in-process (the modules' import route and the agent's checkout route) and as a script
inside the agent's zipapp (`python -I rulebook_eval.py APP.pyz TABLE.json` prints the outcomes as JSON).
Each outcome is {"ok": value} or {"error": message}; the test compares them with the table.
"""

import json
import sys


def _call(fn, *args, **kwargs):
    try:
        return {"ok": fn(*args, **kwargs)}
    except ValueError as exc:  # every rulebook error class is a ValueError
        return {"error": str(exc)}


def evaluate(table, rules):
    """``rules`` has the modules as attributes: names, expires, duration, runner, urls."""
    names, expires, duration, runner, urls = (rules.names, rules.expires, rules.duration, rules.runner, rules.urls)
    now = expires.parse_expires_at(table["now"])
    out = {}
    out["names"] = [
        {
            "display": _call(names.display_shortest, row["name"]),
            "split": _call(lambda n: list(names.split_digest(n)), row["name"]),
            "key": _call(names.name_key, row["name"]),
            "key_as": _call(names.name_key, row.get("key_as") or row["name"]),
        }
        for row in table["names"]
    ]
    out["digests"] = [names.digest_matches(r["wanted"], r["have"]) for r in table["digests"]]
    runners = table["runners"]

    def key_of(name, show=runners["show"]):
        text = show.get(names.display_shortest(name))
        return names.runner_key({"modelfile": text}) if text is not None else None

    cases = []
    for row in runners["cases"]:
        entry = names.find_runner(runners["ps"], row["name"], None if row.get("without_show") else key_of)
        _base, digest = names.split_digest(row["name"])
        cases.append(
            {
                "runner": entry["name"] if entry else None,
                "digest_ok": names.digest_matches(digest, entry.get("digest")) if entry and digest else None,
            }
        )
    out["runner_cases"] = cases
    out["runner_keys"] = [
        names.runner_key({"modelfile": r["show"]} if r["show"] is not None else None, r["digest"], r["name"])
        for r in runners["keys"]
    ]

    def expiry(value):
        c = expires.classify(value, now)
        return {"state": c["state"], "seconds_left": c["seconds_left"]}

    out["expiry"] = [_call(expiry, r["expires_at"]) for r in table["expiry"]]
    out["json_keep_alive"] = [_call(duration.parse_json_keep_alive, r["value"]) for r in table["json_keep_alive"]]
    out["request_keep_alive"] = [_call(duration.request_keep_alive, r["value"]) for r in table["request_keep_alive"]]
    out["env_keep_alive"] = [_call(duration.validate_env_keep_alive, r["value"]) for r in table["env_keep_alive"]]
    out["env_keep_alive_read"] = [list(duration.parse_env_keep_alive(r["raw"])) for r in table["env_keep_alive_read"]]
    out["env_uint"] = [_call(duration.validate_env_uint, r["value"], "OLLAMA_NUM_PARALLEL") for r in table["env_uint"]]
    out["num_ctx"] = [runner.effective_num_ctx(r["requested"], r["train"], r["vision"]) for r in table["num_ctx"]]
    out["load"] = [runner.load_endpoint(r["capabilities"]) for r in table["load"]]
    out["load_request"] = [list(runner.load_request("m", -1, {"num_ctx": 8}, r["capabilities"])) for r in table["load"]]
    out["capability_refusals"] = [
        runner.is_capability_refusal(r["status"], r["error"]) for r in table["capability_refusals"]
    ]
    out["repin"] = [
        {k: v for k, v in runner.repin_plan(r["entry"], r["options"], r["facts"]).items() if k != "note"}
        for r in table["repin"]
    ]
    out["options"] = [runner.option_type_ok(r["key"], r["value"]) for r in table["options"]]
    out["urls"] = {
        "redact": [urls.redact_url(r["url"]) for r in table["urls"]["redact"]],
        "secrets": [urls.url_secrets(r["url"]) for r in table["urls"]["secrets"]],
        "proxy": [urls.proxy_for(r["url"], r["env"])[0] for r in table["urls"]["proxy"]],
    }
    return out


if __name__ == "__main__":
    sys.path.insert(0, sys.argv[1])
    from heartbeat_agent import _rules

    with open(sys.argv[2], encoding="utf-8") as fh:
        result = evaluate(json.load(fh), _rules)
    result["_source"] = _rules.SOURCE
    modules = (_rules.names, _rules.expires, _rules.duration, _rules.runner, _rules.urls)
    result["_files"] = {m.__name__: m.__file__ for m in modules}
    json.dump(result, sys.stdout)
