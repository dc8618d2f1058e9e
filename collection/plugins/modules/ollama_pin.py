#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ollama_pin
short_description: Keep a model loaded (pinned) on an Ollama server, or unload it
version_added: 0.1.0
description:
  - With O(state=pinned), makes a model loaded and pinned with O(keep_alive) (default C(-1), forever).
  - The model's runner is found the way the server keys runners (by model blob, server/sched.go
    C(schedulerModelKey)). With C(llama3.2:latest) loaded, O(name=llama3.2:3b) (same blob) is that runner (no
    load, no reload); RV(served_by) names the loaded tag. The blob comes from C(POST /api/show)
    (C(FROM <blob>)), asked only when no runner has the exact name.
  - A digest in O(name) (C(llama3.2@sha256:a80c4f17acd5), 12 to 64 hex digits) is checked against the server's
    manifest digest of that tag (C(GET /api/tags)) before anything is sent; a mismatch fails and changes nothing.
    Anything else after C(@) is refused.
  - Already pinned forever (C(expires_at) at least 21 x 365 days ahead in C(GET /api/ps), the rule by which
    C(ollama ps) prints C(Forever)) with the declared C(num_ctx) (after clamping, see O(options)) means no request
    at all and no change (only C(GET /api/ps) is sent).
  - Loaded but expiring means a re-pin (RV(action=repin)). Every scheduled request goes through the server's
    C(needsReload), which reloads the runner, losing the pin, when a runner option differs. The re-pin therefore
    sends C(num_ctx) equal to the runner's C(context_length), the O(options) given (the workload's), and nothing
    else. C(/api/ps) does not show the runner's C(num_batch), C(num_gpu), C(main_gpu), C(use_mmap), C(num_thread),
    C(draft_num_predict) or context-shift setting, so a runner that a client loaded with other values of those is
    reloaded by the re-pin; RV(reload_unknown) lists them on every re-pin rather than claiming no reload.
  - Loaded with a C(num_ctx) that differs from C(num_ctx) in O(options) after the server's clamping means
    RV(action=reload); the request carries the declared options and the server reloads the runner with them.
  - Not in C(/api/ps) means a load request; RV(load_seconds) reports how long it took. A model that another client
    is loading right now is not in C(/api/ps) either (it is listed only when its load finishes); the load request
    then joins that load in the server's queue (server/sched.go pending requests) instead of loading the model a
    second time, and waits for it up to O(timeout); with runner options that differ from that client's, the server
    reloads the model once the first load is done.
  - Embedding-only models (capabilities without C(completion), for example C(nomic-embed-text)) are loaded and
    pinned through C(POST /api/embed) with no input, since C(/api/generate) refuses them with 400
    C(does not support generate); RV(endpoint) says which path was used. When C(/api/show) gives no capabilities,
    C(/api/generate) is tried first and that 400 answer retries on C(/api/embed).
  - The task fails when the model is not in C(/api/ps) after a successful pin request (evicted at once, or unloaded
    by a keep_alive the server transformed), instead of reporting success.
  - With O(state=unloaded), unloads the runner serving the model (C(keep_alive=0) on C(/api/generate), which
    unloads without loading, for any model), including when it was loaded under another tag of the same blob.
  - Forever is sent as the JSON number C(-1); upstream answers the string C("-1") with a 400 error.
requirements:
  - Python 3.8 or later on the managed host; only its standard library and C(ansible.module_utils), no pip packages.
author:
  - keepwarm maintainers (@keepwarm)
extends_documentation_fragment:
  - keepwarm.ollama.connection
attributes:
  check_mode:
    support: full
    description: Reads C(/api/ps) and reports the action without sending it.
  diff_mode:
    support: full
    description: Shows the model's state and C(expires_at) before and after.
