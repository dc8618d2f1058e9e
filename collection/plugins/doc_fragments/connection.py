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
"""
