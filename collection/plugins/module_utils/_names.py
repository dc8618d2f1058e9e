# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of keepwarm.ollama: model names as Ollama normalises them.
# Import as ansible_collections.keepwarm.ollama.plugins.module_utils._names

"""Model name normalisation following types/model/name.go (``ParseName``, ``DisplayShortest``, ``EqualFold``).

``llama3`` and ``llama3:latest`` name the same model; so do ``library/llama3`` and
``registry.ollama.ai/library/llama3:latest``. /api/ps reports ``ParseName(name).DisplayShortest()``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DEFAULT_HOST = "registry.ollama.ai"  # types/model/name.go defaultHost
DEFAULT_NAMESPACE = "library"  # defaultNamespace
DEFAULT_TAG = "latest"  # defaultTag


def _cut_last(s, sep):
    i = s.rfind(sep)
    if i < 0:
        return s, "", False
    return s[:i], s[i + len(sep) :], True


def parse_name(name):
    """types/model/name.go ``ParseNameBare`` merged with the defaults: ``(host, namespace, model, tag)``."""
    s = name.strip()
    # a digest suffix ("@sha256:...") is not part of the display name
    if "@" in s:
        s = s.split("@", 1)[0]
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
    """True when Ollama treats both names as the same model (``llama3`` == ``llama3:latest``)."""
    return name_key(a) == name_key(b)
