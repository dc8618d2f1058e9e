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
  - Already pinned forever (C(expires_at) at least 21 x 365 days ahead in C(GET /api/ps), the rule C(ollama ps) prints C(Forever) by) means no request at all
    and no change.
  - Loaded but expiring means a re-pin request that carries the runner's own options (C(num_ctx) equal to the
    loaded C(context_length)), so it never forces a reload; explicit O(options) replace them.
  - Not loaded means a load request; RV(load_seconds) reports how long the load took.
  - With O(state=unloaded), unloads a loaded model (C(keep_alive=0)).
  - Forever is sent as the JSON number C(-1); upstream answers the string C("-1") with a 400 error.
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
      - C(0), day units (C(1d)) and other values the API rejects are refused.
      - With a finite value, a loaded model is re-pinned on every run (the timer restarts), so the task
        reports a change.
    type: raw
    default: -1
  options:
    description:
      - Runner options of the load or re-pin request, for example C(num_ctx=8192). They must match the
        options of the real workload, or the next request reloads the model.
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

- name: Unload a model
  keepwarm.ollama.ollama_pin:
    name: llama3.1:70b
    state: unloaded
"""

RETURN = r"""
action:
  description: What was done (or would be, in check mode). C(none), C(repin), C(load) or C(unload).
  returned: always
  type: str
  sample: load
load_seconds:
  description: Measured wall time of the load request, in seconds; null unless RV(action=load) was sent.
  returned: always
  type: float
  sample: 2.04
request:
  description: The body sent (or that would be sent) to C(POST /api/generate); null when nothing is sent.
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
from ansible_collections.keepwarm.ollama.plugins.module_utils._ps import describe, find

ARGUMENT_SPEC = connection_argspec(timeout=dict(default=600.0))
ARGUMENT_SPEC.update(
    name=dict(type="str", required=True, aliases=["model"]),
    state=dict(type="str", default="pinned", choices=["pinned", "unloaded"]),
    keep_alive=dict(type="raw", default=-1),
    options=dict(type="dict"),
)


def plan(params, entry):
    """Decide the action from the wanted state and the described /api/ps entry (None = not loaded).

    Returns ``(action, request_body)``; raises DurationError for a keep_alive the API would reject.
    """
    name = params["name"]
    if params["state"] == "unloaded":
        if entry is None:
            return "none", None
        # server/routes.go GenerateHandler: empty prompt and keep_alive 0 unloads without loading
        return "unload", {"model": name, "keep_alive": 0, "stream": False}

    keep_alive = request_keep_alive(params["keep_alive"])
    if parse_json_keep_alive(keep_alive) == 0:
        raise DurationError("keep_alive=%r unloads the model after the request: use state=unloaded" % (keep_alive,))
    options = params.get("options")
    body = {"model": name, "keep_alive": keep_alive, "stream": False}
    if entry is None:
        if options:
            body["options"] = options
        return "load", body
    forever = keep_alive_is_forever(keep_alive)
    same_ctx = not options or options.get("num_ctx") in (None, entry.get("context_length"))
    if forever and entry["state"] == FOREVER and same_ctx:
        return "none", None
    if options:
        body["options"] = options
    elif entry.get("context_length"):
        # server/sched.go needsReload compares num_ctx: re-pin with the runner's own context length
        body["options"] = {"num_ctx": entry["context_length"]}
    return "repin", body


def run(module, client):
    p = module.params
    try:
        entries = client.ps()
    except OllamaError as exc:
        module.fail_json(msg=to_native(exc))
    entry = find(entries, p["name"])
    before = describe(entry, now_ns()) if entry is not None else None
    try:
        action, body = plan(p, before)
    except DurationError as exc:
        module.fail_json(msg=to_native(exc))
    result = dict(changed=action != "none", action=action, request=body, load_seconds=None, model=before)
    if action != "none" and not module.check_mode:
        try:
            _answer, seconds = client.generate(body)
        except OllamaError as exc:
            module.fail_json(msg=to_native(exc), action=action, request=body)
        if action == "load":
            result["load_seconds"] = round(seconds, 3)
        try:
            after_entry = find(client.ps(), p["name"])
        except OllamaError as exc:
            module.fail_json(msg=to_native(exc), action=action, request=body)
        result["model"] = describe(after_entry, now_ns()) if after_entry is not None else None
        after = result["model"]
        if p["state"] == "pinned" and keep_alive_is_forever(body["keep_alive"]):
            if after is None or after["state"] != FOREVER:
                module.warn(
                    "%s was %s but /api/ps shows it %s; a busy model reports its old expires_at until its "
                    "requests finish (server/sched.go)" % (p["name"], action, after["state"] if after else "unloaded")
                )
    if module._diff:
        result["diff"] = dict(before=_diff_view(before), after=_diff_view(result["model"]))
        if module.check_mode and action != "none":
            result["diff"]["after"] = _diff_view(None, action, body)
    return result


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