options:
  name:
    description: The model, for example C(llama3.2) or C(qwen2.5:7b).
    type: str
    required: true
    aliases: [model]
  state:
    description: Whether the model is loaded and pinned, or unloaded.
    type: str
    choices: [pinned, unloaded]
    default: pinned
  keep_alive:
    description:
      - keep_alive of the pin request. A number is seconds (negative means forever); a string must be a Go
        duration with a unit (C(-1m), C(24h)). Integer strings such as C("-1") are sent as numbers.
      - C(0), day units (C(1d)) and other values the API rejects are refused, and so are values Ollama turns into
        something else, each with the reason (api/types.go C(Duration.UnmarshalJSON)).
        9,223,372,037 seconds or more overflow the server's int64 nanoseconds (on amd64 the minimum int64, so the
        model unloads when the request ends), and a positive value under one nanosecond becomes 0 (unload).
      - With a finite value, a loaded model is re-pinned on every run (the timer restarts), so the task
        reports a change.
    type: raw
    default: -1
  options:
    description:
      - Runner options of the load or re-pin request, for example C(num_ctx=8192). They must match the
        options of the real workload, or the workload's next request reloads the model.
      - C(num_ctx) is compared after the server's own clamping (server/sched.go C(getRunner), C(effectiveContext));
        below 4 becomes 4, below 2048 becomes 2048 for vision models, above the model's training context becomes
        that context. C(num_ctx=8192) for a model trained on 2048 tokens is therefore already satisfied by a runner
        showing C(context_length) 2048, and a second run reports no change.
      - When omitted, a re-pin uses C(num_ctx) equal to the loaded C(context_length).
    type: dict
  timeout:
    description:
      - Seconds to wait for an answer. A cold load of a big model can take minutes, and a client that gives
        up aborts the load upstream.
    type: float
    default: 600.0
seealso:
  - module: keepwarm.ollama.ollama_ps
  - module: keepwarm.ollama.ollama_override
"""

EXAMPLES = r"""
- name: Keep llama3.2 loaded forever
  keepwarm.ollama.ollama_pin:
    name: llama3.2

- name: Pin with the workload's context size
  keepwarm.ollama.ollama_pin:
    name: qwen2.5:7b
    options:
      num_ctx: 8192
    timeout: 900

- name: Pin an embedding model (loaded through /api/embed)
  keepwarm.ollama.ollama_pin:
    name: nomic-embed-text

- name: Pin only if the local tag is this exact build
  keepwarm.ollama.ollama_pin:
    name: llama3.2@sha256:a80c4f17acd5

- name: Unload a model
  keepwarm.ollama.ollama_pin:
    name: llama3.1:70b
    state: unloaded
