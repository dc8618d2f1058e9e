# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of keepwarm.ollama: the Ollama HTTP client shared by the modules.
# Import as ansible_collections.keepwarm.ollama.plugins.module_utils._api

"""A small Ollama API client over ``ansible.module_utils.urls.open_url`` with clear errors."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import socket
import time

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import urlparse
from ansible.module_utils.urls import open_url

from ansible_collections.keepwarm.ollama.plugins.module_utils._urls import (  # noqa: F401 - re-exported
    proxy_for,
    redact_url,
    url_secrets,
)

DEFAULT_URL = "http://127.0.0.1:11434"

# The connection options every HTTP module merges into its argument_spec (documented once in the
# keepwarm.ollama.connection doc fragment).
CONNECTION_ARGSPEC = dict(
    url=dict(type="str", default=DEFAULT_URL),
    timeout=dict(type="float", default=30.0),
    validate_certs=dict(type="bool", default=True),
    headers=dict(type="dict", no_log=True),
    use_proxy=dict(type="bool", default=True),
    ca_path=dict(type="path"),
)


def connection_argspec(**overrides):
    """A copy of CONNECTION_ARGSPEC with per-module changes (for example ollama_pin's longer timeout)."""
    spec = dict((k, dict(v)) for k, v in CONNECTION_ARGSPEC.items())
    for key, value in overrides.items():
        spec[key].update(value)
    return spec


class OllamaError(Exception):
    """An API call failed; ``str()`` is a message fit for ``fail_json``. ``status`` is the HTTP status or None."""

    def __init__(self, message, status=None, body=None):
        super(OllamaError, self).__init__(message)
        self.status = status
        self.body = body


class OllamaNotFound(OllamaError):
    """404 from the server: the model is not known (``model 'x' not found``) or the path does not exist."""


def check_url(url):
    """Refuse URLs without an http(s) scheme or a host, naming the fix (``127.0.0.1:11434`` -> ``http://...``)."""
    if not isinstance(url, str) or not url:
        raise OllamaError("url is empty: give the server's base URL, e.g. %s" % DEFAULT_URL)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        shown = url.split("://", 1)[-1].lstrip("/")
        if "@" in shown:
            shown = "***@" + shown.rsplit("@", 1)[1]
        raise OllamaError(
            "url %r has no http:// or https:// scheme (or no host): write it as http://%s"
            % (redact_url(url) if "://" in url else shown, shown or "127.0.0.1:11434")
        )
    return url.rstrip("/")


def check_ca_path(ca_path):
    """ca_path as given (None: the system trust store); a path that is not a readable file is refused by name, before
    any request (urllib would otherwise report it as a TLS failure of the server)."""
    if ca_path is None:
        return None
    if not os.path.isfile(ca_path) or not os.access(ca_path, os.R_OK):
        raise OllamaError("ca_path %r is not a readable file of PEM CA certificates" % ca_path)
    return ca_path


def _error_text(raw):
    """The server's ``{"error": "..."}`` text (docs/api/errors.mdx), else the raw body, shortened."""
    if not raw:
        return ""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.strip()[:300]
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])
    return raw.strip()[:300]


def _is_timeout(exc):
    if isinstance(exc, socket.timeout):
        return True
    reason = getattr(exc, "reason", None)
    if isinstance(reason, socket.timeout):
        return True
    return "timed out" in str(exc)


