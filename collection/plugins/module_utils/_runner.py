# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of keepwarm.ollama: how a model is loaded and re-pinned without reloading its runner.
# Import as ansible_collections.keepwarm.ollama.plugins.module_utils._runner
#
# RULEBOOK MODULE: standard library only, no imports of other module_utils. The heartbeat agent loads this same
# file (heartbeat_agent/_rules.py; its zipapp vendors a copy). No HTTP here: callers send what these functions
# return with their own client.
# Stable API (keep these names and signatures):
#   RUNNER_OPTIONS                                   option names server/sched.go needsReload compares
#   OPTION_TYPES                                     every request option api/types.go Options knows -> its JSON type
#   option_type_ok(key, value) -> bool               value has the JSON type OPTION_TYPES gives key (False: unknown)
#   UNSEEN_RUNNER_SETTINGS                           what needsReload compares that /api/ps does not show
#   model_facts(show) -> {"capabilities", "train_context", "vision", "embedding_only", "modelfile_options"}
#   effective_num_ctx(requested, train_context=None, vision=False) -> int    the value the runner ends up with
#   load_endpoint(capabilities) -> "/api/generate" | "/api/embed"
#   load_request(name, keep_alive, options=None, capabilities=None) -> (path, body)
#   is_capability_refusal(status, error_text) -> bool      a generate 400 "does not support generate"
#   repin_plan(entry, options=None, facts=None) -> {"options", "num_ctx", "reload_unknown", "note"}
#   num_ctx_matches(requested, context_length, facts=None) -> bool   idempotence with a clamped num_ctx

"""Load requests and re-pin requests as the scheduler judges them (server/sched.go, server/routes.go).

* Load path: ``POST /api/generate`` with no prompt loads a model (``done_reason: "load"``), but GenerateHandler
  first requires the ``completion`` capability and answers 400 ``"<model>" does not support generate`` without it
  (routes.go ``GenerateHandler``). ``POST /api/embed`` with no ``input`` schedules the runner, applies
  ``keep_alive`` and answers ``{"embeddings": []}`` for any model (routes.go ``EmbedHandler``): it is the load path
  for embedding-only models.
* Re-pin: every scheduled request goes through ``needsReload`` (sched.go ``runnerRef.needsReload``), which reloads
  the runner (losing the pin) when any of these differs: ``num_ctx`` (the request's value clamped to the training
  context first; not compared when both sides are automatic), ``num_batch`` (not compared when both are
  automatic), ``num_gpu`` (never when the request's is negative, the default -1), ``main_gpu``, ``use_mmap`` (the
  runner's automatic value kept when the request has none), ``num_thread``, ``draft_num_predict``, the context-shift
  setting (``shift`` in generate/chat; the model's default otherwise), adapters and projectors.
  /api/ps shows only ``context_length`` (the runner's ``num_ctx``), so a re-pin sends ``num_ctx`` equal to it, the
  workload's configured runner options, and nothing else; whether the runner was loaded with other values of the
  settings ps does not show cannot be known from outside, and ``repin_plan`` says so.
* Context clamping: ``getRunner`` raises ``num_ctx`` below 4 to 4 and, for vision models, below 2048 to 2048;
  ``effectiveContext`` lowers a value above the model's training context to it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re

RUNNER_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "draft_num_predict")
# The request options and their JSON types (api/types.go `Options`, which embeds `Runner`). `Options.FromMap` answers
# 500 `option "x" must be of type integer` for a wrong type and ignores unknown keys, so a typo would pass silently:
# keepwarm's configs refuse both. Stricter than FromMap on one point: an integer option takes no fraction (FromMap
# truncates 1.5 to 1, which would pin another num_ctx than the one written).
OPTION_TYPES = {
    "num_ctx": "integer",
    "num_batch": "integer",
    "num_gpu": "integer",
    "main_gpu": "integer",
    "use_mmap": "boolean",
    "num_thread": "integer",
    "draft_num_predict": "integer",
    "num_keep": "integer",
    "seed": "integer",
    "num_predict": "integer",
    "top_k": "integer",
    "top_p": "number",
    "min_p": "number",
    "typical_p": "number",
    "repeat_last_n": "integer",
    "temperature": "number",
    "repeat_penalty": "number",
    "presence_penalty": "number",
    "frequency_penalty": "number",
    "stop": "list of strings",
}
UNSEEN_RUNNER_SETTINGS = ("num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "draft_num_predict", "shift")
GENERATE = "/api/generate"
EMBED = "/api/embed"
MIN_NUM_CTX = 4  # sched.go getRunner
MIN_VISION_NUM_CTX = 2048  # sched.go getRunner: multimodal models require at least 2048 context

_PARAM_LINE = re.compile(r"^PARAMETER[ \t]+(\S+)[ \t]+(.*?)[ \t]*$", re.MULTILINE | re.IGNORECASE)


def model_facts(show):
    """What a POST /api/show answer tells about loading the model.

    ``capabilities`` (list or None when the server does not say), ``train_context`` (``<arch>.context_length``
    from ``model_info``, or None), ``vision``, ``embedding_only`` and ``modelfile_options`` (names of the
    ``PARAMETER`` lines, which make an option non-automatic: routes.go ``usesAutomaticNumCtx``).
    """
    facts = {
        "capabilities": None,
        "train_context": None,
        "vision": False,
        "embedding_only": False,
        "modelfile_options": [],
    }
    if not isinstance(show, dict):
        return facts
    caps = show.get("capabilities")
    if isinstance(caps, list):
        facts["capabilities"] = [str(c) for c in caps]
        facts["vision"] = "vision" in facts["capabilities"]
        facts["embedding_only"] = "completion" not in facts["capabilities"] and "embedding" in facts["capabilities"]
    info = show.get("model_info")
    if isinstance(info, dict):
        arch = info.get("general.architecture")
        value = info.get("%s.context_length" % arch) if isinstance(arch, str) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            facts["train_context"] = value
    text = show.get("modelfile") if isinstance(show.get("modelfile"), str) else show.get("parameters")
    if isinstance(text, str):
        names = [m.group(1) for m in _PARAM_LINE.finditer(text)]
        if not names and isinstance(show.get("parameters"), str):
            names = [line.split()[0] for line in show["parameters"].splitlines() if line.split()]
        facts["modelfile_options"] = sorted(set(names))
    return facts


def option_type_ok(key, value):
    """True when ``value`` has the JSON type ``OPTION_TYPES`` gives option ``key``; False for an unknown key.

    integer: a JSON integer (not a boolean); number: a finite JSON number (not a boolean); boolean: true/false;
    list of strings: a JSON array of strings.
    """
    kind = OPTION_TYPES.get(key) if isinstance(key, str) else None
    if kind is None or value is None:
        return False
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "integer":
        return isinstance(value, int)
    if kind == "number":
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def effective_num_ctx(requested, train_context=None, vision=False):
    """The ``num_ctx`` a runner ends up with for a requested value (sched.go ``getRunner``, ``effectiveContext``)."""
    n = int(requested)
    n = max(n, MIN_NUM_CTX)
    if vision:
        n = max(n, MIN_VISION_NUM_CTX)
    if train_context and train_context > 0 and n > train_context:
        n = train_context
    return n


def num_ctx_matches(requested, context_length, facts=None):
    """True when a runner showing ``context_length`` in /api/ps already has what ``num_ctx=requested`` gives."""
    if requested is None or context_length is None:
        return requested is None
    facts = facts or {}
    return effective_num_ctx(requested, facts.get("train_context"), facts.get("vision", False)) == context_length


def load_endpoint(capabilities):
    """``/api/embed`` for a model that has the ``embedding`` capability and not ``completion``; else
    ``/api/generate``. ``capabilities`` None (unknown) gives ``/api/generate``; see ``is_capability_refusal``."""
    caps = capabilities or []
    if "completion" not in caps and "embedding" in caps:
        return EMBED
    return GENERATE


def load_request(name, keep_alive, options=None, capabilities=None):
    """``(path, body)`` of a request that loads (or re-pins) ``name`` with ``keep_alive`` and nothing else to do."""
    path = load_endpoint(capabilities)
    body = {"model": name, "keep_alive": keep_alive}
    if path == GENERATE:
        body["stream"] = False  # a load answer is one object whatever stream says; explicit anyway
    if options:
        body["options"] = dict(options)
    return path, body


def is_capability_refusal(status, error_text):
    """True for GenerateHandler's answer to a model without the completion capability (400, "does not support
    generate"): the caller retries the same body on ``/api/embed``."""
    return status == 400 and "does not support generate" in str(error_text or "")


