# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of keepwarm.ollama: model names and which runner serves them, as the server decides.
# Import as ansible_collections.keepwarm.ollama.plugins.module_utils._names
#
# RULEBOOK MODULE: standard library only, no imports of other module_utils. The heartbeat agent loads this same
# file (heartbeat_agent/_rules.py; its zipapp vendors a copy). No HTTP here: callers fetch /api/ps, /api/show and
# /api/tags with their own client and pass the answers in.
# Stable API (keep these names and signatures):
#   class ModelNameError(ValueError)
#   split_digest(name) -> (base, digest_or_None)       "@sha256:<hex>" split off and checked, never dropped
#   parse_name(name) -> (host, namespace, model, tag)  the digest is not a name part (use split_digest)
#   display_shortest(name) -> str                      the form /api/ps shows ("llama3.2:latest")
#   name_key(name) -> tuple                            case-insensitive comparison key of the name parts
#   same_model(a, b) -> bool
#   digest_matches(wanted, have) -> bool               wanted: hex prefix (>= 12), have: 64 hex (or "sha256:...")
#   runner_key(show=None, digest=None, name=None) -> str   server/sched.go schedulerModelKey from /api/show
#   tags_digests(tags_answer) -> {name_key: digest}    manifest digests from GET /api/tags
#   find_runner(entries, name, key_of=None) -> entry or None   the /api/ps entry whose runner serves `name`