class OllamaClient:
    """Talks to one Ollama server. Every method raises OllamaError with the endpoint and the cause."""

    def __init__(
        self,
        url=DEFAULT_URL,
        timeout=30.0,
        validate_certs=True,
        headers=None,
        opener=None,
        *,
        use_proxy=True,
        ca_path=None,
    ):
        self.url = check_url(url)
        self.display_url = redact_url(self.url)
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.headers = dict(headers or {})
        self.ca_path = check_ca_path(ca_path)
        self._open = opener or open_url
        self.proxy, self.proxy_variable = proxy_for(self.url) if use_proxy else (None, None)

    def _via(self):
        if not self.proxy:
            return ""
        return " through the proxy %s (from %s; set use_proxy=false or add the host to no_proxy to bypass it)" % (
            redact_url(self.proxy),
            self.proxy_variable,
        )

    def request(self, method, path, body=None, timeout=None):
        """Send one request and return the decoded JSON body (None for an empty body)."""
        endpoint = "%s %s%s" % (method, self.display_url, path)
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        wait = self.timeout if timeout is None else timeout
        try:
            resp = self._open(
                self.url + path,
                data=data,
                method=method,
                headers=headers,
                timeout=wait,
                validate_certs=self.validate_certs,
                follow_redirects="safe",
                use_proxy=self.proxy is not None,
                ca_path=self.ca_path,
            )
            raw = resp.read()
        except HTTPError as exc:
            try:
                raw = exc.read()
            except Exception:  # noqa: BLE001 - the body is best effort
                raw = b""
            text = _error_text(raw)
            if exc.code == 404:
                raise OllamaNotFound(
                    "%s%s: 404 not found: %s" % (endpoint, self._via(), text or "no body"), status=exc.code, body=text
                ) from None
            raise OllamaError(
                "%s%s: HTTP %s: %s" % (endpoint, self._via(), exc.code, text or exc.reason), status=exc.code, body=text
            ) from None
        except (URLError, socket.error, socket.timeout) as exc:
            if _is_timeout(exc):
                raise OllamaError("%s%s: no answer within the %ss timeout" % (endpoint, self._via(), wait)) from None
            reason = getattr(exc, "reason", exc)
            raise OllamaError(
                "cannot reach Ollama at %s (%s)%s: %s" % (self.display_url, endpoint, self._via(), reason)
            ) from None
        if not raw:
            return None
        try:
            return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        except ValueError:
            snippet = raw[:200].decode("utf-8", "replace") if isinstance(raw, bytes) else raw[:200]
            raise OllamaError(
                "%s%s: the answer is not JSON (is this an Ollama server%s?): %r"
                % (endpoint, self._via(), " or the proxy's page" if self.proxy else "", snippet)
            ) from None

    def ps(self):
        """GET /api/ps (server/routes.go PsHandler): the list of loaded models."""
        data = self.request("GET", "/api/ps")
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise OllamaError("GET %s/api/ps: unexpected answer %r" % (self.display_url, data))
        return data["models"]

    def show(self, name):
        """POST /api/show (server/routes.go ShowHandler): modelfile (``FROM <blob>``), capabilities, model_info.

        Raises OllamaNotFound for a model the server does not have."""
        data = self.request("POST", "/api/show", {"model": name})
        if not isinstance(data, dict):
            raise OllamaError("POST %s/api/show: unexpected answer %r" % (self.display_url, data))
        return data

    def tags(self):
        """GET /api/tags: the local models with their manifest digests."""
        data = self.request("GET", "/api/tags")
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise OllamaError("GET %s/api/tags: unexpected answer %r" % (self.display_url, data))
        return data

    def post(self, path, body, timeout=None):
        """POST ``body`` to ``path``; returns ``(answer, seconds)`` where seconds is the measured wall time."""
        start = time.monotonic()
        answer = self.request("POST", path, body, timeout=timeout)
        return answer, time.monotonic() - start

    def generate(self, body, timeout=None):
        """POST /api/generate with an empty prompt: a load or unload request (server/routes.go GenerateHandler).

        Raises OllamaNotFound with the server's text (``model 'x' not found``) for an unknown model.
        Returns ``(answer, seconds)`` where seconds is the measured wall time.
        """
        payload = dict(body)
        payload.setdefault("stream", False)
        start = time.monotonic()
        answer = self.request("POST", "/api/generate", payload, timeout=timeout)
        return answer, time.monotonic() - start


def client_for(module):
    """The client for a module's shared connection options (connection_argspec); fails the module, naming the URL
    and what is wrong with it, before any request is sent."""
    params = module.params
    # a password in the url never appears in messages, returns or the logged invocation
    module.no_log_values.update(url_secrets(params["url"]))
    try:
        return OllamaClient(
            params["url"],
            params["timeout"],
            params["validate_certs"],
            params["headers"],
            use_proxy=params.get("use_proxy", True),
            ca_path=params.get("ca_path"),
        )
    except OllamaError as exc:
        module.fail_json(msg=str(exc))
