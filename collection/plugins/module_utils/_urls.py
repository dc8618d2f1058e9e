# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of keepwarm.ollama: what a client may show of a URL, and whether it goes through a proxy.
# Import as ansible_collections.keepwarm.ollama.plugins.module_utils._urls
#
# RULEBOOK MODULE: standard library only, no imports of other module_utils. The heartbeat agent loads this same
# file (heartbeat_agent/_rules.py; its zipapp vendors a copy).
# Stable API (keep these names and signatures):
#   redact_url(url) -> str                  user and password replaced by "***" (messages, logs, return values)
#   url_secrets(url) -> list                the password in the url (to mask it everywhere), [] without one
#   proxy_for(url, environ=None) -> (proxy_url or None, variable or None)   Go's http.ProxyFromEnvironment rule

"""URLs as keepwarm shows them, and the proxy rule of Ollama's own Go client (golang.org/x/net/http/httpproxy)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import os

from urllib.parse import urlparse, urlunparse


def redact_url(url):
    """``url`` with any user and password replaced by ``***`` (for messages and returns)."""
    if not isinstance(url, str):
        return url
    try:
        parsed = urlparse(url)
    except ValueError:
        return url
    if parsed.username is None and parsed.password is None:
        return url
    host = parsed.netloc.rsplit("@", 1)[-1]
    return urlunparse(parsed._replace(netloc="***@" + host))


def url_secrets(url):
    """The password embedded in ``url`` (for AnsibleModule.no_log_values), as a list (empty without one)."""
    try:
        parsed = urlparse(url)
    except (ValueError, TypeError, AttributeError):
        return []
    return [v for v in (parsed.password,) if v]


def _no_proxy_matches(host, no_proxy):
    """Whether ``host`` matches a ``no_proxy`` list: ``*``, exact names, domain suffixes (``example.com`` and
    ``.example.com`` match ``a.example.com``), IP addresses and CIDR blocks (``10.0.0.0/8``); ports are ignored."""
    host = host.lower().strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for item in no_proxy.split(","):
        entry = item.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if entry.startswith("[") and "]" in entry:
            entry = entry[1 : entry.index("]")]
        elif entry.count(":") == 1:
            entry = entry.split(":", 1)[0]
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        domain = entry.lstrip(".")
        if host == domain or host.endswith("." + domain):
            return True
    return False


def proxy_for(url, environ=None):
    """``(proxy_url, variable)`` an HTTP request to ``url`` goes through, or ``(None, None)``.

    Follows the Go client's rule (golang.org/x/net/http/httpproxy ``useProxy``, what the ``ollama`` CLI uses):
    ``localhost`` and loopback addresses are never proxied; ``no_proxy``/``NO_PROXY`` (names, domain suffixes, IPs,
    CIDR blocks, ``*``) bypass the proxy; otherwise ``http_proxy``/``HTTP_PROXY`` (``https_proxy``/``HTTPS_PROXY``
    for https URLs) is used. Python's urllib alone would send loopback calls to the proxy and knows no CIDR blocks.
    """
    env = os.environ if environ is None else environ
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower()
    if not host or host == "localhost" or host.endswith(".localhost"):
        return None, None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None, None
    except ValueError:
        pass
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY") or ""
    if no_proxy and _no_proxy_matches(host, no_proxy):
        return None, None
    for var in ("%s_proxy" % parsed.scheme, "%s_PROXY" % parsed.scheme.upper()):
        if env.get(var):
            return env[var], var
    return None, None
