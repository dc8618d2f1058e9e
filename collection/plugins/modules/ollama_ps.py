#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ollama_ps
short_description: List the models an Ollama server has loaded and check that they are pinned
version_added: 0.1.0
description:
  - Reads C(GET /api/ps) and returns every loaded model with its raw and parsed C(expires_at), its state
    (C(forever), C(timed) or C(stopping)), seconds left, size, VRAM size, GPU fraction and context length.
  - C(forever) means at least 21 x 365 days (183,960 hours) ahead, the rule C(ollama ps) uses to print C(Forever)
    (format/time.go C(humanTime), C(int(hours\)/24/365 < -20)); a model pinned with C(keep_alive=-1) reports a year
    near 2318. The zero time C(0001-01-01T00:00:00Z)
    also counts as forever.
  - Given O(models), checks them and reports C(missing), C(digest), C(expiring), C(offloaded) (with
    O(require_gpu)) and C(unexpected) (with O(allow_unlisted=false)) models, then fails with one message per
    offending model unless O(fail_on_problems=false).
  - A listed name is matched the way the server matches runners (by model blob, server/sched.go
    C(schedulerModelKey)). C(llama3.2:3b) is served by a loaded C(llama3.2:latest) when both tags share a
    blob, which the module learns from C(POST /api/show) (C(FROM <blob>) in its modelfile) only for names with no
    loaded runner of the same name.
  - A name with a digest (C(llama3.2@sha256:a80c4f17acd5), 12 to 64 hex digits) also requires the loaded
    runner's manifest digest to start with it or, when another manifest of the same blob loaded the runner, the
    server's manifest digest of that tag (C(GET /api/tags)); a C(digest) problem otherwise. Anything else after
    C(@) is refused.
  - A model that is loading right now is not in C(/api/ps) until its load finishes (server/sched.go), and
    C(/api/ps) answers at once meanwhile; such a model is reported C(missing) with that hint, never waited for.
requirements:
  - Python 3.8 or later on the managed host; only its standard library and C(ansible.module_utils), no pip packages.
author:
  - keepwarm maintainers (@keepwarm)
extends_documentation_fragment:
  - keepwarm.ollama.connection
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing.
options:
  models:
    description:
      - Models that must be loaded and pinned. Each item is a name (C(llama3.2), C(qwen2.5:7b)) or a dict
        with a C(name) key (the format of C(keepwarm_models)). C(llama3) and C(llama3:latest) are the same.
    type: list
    elements: raw
    default: []
  require_gpu:
    description:
      - Report a listed model that is not fully in VRAM as C(offloaded), comparing C(size_vram) with C(size) exactly
        (9,999,600,000 of 10,000,000,000 bytes is offloaded).
    type: bool
    default: false
  allow_unlisted:
    description:
      - When false, a loaded model that is not in O(models) is a problem (C(unexpected)); with
        C(OLLAMA_MAX_LOADED_MODELS=1) that means a pinned model was evicted.
    type: bool
    default: true
  fail_on_problems:
    description: Fail the task when there is a problem; when false, only RV(ok) and RV(problems) report it.
    type: bool
    default: true
seealso:
  - module: keepwarm.ollama.ollama_pin
"""

EXAMPLES = r"""
- name: Check that both models are loaded, pinned and fully on the GPU
  keepwarm.ollama.ollama_ps:
    models:
      - llama3.2
      - name: qwen2.5:7b
    require_gpu: true

- name: Report without failing
  keepwarm.ollama.ollama_ps:
    url: http://127.0.0.1:11434
    models: "{{ keepwarm_models }}"
    fail_on_problems: false
  register: ollama_ps

- name: Show the problems
  ansible.builtin.debug:
    msg: "{{ ollama_ps.problems | map(attribute='message') | list }}"
"""

RETURN = r"""
models:
  description: Every loaded model, in the server's order (pinned first).
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Name as the server shows it (tag always present).
      type: str
    model:
      description: Same as name.
      type: str
    digest:
      description: Model digest (64 hex characters).
      type: str
    size:
      description: Total bytes.
      type: int
    size_vram:
      description: Bytes in VRAM; 0 means CPU only.
      type: int
    gpu_fraction:
      description: size_vram / size (not rounded), or null when unknown.
      type: float
    context_length:
      description: The runner's per-slot context length.
      type: int
    expires_at:
      description: The server's C(expires_at) as sent.
      type: str
    expires_at_epoch:
      description: C(expires_at) in seconds since the Unix epoch.
      type: float
    state:
      description:
        - C(forever) (at least 21 x 365 days ahead), C(timed), C(stopping) (or C(unknown) for an unparsable
          C(expires_at)).
      type: str
    seconds_left:
      description: Seconds until the model unloads; null for forever, 0.0 when stopping.
      type: float
  sample:
    - name: llama3.2:latest
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
problems:
  description: One entry per offending model.
  returned: success
  type: list
  elements: dict
  sample:
    - url: http://127.0.0.1:11434
      model: qwen2.5:7b
      expires_at: null
      reason: missing
      message: "http://127.0.0.1:11434: qwen2.5:7b (expires_at -): not loaded"
ok:
  description: True when there is no problem.
  returned: success
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.keepwarm.ollama.plugins.module_utils._api import (
    OllamaError,
    client_for,
    connection_argspec,
)
from ansible_collections.keepwarm.ollama.plugins.module_utils._expires import now_ns
from ansible_collections.keepwarm.ollama.plugins.module_utils._names import ModelNameError, split_digest
from ansible_collections.keepwarm.ollama.plugins.module_utils._ps import (
    describe,
    problems,
    show_key_of,
    tags_digest_of,
    wanted_names,
)

ARGUMENT_SPEC = connection_argspec()
ARGUMENT_SPEC.update(
    models=dict(type="list", elements="raw", default=[]),
    require_gpu=dict(type="bool", default=False),
    allow_unlisted=dict(type="bool", default=True),
    fail_on_problems=dict(type="bool", default=True),
)


def run(module, client):
    p = module.params
    try:
        wanted = wanted_names(p["models"])
        for name in wanted:
            split_digest(name)
    except (ValueError, ModelNameError) as exc:
        module.fail_json(msg=to_native(exc))
    try:
        entries = client.ps()
    except OllamaError as exc:
        module.fail_json(msg=to_native(exc))
    now = now_ns()
    described = [describe(e, now) for e in entries]
    try:
        found = problems(
            client.display_url,
            described,
            wanted,
            p["require_gpu"],
            p["allow_unlisted"],
            key_of=show_key_of(client),
            digest_of=tags_digest_of(client),
        )
    except OllamaError as exc:
        module.fail_json(msg=to_native(exc), models=described)
    result = dict(changed=False, models=described, problems=found, ok=not found)
    if found and p["fail_on_problems"]:
        module.fail_json(msg="\n".join(x["message"] for x in found), **result)
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(**run(module, client_for(module)))


if __name__ == "__main__":
    main()
