# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of keepwarm.ollama: /api/ps entries described and checked.
# Import as ansible_collections.keepwarm.ollama.plugins.module_utils._ps

"""Describe /api/ps entries (server/routes.go PsHandler) and check them against a wanted list of models."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.keepwarm.ollama.plugins.module_utils._api import OllamaNotFound
from ansible_collections.keepwarm.ollama.plugins.module_utils._expires import (
    FOREVER,
    ExpiresAtError,
    classify,
)
from ansible_collections.keepwarm.ollama.plugins.module_utils._names import (
    digest_matches,
    display_shortest,
    find_runner,
    name_key,
    runner_key,
    split_digest,
    tags_digests,
)

# server/sched.go load(): a model is added to the loaded list (all /api/ps shows) only when its load finished
LOADING_HINT = "not in /api/ps: not loaded, or loading right now (a model is listed only once its load has finished)"


def show_key_of(client):
    """A cached ``key_of`` for ``_names.find_runner``: model name -> runner key from POST /api/show.

    A model the server does not know gives None. Other errors (unreachable server) propagate.
    """
    cache = {}

    def key_of(name):
        key = display_shortest(name).lower()
        if key not in cache:
            try:
                cache[key] = runner_key(client.show(name))
            except OllamaNotFound:
                cache[key] = None
        return cache[key]

    return key_of


def tags_digest_of(client):
    """A cached ``digest_of`` for ``problems``: model name -> the server's manifest digest of that tag (GET
    /api/tags, read once), or None."""
    cache = {}

    def digest_of(name):
        if "tags" not in cache:
            cache["tags"] = tags_digests(client.tags())
        return cache["tags"].get(name_key(name))

    return digest_of


def gpu_fraction(size, size_vram):
    """Share of the model in VRAM, 0.0-1.0; None when unknown (cmd/cmd.go ListRunningHandler: size 0 or
    size_vram > size print ``Unknown``)."""
    if not size or size_vram is None or size_vram > size:
        return None
    return float(size_vram) / float(size)  # not rounded: 9,999,600,000 of 10,000,000,000 bytes is not 1.0


def describe(entry, now=None):
    """One /api/ps entry with keepwarm's classification added."""
    expires_at = entry.get("expires_at")
    try:
        c = classify(expires_at, now)
        state, seconds_left, epoch = c["state"], c["seconds_left"], c["epoch"]
    except ExpiresAtError:
        state, seconds_left, epoch = "unknown", None, None
    size = entry.get("size") or 0
    size_vram = entry.get("size_vram")
    return {
        "name": entry.get("name"),
        "model": entry.get("model"),
        "digest": entry.get("digest"),
        "size": size,
        "size_vram": size_vram,
        "gpu_fraction": gpu_fraction(size, size_vram),
        "context_length": entry.get("context_length"),
        "expires_at": expires_at,
        "expires_at_epoch": epoch,
        "state": state,
        "seconds_left": seconds_left,
    }


def find(entries, name, key_of=None):
    """The /api/ps entry whose runner serves ``name`` (``_names.find_runner``: same name, or with ``key_of`` the
    same blob), or None."""
    return find_runner(entries, name, key_of)


def wanted_names(models):
    """``models`` option items (a name or a dict with ``name``) as a list of names."""
    names = []
    for item in models or []:
        if isinstance(item, dict):
            if not item.get("name"):
                raise ValueError("models item %r has no name" % (item,))
            names.append(str(item["name"]))
        else:
            names.append(str(item))
    return names


def problems(url, described, wanted, require_gpu=False, allow_unlisted=True, *, key_of=None, digest_of=None):
    """The problems of a host: each ``{url, model, expires_at, reason, message}``.

    Reasons: ``missing`` (wanted, not in /api/ps: not loaded or still loading), ``digest`` (loaded, but neither the
    runner's manifest digest nor, with ``digest_of`` (name -> the server's manifest digest of that tag, from
    /api/tags), the digest of the wanted tag whose blob the runner serves is the ``@sha256:`` one in the wanted
    name), ``expiring`` (loaded, not forever),
    ``offloaded`` (``size_vram`` below ``size``, exactly, with ``require_gpu``), ``unexpected`` (loaded, serving
    no wanted name, with ``allow_unlisted=False``). A wanted name matches the runner of its blob
    (``_names.find_runner`` with ``key_of``), so ``llama3.2:3b`` is served by a loaded ``llama3.2:latest``.
    """
    found = []

    def add(model, expires_at, reason, text):
        found.append(
            {
                "url": url,
                "model": model,
                "expires_at": expires_at,
                "reason": reason,
                "message": "%s: %s (expires_at %s): %s" % (url, model, expires_at or "-", text),
            }
        )

    served = []
    for name in wanted:
        base, digest = split_digest(name)
        entry = find(described, name, key_of)
        if entry is None:
            add(display_shortest(base) + ("@sha256:" + digest if digest else ""), None, "missing", LOADING_HINT)
            continue
        served.append(id(entry))
        if digest and not digest_matches(digest, entry.get("digest")):
            # another manifest of the same blob loaded the runner (a tag created FROM it): what the server would
            # serve for the wanted name is that tag's manifest, on this runner
            local = digest_of(base) if digest_of is not None else None
            if not digest_matches(digest, local):
                add(
                    entry["name"],
                    entry["expires_at"],
                    "digest",
                    "the loaded runner has digest %s and %s is %s on the server, not the wanted %s"
                    % (entry.get("digest") or "-", display_shortest(base), local or "unknown", digest),
                )
        if entry["state"] != FOREVER:
            left = entry["seconds_left"]
            add(
                entry["name"],
                entry["expires_at"],
                "expiring",
                "not pinned: %s%s" % (entry["state"], "" if left is None else ", %.0f s left" % left),
            )
        if require_gpu and (not entry["size"] or entry["size_vram"] != entry["size"]):
            add(
                entry["name"],
                entry["expires_at"],
                "offloaded",
                "only %s of %s bytes in VRAM" % (entry["size_vram"], entry["size"]),
            )
    if not allow_unlisted:
        for entry in described:
            if id(entry) not in served:
                add(entry["name"], entry["expires_at"], "unexpected", "loaded but not in the list of models")
    return found
