# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of keepwarm.ollama: /api/ps entries described and checked.
# Import as ansible_collections.keepwarm.ollama.plugins.module_utils._ps

"""Describe /api/ps entries (server/routes.go PsHandler) and check them against a wanted list of models."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.keepwarm.ollama.plugins.module_utils._expires import (
    FOREVER,
    ExpiresAtError,
    classify,
)
from ansible_collections.keepwarm.ollama.plugins.module_utils._names import display_shortest, name_key


def gpu_fraction(size, size_vram):
    """Share of the model in VRAM, 0.0-1.0; None when unknown (cmd/cmd.go ListRunningHandler: size 0 or
    size_vram > size print ``Unknown``)."""
    if not size or size_vram is None or size_vram > size:
        return None
    return round(float(size_vram) / float(size), 4)


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


def find(entries, name):
    """The /api/ps entry for ``name`` (Ollama's name matching: ``llama3`` == ``llama3:latest``), or None."""
    key = name_key(name)
    for entry in entries:
        if name_key(entry.get("name") or entry.get("model") or "") == key:
            return entry
    return None


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


def problems(url, described, wanted, require_gpu=False, allow_unlisted=True):
    """The problems of a host: each ``{url, model, expires_at, reason, message}``.

    Reasons: ``missing`` (wanted, not loaded), ``expiring`` (loaded, not forever), ``offloaded`` (not fully in
    VRAM, with ``require_gpu``), ``unexpected`` (loaded, not wanted, with ``allow_unlisted=False``).
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

    wanted_keys = set()
    for name in wanted:
        wanted_keys.add(name_key(name))
        entry = find(described, name)
        if entry is None:
            add(display_shortest(name), None, "missing", "not loaded")
            continue
        if entry["state"] != FOREVER:
            left = entry["seconds_left"]
            add(
                entry["name"],
                entry["expires_at"],
                "expiring",
                "not pinned: %s%s" % (entry["state"], "" if left is None else ", %.0f s left" % left),
            )
        if require_gpu and entry["gpu_fraction"] != 1.0:
            add(
                entry["name"],
                entry["expires_at"],
                "offloaded",
                "only %s of %s bytes in VRAM" % (entry["size_vram"], entry["size"]),
            )
    if not allow_unlisted:
        for entry in described:
            if name_key(entry["name"] or "") not in wanted_keys:
                add(entry["name"], entry["expires_at"], "unexpected", "loaded but not in the list of models")
    return found