def repin_plan(entry, options=None, facts=None):
    """The options of a re-pin for the loaded /api/ps ``entry`` and what cannot be known about it.

    ``options`` are the workload's configured options (keepwarm_models / the agent's config). Returns:

    * ``options``: what to send: the configured options with ``num_ctx`` set to the runner's ``context_length``
      (equal after clamping, so never a reload for ``num_ctx``); no other option is added: a missing ``num_gpu``
      is the default -1, which needsReload ignores.
    * ``num_ctx``: the configured ``num_ctx`` clamped (``effective_num_ctx``) when it differs from the runner's, i.e.
      the runner was loaded by a client with another context; None when it matches or none is configured.
    * ``reload_unknown``: settings needsReload compares that /api/ps does not show and that the re-pin may differ on:
      the configured ones (the runner may have been loaded by a client with other values) and, for the ones not
      configured, a client's explicit value against the re-pin's automatic one. Always non-empty: a re-pin can only
      be proven not to reload by the server's own log or the emulator's events.
    * ``note``: one sentence for reports.
    """
    facts = facts or {}
    send = dict(options or {})
    ctx = entry.get("context_length") if isinstance(entry, dict) else None
    configured = send.get("num_ctx")
    differs = None
    if isinstance(ctx, int) and not isinstance(ctx, bool) and ctx > 0:
        if configured is not None and not num_ctx_matches(configured, ctx, facts):
            differs = effective_num_ctx(configured, facts.get("train_context"), facts.get("vision", False))
        send["num_ctx"] = ctx
    unknown = list(UNSEEN_RUNNER_SETTINGS)
    note = (
        "re-pin sends num_ctx=%s (the runner's context_length)%s; /api/ps does not show %s, so a runner a client "
        "loaded with other values of those is reloaded by the re-pin"
        % (
            send.get("num_ctx", "automatic"),
            " and the configured %s" % ", ".join(sorted(k for k in send if k != "num_ctx")) if len(send) > 1 else "",
            ", ".join(unknown),
        )
    )
    return {"options": send, "num_ctx": differs, "reload_unknown": unknown, "note": note}
