# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The connection options of every keepwarm.ollama HTTP module (argument spec: module_utils/_api.py
    # CONNECTION_ARGSPEC).
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the Ollama server, with its scheme.
      - A URL without C(http://) or C(https://) is refused.
      - Credentials in the URL (C(http://user:password@host:11434)) are sent as basic authentication and shown as
        C(***) in every message and return value; the password is masked in the logged invocation.
    type: str
    default: http://127.0.0.1:11434
  timeout:
    description:
      - Seconds to wait for an answer from the server.
    type: float
    default: 30.0
  validate_certs:
    description:
      - Verify the server's TLS certificate when O(url) uses C(https).
    type: bool
    default: true
  headers:
    description:
      - Extra HTTP headers, for example an C(Authorization) header for a proxy in front of Ollama.
      - Never logged.
    type: dict
  use_proxy:
    description:
      - Whether requests may go through the proxy named by C(http_proxy)/C(https_proxy) (or their upper-case
        forms) in the module's environment.
      - As in Ollama's own Go client, C(localhost) and loopback addresses never use a proxy, and C(no_proxy)/C(NO_PROXY)
        entries (names, domain suffixes, IP addresses, CIDR blocks such as C(10.0.0.0/8), C(*)) bypass it.
      - When a proxy is used, every error names it and the variable it came from.
      - C(false) never uses a proxy.
    type: bool
    default: true
  ca_path:
    description:
      - A PEM file of CA certificates to verify the server's certificate with (a private CA in front of Ollama),
        instead of the system trust store. Used only with C(https) and O(validate_certs=true).
      - A path that is not a readable file fails the module before any request, naming the path.
    type: path
"""
