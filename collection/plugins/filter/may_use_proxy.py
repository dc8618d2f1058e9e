# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: may_use_proxy
short_description: Whether a request to an Ollama URL may go through a proxy (never for loopback)
version_added: 0.1.0
author: keepwarm maintainers
description:
  - Answers with the proxy rule of Ollama's Go client (golang.org/x/net/http/httpproxy C(useProxy)), the one rule the
    collection's modules and the heartbeat agent follow (C(module_utils/_urls.py) C(proxy_for)).
  - V(false) when no proxy environment can send a request to O(_input) through a proxy, that is for C(localhost),
    C(*.localhost) and loopback addresses (C(127.0.0.0/8), C(::1) in any spelling); V(true) otherwise, when the
    target's C(http_proxy)/C(https_proxy) and C(no_proxy) decide.
  - For tasks whose own HTTP client has no loopback rule, such as M(ansible.builtin.uri), whose urllib sends loopback
    requests to a configured proxy; see the example (the keepalive role waits for the API this way).
options:
  _input:
    description: An http:// or https:// URL.
    type: string
    required: true
"""

EXAMPLES = r"""
- name: Wait for the Ollama API, never through a proxy to loopback
  ansible.builtin.uri:
    url: "{{ ollama_url }}/api/version"
    use_proxy: "{{ ollama_url | keepwarm.ollama.may_use_proxy }}"

# http://127.0.0.1:11434 => false; http://localhost:11434 => false; http://[::1]:11434 => false
# http://gpu-01.example.org:11434 => true
"""

RETURN = r"""
_value:
  description: V(false) when Ollama's Go client would never proxy a request to the URL, else V(true).
  type: bool
"""

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.six import string_types
from ansible_collections.keepwarm.ollama.plugins.module_utils._urls import proxy_for

# Any proxy for either scheme: proxy_for then answers None only where its rule never proxies (localhost, loopback).
_EVERY_PROXY = {"http_proxy": "http://proxy.invalid:3128", "https_proxy": "http://proxy.invalid:3128"}


def may_use_proxy(url):
    """False for a URL Ollama's Go client never sends through a proxy (rulebook _urls.proxy_for), else True."""
    if not isinstance(url, string_types) or not url:
        raise AnsibleFilterError("keepwarm.ollama.may_use_proxy: expected an http(s) URL, got %r" % (url,))
    url = to_native(url)
    if not url.lower().startswith(("http://", "https://")):
        raise AnsibleFilterError("keepwarm.ollama.may_use_proxy: %r is not an http:// or https:// URL" % url)
    try:
        proxy, _variable = proxy_for(url, _EVERY_PROXY)
    except ValueError as exc:
        raise AnsibleFilterError("keepwarm.ollama.may_use_proxy: %r is not a valid URL (%s)" % (url, exc)) from None
    return proxy is not None


class FilterModule(object):
    def filters(self):
        return {"may_use_proxy": may_use_proxy}