"""

RETURN = r"""
action:
  description:
    - What was done (or would be, in check mode). C(none), C(repin), C(reload) (declared C(num_ctx) differs from the
      runner's), C(load) or C(unload).
  returned: always
  type: str
  sample: load
load_seconds:
  description: Measured wall time of the load request, in seconds; null unless RV(action=load) was sent.
  returned: always
  type: float
  sample: 2.04
endpoint:
  description: The path the request went (or would go) to, C(/api/generate) or C(/api/embed); null when nothing is sent.
  returned: always
  type: str
  sample: /api/generate
reload_unknown:
  description:
    - On a re-pin, the runner settings the server compares (server/sched.go C(needsReload)) that C(/api/ps) does not
      show, so whether the re-pin reloaded a runner a client loaded with other values cannot be known; empty otherwise.
  returned: always
  type: list
  elements: str
  sample: [num_batch, num_gpu, main_gpu, use_mmap, num_thread, draft_num_predict, shift]
served_by:
  description: The C(/api/ps) name of the runner when it was loaded under another tag of the same blob.
  returned: when the runner's name differs from O(name)
  type: str
  sample: llama3.2:latest
request:
  description: The body sent (or that would be sent) to RV(endpoint); null when nothing is sent.
  returned: always
  type: dict
  sample: {"model": "llama3.2", "keep_alive": -1, "stream": false}
model:
  description:
    - The model's C(/api/ps) entry after the action, described like keepwarm.ollama.ollama_ps's models; null
      when it is not loaded.
  returned: always
  type: dict
  sample:
    name: llama3.2:latest
    model: llama3.2:latest
    digest: a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72
    size: 3583106048
    size_vram: 3583106048
    gpu_fraction: 1.0
    context_length: 4096
    expires_at: "2318-11-10T23:47:16.854775807Z"
    expires_at_epoch: 10957186036.854776
    state: forever
    seconds_left: null
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.keepwarm.ollama.plugins.module_utils._api import (
    OllamaError,
    OllamaNotFound,
    client_for,
    connection_argspec,
)
from ansible_collections.keepwarm.ollama.plugins.module_utils._duration import (
    DurationError,
    keep_alive_is_forever,
    parse_json_keep_alive,
    request_keep_alive,
)
from ansible_collections.keepwarm.ollama.plugins.module_utils._expires import FOREVER, TIMED, now_ns
from ansible_collections.keepwarm.ollama.plugins.module_utils._names import (
    ModelNameError,
    digest_matches,
    display_shortest,
    name_key,
    runner_key,
    split_digest,
    tags_digests,
)
from ansible_collections.keepwarm.ollama.plugins.module_utils._ps import describe, find
from ansible_collections.keepwarm.ollama.plugins.module_utils._runner import (
    EMBED,
    GENERATE,
    is_capability_refusal,
    load_request,
    model_facts,
    num_ctx_matches,
    repin_plan,
)

ARGUMENT_SPEC = connection_argspec(timeout=dict(default=600.0))
ARGUMENT_SPEC.update(
    name=dict(type="str", required=True, aliases=["model"]),
    state=dict(type="str", default="pinned", choices=["pinned", "unloaded"]),
    keep_alive=dict(type="raw", default=-1),
    options=dict(type="dict"),
)


def plan(params, entry, facts=None):
    """Decide the action from the wanted state and the described /api/ps entry of the model's runner (None = not
    in /api/ps). ``facts`` is ``_runner.model_facts`` of the model (None = unknown: generate, no clamping).

    Returns ``(action, request_body)``; raises DurationError for a keep_alive the API would reject or transform.
    """
    name = split_digest(params["name"])[0]
    if params["state"] == "unloaded":
        if entry is None:
            return "none", None
        # server/routes.go GenerateHandler: empty prompt and keep_alive 0 unloads without loading, for any model
        return "unload", {"model": name, "keep_alive": 0, "stream": False}

    keep_alive = request_keep_alive(params["keep_alive"])
    if parse_json_keep_alive(keep_alive) == 0:
        raise DurationError("keep_alive=%r unloads the model after the request: use state=unloaded" % (keep_alive,))
    facts = facts or {}
    caps = facts.get("capabilities")
    options = params.get("options") or {}
    if entry is None:
        return "load", load_request(name, keep_alive, options, caps)[1]
    if "num_ctx" in options and not num_ctx_matches(options["num_ctx"], entry.get("context_length"), facts):
        # the declared context differs from the runner's even after the server's clamping: load it with the declared
        # options (sched.go needsReload reloads the runner; the new runner takes this request's keep_alive)
        return "reload", load_request(name, keep_alive, options, caps)[1]
    if keep_alive_is_forever(keep_alive) and entry["state"] == FOREVER:
        return "none", None
    return "repin", load_request(name, keep_alive, repin_plan(entry, options, facts)["options"], caps)[1]


class _Model:
    """What the server says about the model, fetched only when a decision needs it (an idempotent run sends only
    GET /api/ps)."""

    def __init__(self, client, name):
        self.client = client
        self.name = name
        self._shows = {}

    def show(self, name=None):
        key = display_shortest(name or self.name).lower()
        if key not in self._shows:
            try:
                self._shows[key] = self.client.show(name or self.name)
            except OllamaNotFound:
                self._shows[key] = None
        return self._shows[key]

    def key_of(self, name):
        return runner_key(self.show(name))

    def facts(self):
        return model_facts(self.show())


def _fail(module, msg, **kwargs):
    module.fail_json(msg=to_native(msg), **kwargs)


def run(module, client):
    p = module.params
    try:
        base, digest = split_digest(p["name"])
    except ModelNameError as exc:
        _fail(module, exc)
    model = _Model(client, base)
    try:
        entries = client.ps()
        exact = find(entries, base)
        if digest and p["state"] == "pinned":
            have = tags_digests(client.tags()).get(name_key(base))
            if not digest_matches(digest, have):
                _fail(
                    module,
                    "%s is sha256:%s on %s, not the wanted sha256:%s: pull that version first; nothing was sent"
                    % (display_shortest(base), have or "(unknown)", client.display_url, digest),
                )
        # runners are keyed by blob (sched.go schedulerModelKey): another tag of the same blob is this model's runner
        entry = exact if exact is not None else find(entries, base, model.key_of)
        facts = None
        if p["state"] == "pinned" and (entry is None or not _pinned_as_wanted(p, entry)):
            if model.show() is None:
                where = client.display_url
                _fail(module, "model '%s' not found on %s (POST /api/show: 404): pull it first" % (base, where))
            facts = model.facts()
    except OllamaError as exc:
        _fail(module, exc)
    before = describe(entry, now_ns()) if entry is not None else None
    try:
        action, body = plan(p, before, facts)
    except DurationError as exc:
        _fail(module, exc)
    path = None if body is None else (EMBED if action != "unload" and "stream" not in body else GENERATE)
    result = dict(
        changed=action != "none",
        action=action,
        request=body,
        endpoint=path,
        load_seconds=None,
        model=before,
        reload_unknown=[],
    )
    if action == "repin":
        result["reload_unknown"] = repin_plan(before, p.get("options"), facts)["reload_unknown"]
    if before is not None and before.get("name") and name_key(before["name"]) != name_key(base):
        result["served_by"] = before["name"]
    if action != "none" and not module.check_mode:
        try:
            try:
                _answer, seconds = client.post(path, body)
            except OllamaError as exc:
                if path == GENERATE and action != "unload" and is_capability_refusal(exc.status, exc.body):
                    # an embedding-only model (routes.go GenerateHandler: no completion capability): /api/embed
                    body = dict((k, v) for k, v in body.items() if k != "stream")
                    path = EMBED
                    result.update(request=body, endpoint=path)
                    _answer, seconds = client.post(path, body)
                else:
                    raise
            if action in ("load", "reload"):
                result["load_seconds"] = round(seconds, 3)
            after_entry = find(client.ps(), base, model.key_of)
        except OllamaError as exc:
            _fail(module, exc, action=action, request=body, endpoint=path)
        result["model"] = describe(after_entry, now_ns()) if after_entry is not None else None
        after = result["model"]
        if p["state"] == "pinned" and after is None:
            _fail(
                module,
                "%s: %s %s answered, but the model is not in /api/ps afterwards (evicted at once to make room, "
                "unloaded by its keep_alive, or a server that does not keep it): the pin did not take"
                % (display_shortest(base), path, action),
                **result,
            )
        if p["state"] == "pinned" and keep_alive_is_forever(body["keep_alive"]) and after["state"] != FOREVER:
            module.warn(
                "%s was %s but /api/ps shows it %s; a busy model reports its old expires_at until its "
                "requests finish (server/sched.go)" % (p["name"], action, after["state"])
            )
        if p["state"] == "unloaded" and after is not None:
            module.warn(
                "%s is still in /api/ps after the unload request: it unloads when its running requests end "
                "(server/sched.go expireRunner)" % p["name"]
            )
    if module._diff:
        result["diff"] = dict(before=_diff_view(before), after=_diff_view(result["model"]))
        if module.check_mode and action != "none":
            result["diff"]["after"] = _diff_view(None, action, body)
    return result


def _pinned_as_wanted(params, entry):
    """True when /api/ps alone shows the runner as wanted (no /api/show needed): forever, and the same num_ctx or
    none declared."""
    try:
        keep_alive = request_keep_alive(params["keep_alive"])
    except DurationError:
        return False
    if not keep_alive_is_forever(keep_alive):
        return False
    ctx = (params.get("options") or {}).get("num_ctx")
    return describe(entry)["state"] == FOREVER and (ctx is None or ctx == entry.get("context_length"))


def _diff_view(entry, action=None, body=None):
    """A small before/after view; in check mode the after view is what the action would produce."""
    if action == "unload" or (action is None and entry is None):
        return {"loaded": False}
    if action is not None:
        return {"loaded": True, "state": FOREVER if keep_alive_is_forever(body["keep_alive"]) else TIMED}
    return {"loaded": True, "state": entry["state"], "expires_at": entry["expires_at"]}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(**run(module, client_for(module)))


if __name__ == "__main__":
    main()