"""Model names, digests and runner identity following upstream.

* Names: types/model/name.go ``ParseName`` (``ParseNameBare`` merged with ``DefaultName``), ``DisplayShortest``,
  ``EqualFold``. ``llama3`` and ``llama3:latest`` name the same model; so do ``library/llama3`` and
  ``registry.ollama.ai/library/llama3:latest``. /api/ps reports ``ParseName(name).DisplayShortest()`` of the
  request that loaded the runner.
* Runners: server/sched.go keys runners by ``schedulerModelKey``: the model blob path, else ``digest:<digest>``,
  else ``name:<name>``. Tags that share a blob (``llama3.2:latest`` and ``llama3.2:3b``) share one runner and
  /api/ps lists it once, under the name of whichever request loaded it. /api/show's ``modelfile`` starts with
  ``FROM <blob path>`` (server/images.go), which is how a client learns the blob.
* Digests: /api/ps and /api/tags ``digest`` is the manifest digest (64 hex, no ``sha256:``); ``ollama ps`` shows
  its first 12 characters as ID. A ``@sha256:<hex>`` suffix on a name is a digest pin: it is split off by
  ``split_digest`` and must be compared by the caller (``digest_matches``), never ignored.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

DEFAULT_HOST = "registry.ollama.ai"  # types/model/name.go defaultHost
DEFAULT_NAMESPACE = "library"  # defaultNamespace
DEFAULT_TAG = "latest"  # defaultTag
MIN_DIGEST_PREFIX = 12  # cmd/cmd.go ListRunningHandler: the ID column is digest[:12]

_HEX = re.compile(r"^[0-9a-f]+$")
_FROM = re.compile(r"^FROM[ \t]+(\S.*?)[ \t]*$", re.MULTILINE | re.IGNORECASE)


class ModelNameError(ValueError):
    """A model name or digest keepwarm cannot use; the message names the value and why."""


def split_digest(name):
    """``(base, digest)``: ``llama3.2@sha256:abc...`` -> ``("llama3.2", "abc...")``; ``digest`` is None without one.

    The digest is lower-cased hex without the ``sha256:``/``sha256-`` prefix, at least 12 and at most 64 hex
    digits (a prefix of the manifest digest, like the ID column of ``ollama ps``). Anything else after ``@``
    raises ModelNameError naming the value: a digest is never dropped silently.
    """
    if not isinstance(name, str):
        raise ModelNameError("model name %r is not a string" % (name,))
    s = name.strip()
    if "@" not in s:
        return s, None
    base, _sep, digest = s.partition("@")
    d = digest.strip().lower()
    for prefix in ("sha256:", "sha256-"):
        if d.startswith(prefix):
            d = d[len(prefix) :]
            break
    else:
        raise ModelNameError(
            "model name %r: the part after '@' must be a digest 'sha256:<hex>' (Ollama's manifest digest)" % name
        )
    if not _HEX.match(d) or not MIN_DIGEST_PREFIX <= len(d) <= 64:
        raise ModelNameError(
            "model name %r: the digest must be %d to 64 hex digits after 'sha256:' (got %r)"
            % (name, MIN_DIGEST_PREFIX, digest)
        )
    return base, d


def _cut_last(s, sep):
    i = s.rfind(sep)
    if i < 0:
        return s, "", False
    return s[:i], s[i + len(sep) :], True


def parse_name(name):
    """types/model/name.go ``ParseNameBare`` merged with the defaults: ``(host, namespace, model, tag)``.

    A ``@digest`` suffix is not a name part and is ignored here; ``split_digest`` returns it.
    """
    s = name.strip().split("@", 1)[0]
    host, namespace, tag = DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG
    # "/" is an illegal tag character, so a ":" after the last "/" starts the tag
    if s.rfind(":") > s.rfind("/"):
        s, t, _found = _cut_last(s, ":")
        tag = t or DEFAULT_TAG
    s, model, found = _cut_last(s, "/")
    if not found:
        return host, namespace, s, tag
    s, ns, found = _cut_last(s, "/")
    if not found:
        return host, s or DEFAULT_NAMESPACE, model, tag
    if "://" in s:
        s = s.split("://", 1)[1]
    return s or DEFAULT_HOST, ns or DEFAULT_NAMESPACE, model, tag


def display_shortest(name):
    """types/model/name.go ``DisplayShortest``: the form /api/ps shows (``llama3.2:latest``)."""
    host, namespace, model, tag = parse_name(name)
    if host.lower() != DEFAULT_HOST:
        return "%s/%s/%s:%s" % (host, namespace, model, tag)
    if namespace.lower() != DEFAULT_NAMESPACE:
        return "%s/%s:%s" % (namespace, model, tag)
    return "%s:%s" % (model, tag)


def name_key(name):
    """A comparison key: names are equal when all parts match ignoring case (``Name.EqualFold``)."""
    return tuple(part.lower() for part in parse_name(name))


def same_model(a, b):
    """True when Ollama treats both names as the same name (``llama3`` == ``llama3:latest``).

    Two different names can still share a runner (same blob): use ``find_runner`` for that question.
    """
    return name_key(a) == name_key(b)


def digest_matches(wanted, have):
    """True when the manifest digest ``have`` (64 hex, with or without ``sha256:``) starts with ``wanted``."""
    if not wanted or not have:
        return False
    h = str(have).strip().lower()
    if h.startswith("sha256:") or h.startswith("sha256-"):
        h = h[7:]
    return h.startswith(str(wanted).lower())


def runner_key(show=None, digest=None, name=None):
    """server/sched.go ``schedulerModelKey`` as far as a client can see it.

    ``show`` is a POST /api/show answer: its ``modelfile`` starts with ``FROM <model blob path>`` (the key the
    scheduler uses). Without a blob path, ``digest:<digest>``, then ``name:<display_shortest(name)>``; None when
    nothing is known.
    """
    if isinstance(show, dict):
        text = show.get("modelfile")
        if isinstance(text, str):
            for m in _FROM.finditer(text):
                path = m.group(1).strip().strip('"')
                # a blob path (".../blobs/sha256-<hex>"), not a model name (a Modelfile can say "FROM llama3.2")
                if "/" in path or "\\" in path:
                    return path
    if digest:
        d = str(digest).strip().lower()
        return "digest:" + (d[7:] if d.startswith("sha256:") else d)
    if name:
        return "name:" + display_shortest(name).lower()
    return None


def tags_digests(tags_answer):
    """``{name_key: digest}`` from a GET /api/tags answer (``{"models": [{"name", "digest"}, ...]}``)."""
    out = {}
    models = tags_answer.get("models") if isinstance(tags_answer, dict) else None
    for item in models or []:
        if isinstance(item, dict) and item.get("name") and item.get("digest"):
            out[name_key(str(item["name"]))] = str(item["digest"]).lower()
    return out


def find_runner(entries, name, key_of=None):
    """The /api/ps entry whose runner serves ``name``, or None.

    1. An entry with the same name (``Name.EqualFold`` after ``ParseName``) is that runner.
    2. Otherwise, with ``key_of`` (a callable: model name -> ``runner_key`` or None, typically from /api/show,
       cached by the caller), an entry whose runner key equals the key of ``name``: another tag of the same blob
       (sched.go ``schedulerModelKey``).

    A digest in ``name`` (``@sha256:...``) does not take part in finding the runner: check it against the entry's
    ``digest`` with ``digest_matches``.
    """
    base, _digest = split_digest(name)
    key = name_key(base)
    for entry in entries:
        if name_key(str(entry.get("name") or entry.get("model") or "")) == key:
            return entry
    if key_of is None or not entries:
        return None
    want = key_of(base)
    if want is None:
        return None
    for entry in entries:
        other = str(entry.get("name") or entry.get("model") or "")
        if other and key_of(other) == want:
            return entry
    return None
