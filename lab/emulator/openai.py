"""The OpenAI-compatible `/v1` API as a translation layer over the native handlers (stdlib only, Python 3.9+).

Upstream serves `/v1/*` with gin middleware in front of the native handlers (server/routes.go `GenerateRoutes`):
the middleware binds the OpenAI request, converts it to the native request (openai/openai.go `FromChatRequest`,
`FromCompleteRequest`; middleware/openai.go `EmbeddingsMiddleware`, `RetrieveMiddleware`), lets the native handler
run unchanged, and rewrites what that handler writes (middleware/openai.go `ChatWriter`, `CompleteWriter`,
`EmbedWriter`, `ListWriter`, `RetrieveWriter`). This module is that layer as pure functions and small writer
objects, so that the HTTP module only has to (1) call `translate()` for a /v1 path, (2) run the native handler on
the request it returns, and (3) pass every status + JSON object the native handler would write through the
writer's `write()`:

    route                     native handler   request in -> native request        native out -> OpenAI
    POST /v1/chat/completions /api/chat        from_chat_request                    ChatWriter (SSE when stream)
    POST /v1/completions      /api/generate    from_complete_request                CompleteWriter (SSE when stream)
    POST /v1/embeddings       /api/embed       from_embed_request                   EmbedWriter
    GET  /v1/models           /api/tags        (none)                               ListWriter
    GET  /v1/models/{model}   /api/show        {"name": model}                      RetrieveWriter

Consequences that matter to keepwarm (ollama-behaviour.md §7 "OpenAI- and Anthropic-compatible routes"):
  - the OpenAI request structs have no `keep_alive`, so a `/v1` body's keep_alive is dropped here and nil reaches
    the scheduler (first load: OLLAMA_KEEP_ALIVE; reuse: the runner keeps its current session length);
  - the native options are built only from stop, max_tokens, temperature (default 1.0), seed, frequency_penalty,
    presence_penalty and top_p (default 1.0): never num_ctx, so a runner loaded with an explicit num_ctx is
    reloaded by any /v1 request (sched.go `needsReload`);
  - `/v1/chat/completions` with no messages is 400 `[] is too short - 'messages'`, so /v1 cannot preload.

Not imitated (and why): `/v1/responses`, `/v1/messages` (Anthropic) and `/v1/audio/transcriptions` (no keepwarm
client uses them); `:cloud` passthrough (there is no cloud behind the emulator); floats are printed the Python way
(`1.0`, not Go's `1`; JSON readers see the same number); the `_debug_render_only` field.
"""

import base64
import json
import random
import struct
from urllib.parse import unquote

from .gotime import NS, parse_go_time
from .jsonbind import BindError, _json_kind, _Pairs, _Walk, decode_json_body

# ---------------------------------------------------------------------------------------------------------------
# Request structs (openai/openai.go). Types: see jsonbind.py; ("float", go_type) is a JSON number.
# ---------------------------------------------------------------------------------------------------------------

_STREAM_OPTIONS = ("struct", "StreamOptions", {"include_usage": "bool"})
_MESSAGE = (
    "struct",
    "Message",
    {
        "role": "string",
        "content": "any",
        "reasoning": "string",
        "tool_calls": "any",
        "name": "string",
        "tool_call_id": "string",
    },
)
CHAT_REQUEST = (
    "struct",
    "ChatCompletionRequest",
    {
        "model": "string",
        "messages": ("slice", _MESSAGE, "[]openai.Message"),
        "stream": "bool",
        "stream_options": _STREAM_OPTIONS,
        "max_tokens": "int",
        "seed": "int",
        "stop": "any",
        "temperature": ("float", "float64"),
        "frequency_penalty": ("float", "float64"),
        "presence_penalty": ("float", "float64"),
        "top_p": ("float", "float64"),
        "response_format": (
            "struct",
            "ResponseFormat",
            {"type": "string", "json_schema": ("struct", "JsonSchema", {"schema": "any"})},
        ),
        "tools": "any",
        "reasoning": ("struct", "Reasoning", {"effort": "string"}),
        "reasoning_effort": "string",
        "logprobs": "bool",
        "top_logprobs": "int",
    },
)
COMPLETION_REQUEST = (
    "struct",
    "CompletionRequest",
    {
        "model": "string",
        "prompt": "string",
        "frequency_penalty": ("float", "float32"),
        "max_tokens": "int",
        "presence_penalty": ("float", "float32"),
        "seed": "int",
        "stop": "any",
        "stream": "bool",
        "stream_options": _STREAM_OPTIONS,
        "temperature": ("float", "float32"),
        "top_p": ("float", "float32"),
        "suffix": "string",
        "logprobs": "int",
    },
)
EMBED_REQUEST = (
    "struct",
    "EmbedRequest",
    {"input": "any", "model": "string", "dimensions": "int", "encoding_format": "string"},
)


class _OpenAIWalk(_Walk):
    """jsonbind's Go-decoder walk, plus float fields and `openai.` type names in error texts."""

    def type_error(self, kind, struct, path, t):
        if self.first is None and isinstance(t, tuple) and t[0] in ("float", "struct"):
            go = t[1] if t[0] == "float" else "openai." + t[1]
            where = "Go value" if struct is None else "Go struct field %s.%s" % (struct, ".".join(path))
            self.first = "json: cannot unmarshal %s into %s of type %s" % (kind, where, go)
            return None
        return super().type_error(kind, struct, path, t)

    def value(self, v, t, struct, path):
        if v is not None and isinstance(t, tuple) and t[0] == "float":
            kind = _json_kind(v)
            if kind != "number":
                return self.type_error(kind, struct, path, t)
            return float(v)
        return super().value(v, t, struct, path)


def bind(raw, schema):
    """gin ShouldBindJSON into an openai/openai.go request struct. Raises BindError with Go's text; an empty body
    is `EOF` (the /v1 middleware does not special-case io.EOF as the native handlers do)."""
    try:
        value = decode_json_body(raw)
    except BindError as e:
        if e.message == "missing request body":
            raise BindError("EOF") from None
        raise
    if value is None:
        return {}
    if not isinstance(value, _Pairs):
        raise BindError("json: cannot unmarshal %s into Go value of type openai.%s" % (_json_kind(value), schema[1]))
    w = _OpenAIWalk()
    out = w.value(value, schema, None, [])
    if w.first:
        raise BindError(w.first)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Errors (openai/openai.go NewError; middleware/openai.go BaseWriter.writeError)
# ---------------------------------------------------------------------------------------------------------------


class V1Error(Exception):
    """A 400 raised while translating the request (the middleware's AbortWithStatusJSON)."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status
        self.message = message


def new_error(status, message):
    """openai.go NewError: 400 invalid_request_error, 404 not_found_error, anything else api_error."""
    etype = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": etype, "param": None, "code": None}}


def go_json(obj, newline=False):
    """Go encoding/json text: compact, `<`, `>`, `&`, U+2028 and U+2029 escaped (json.Marshal's HTML escaping);
    json.Encoder.Encode (the /v1 writers) adds a newline, c.JSON (AbortWithStatusJSON) does not."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    s = s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return (s + ("\n" if newline else "")).encode("utf-8", "replace")


# content types: gin c.JSON / the writers' Header().Set / SSE
CT_GIN_JSON = "application/json; charset=utf-8"
CT_JSON = "application/json"
CT_SSE = "text/event-stream"


def abort_response(status, message):
    """(status, content type, body) of the middleware's own c.AbortWithStatusJSON(status, NewError(...))."""
    return status, CT_GIN_JSON, go_json(new_error(status, message))


def _error_message(obj):
    """api.StatusError.Error() of the native error body ({"error": "..."} unmarshalled into StatusError)."""
    msg = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(msg, str) and msg:
        return msg
    return "something went wrong, please see the ollama server logs for details"


# ---------------------------------------------------------------------------------------------------------------
# OpenAI request -> native request (openai/openai.go FromChatRequest, FromCompleteRequest; EmbeddingsMiddleware)
# ---------------------------------------------------------------------------------------------------------------


def go_type(v):
    """fmt %T of a value decoded into Go `any`."""
    if v is None:
        return "<nil>"
    return {
        "bool": "bool",
        "number": "float64",
        "string": "string",
        "array": "[]interface {}",
        "object": "map[string]interface {}",
    }[_json_kind(_Pairs(v.items()) if isinstance(v, dict) else v)]


def _from_tool_calls(calls):
    """openai.go FromCompletionToolCall: arguments is a JSON text that must decode to an object."""
    out = []
    for item in calls or []:
        tc = item if isinstance(item, dict) else {}
        fn = tc.get("function") if isinstance(tc.get("function"), dict) else {}
        try:
            args = json.loads(fn.get("arguments") or "")
        except (TypeError, ValueError):
            raise V1Error("invalid tool call arguments") from None
        if args is not None and not isinstance(args, dict):
            raise V1Error("invalid tool call arguments")
        call = {"function": {"name": fn.get("name") or "", "arguments": args or {}}}
        if tc.get("id"):
            call = {"id": tc["id"], **call}
        out.append(call)
    return out


_IMAGE_PREFIXES = ["data:;base64,"] + ["data:image/%s;base64," % t for t in ("jpeg", "jpg", "png", "webp")]


def _decode_image_url(url):
    """openai.go decodeImageURL: base64 data URIs only; returns the base64 text of the image bytes."""
    if url.startswith(("http://", "https://")):
        raise V1Error("image URLs are not currently supported, please use base64 encoded data instead")
    for prefix in _IMAGE_PREFIXES:
        if url.startswith(prefix):
            try:
                data = base64.b64decode(url[len(prefix) :], validate=True)
            except ValueError:
                raise V1Error("invalid image input") from None
            return base64.b64encode(data).decode()
    raise V1Error("invalid image input")


def _message(role, content="", thinking="", *, images=None, tool_calls=None, tool_name="", tool_call_id=""):
    """api.Message as JSON (content always present, the rest omitempty)."""
    m = {"role": role, "content": content}
    for key, val in (
        ("thinking", thinking),
        ("images", images),
        ("tool_calls", tool_calls),
        ("tool_name", tool_name),
        ("tool_call_id", tool_call_id),
    ):
        if val:
            m[key] = val
    return m


def _tool_name(messages, msg):
    """openai.go FromChatRequest / nameFromToolCallID: a tool message's name, else the name of the (last) call
    with its tool_call_id."""
    if (msg.get("role") or "").lower() != "tool":
        return ""
    if msg.get("name"):
        return msg["name"]
    want = msg.get("tool_call_id")
    if not want:
        return ""
    for prev in reversed(messages):
        for tc in (prev or {}).get("tool_calls") or []:
            if isinstance(tc, dict) and tc.get("id") == want:
                fn = tc.get("function")
                return (fn.get("name") or "") if isinstance(fn, dict) else ""
    return ""


def _from_messages(messages):
    out = []
    for item in messages:
        msg = item or {}
        role = msg.get("role", "")
        tool_name = _tool_name(messages, msg)
        content = msg.get("content")
        if isinstance(content, str):
            out.append(
                _message(
                    role,
                    content,
                    msg.get("reasoning", ""),
                    tool_calls=_from_tool_calls(msg.get("tool_calls")),
                    tool_name=tool_name,
                    tool_call_id=msg.get("tool_call_id", ""),
                )
            )
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    raise V1Error("invalid message format")
                kind = part.get("type")
                if kind == "text":
                    if not isinstance(part.get("text"), str):
                        raise V1Error("invalid message format")
                    out.append(_message(role, part["text"]))
                elif kind == "image_url":
                    url = part.get("image_url")
                    url = url.get("url") if isinstance(url, dict) else url
                    if not isinstance(url, str):
                        raise V1Error("invalid message format")
                    out.append(_message(role, images=[_decode_image_url(url)]))
                elif kind == "input_audio":
                    audio = part.get("input_audio")
                    if not isinstance(audio, dict):
                        raise V1Error("invalid input_audio format")
                    if not isinstance(audio.get("data"), str):
                        raise V1Error("invalid input_audio format: missing data")
                    try:
                        data = base64.b64decode(audio["data"], validate=True)
                    except ValueError as e:
                        raise V1Error("invalid input_audio base64 data: %s" % e) from None
                    out.append(_message(role, images=[base64.b64encode(data).decode()]))
                else:
                    raise V1Error("invalid message format")
            if out and msg.get("tool_calls"):
                # tool calls (and the tool name/id, reasoning) go on the last message added for this one
                last = out[-1]
                last.update(
                    _message(
                        role,
                        last.get("content", ""),
                        msg.get("reasoning", ""),
                        images=last.get("images"),
                        tool_calls=_from_tool_calls(msg.get("tool_calls")),
                        tool_name=tool_name,
                        tool_call_id=msg.get("tool_call_id", ""),
                    )
                )
        else:
            # content may be absent only when tool_calls is present (even as [])
            if msg.get("tool_calls") is None:
                raise V1Error("invalid message content type: %s" % go_type(content))
            out.append(
                _message(
                    role,
                    "",
                    msg.get("reasoning", ""),
                    tool_calls=_from_tool_calls(msg.get("tool_calls")),
                    tool_call_id=msg.get("tool_call_id", ""),
                )
            )
    return out


def _stop_option(stop, strict):
    """`stop`: a string becomes a one-element list; in a list, non-strings are skipped (chat) or an error
    (completions: `invalid type for 'stop' field: %T`). Other types set nothing."""
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        stops = []
        for s in stop:
            if isinstance(s, str):
                stops.append(s)
            elif strict:
                raise V1Error("invalid type for 'stop' field: %s" % go_type(s))
        return stops or None  # a Go nil slice marshals as null: the option is then unset
    return None


_EFFORTS = {"none": False, "minimal": "low", "low": "low", "medium": "medium", "high": "high", "max": "max"}
_EFFORTS.update({"xhigh": "max", "ultra": "max"})


def _think(effort):
    """openai.go thinkFromReasoningEffort."""
    if not effort:
        return None
    if effort not in _EFFORTS:
        raise V1Error(
            'invalid reasoning value: "%s" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", '
            'or "none")' % effort
        )
    return _EFFORTS[effort]


def from_chat_request(req):
    """openai.go FromChatRequest (after ChatMiddleware's empty-messages check): the native /api/chat request.
    No keep_alive and no num_ctx: the OpenAI request has neither."""
    if not req.get("messages"):
        raise V1Error("[] is too short - 'messages'")
    options = {}
    stop = _stop_option(req.get("stop"), strict=False)
    if stop is not None:
        options["stop"] = stop
    if req.get("max_tokens") is not None:
        options["num_predict"] = req["max_tokens"]
    options["temperature"] = req.get("temperature", 1.0)
    if req.get("seed") is not None:
        options["seed"] = req["seed"]
    for key in ("frequency_penalty", "presence_penalty"):
        if req.get(key) is not None:
            options[key] = req[key]
    options["top_p"] = req.get("top_p", 1.0)
    native = {"model": req.get("model", ""), "messages": _from_messages(req["messages"])}
    rf = req.get("response_format") or {}
    rtype = (rf.get("type") or "").strip().lower()
    if rtype == "json_object":
        native["format"] = "json"
    elif rtype == "json_schema" and rf.get("json_schema") is not None:
        if rf["json_schema"].get("schema") is not None:
            native["format"] = rf["json_schema"]["schema"]
    native["options"] = options
    native["stream"] = bool(req.get("stream", False))
    if req.get("tools"):
        native["tools"] = req["tools"]
    effort = (req.get("reasoning") or {}).get("effort", "") if "reasoning" in req else req.get("reasoning_effort")
    think = _think(effort)
    if think is not None:
        native["think"] = think
    if req.get("logprobs"):
        native["logprobs"] = True
    if req.get("top_logprobs"):
        native["top_logprobs"] = req["top_logprobs"]
    return native


def from_complete_request(req):
    """openai.go FromCompleteRequest: the native /api/generate request (no keep_alive, no num_ctx; an empty prompt
    is the native load-only request)."""
    options = {}
    stop = _stop_option(req.get("stop"), strict=True)
    if stop is not None:
        options["stop"] = stop
    if req.get("max_tokens") is not None:
        options["num_predict"] = req["max_tokens"]
    options["temperature"] = req.get("temperature", 1.0)
    if req.get("seed") is not None:
        options["seed"] = req["seed"]
    options["frequency_penalty"] = req.get("frequency_penalty", 0.0)
    options["presence_penalty"] = req.get("presence_penalty", 0.0)
    options["top_p"] = req.get("top_p") or 1.0  # float32 zero value means "unset"
    native = {"model": req.get("model", ""), "prompt": req.get("prompt", ""), "options": options}
    native["stream"] = bool(req.get("stream", False))
    if req.get("suffix"):
        native["suffix"] = req["suffix"]
    if (req.get("logprobs") or 0) > 0:
        native["logprobs"] = True
        native["top_logprobs"] = req["logprobs"]
    return native


def from_embed_request(req):
    """middleware/openai.go EmbeddingsMiddleware: validate encoding_format and input, then the native /api/embed
    request {model, input, dimensions} (no keep_alive)."""
    fmt = req.get("encoding_format") or ""
    if fmt and fmt.lower() not in ("float", "base64"):
        raise V1Error("Invalid value for 'encoding_format' = %s. Supported values: ['float', 'base64']." % fmt)
    inp = req.get("input")
    if inp == "":
        inp = [""]
    if inp is None or inp == []:
        raise V1Error("invalid input")
    native = {"model": req.get("model", ""), "input": inp}
    if req.get("dimensions"):
        native["dimensions"] = req["dimensions"]
    return native


# ---------------------------------------------------------------------------------------------------------------
# Native result -> OpenAI JSON / SSE (middleware/openai.go *Writer; openai/openai.go To*)
# ---------------------------------------------------------------------------------------------------------------


def unix_seconds(go_time_text, default=0):
    """time.Time.Unix() of a native RFC 3339 timestamp (floor division, as Go's Unix for negative times too).
    A line without one (a streamed `{"error": ...}` line unmarshals with a zero time) gives `default`."""
    if not isinstance(go_time_text, str):
        return default
    return parse_go_time(go_time_text) // NS


def sse(obj):
    """One server-sent event: `data: <json>` and a blank line."""
    return b"data: " + go_json(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def _finish_reason(reason):
    return reason or None


def _usage(r):
    """openai.go ToUsage / ToUsageGenerate."""
    p, c = r.get("prompt_eval_count") or 0, r.get("eval_count") or 0
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _to_tool_calls(calls):
    """openai.go ToToolCalls: arguments re-encoded as a JSON text."""
    out = []
    for tc in calls or []:
        fn = tc.get("function") or {}
        out.append(
            {
                "id": tc.get("id", ""),
                "index": fn.get("index", 0),
                "type": "function",
                "function": {"name": fn.get("name", ""), "arguments": go_json(fn.get("arguments")).decode()},
            }
        )
    return out


class Writer:
    """Base of the /v1 writers. `write(status, obj)` gets what the native handler writes (one JSON object or one
    stream line, with the response status) and returns the bytes to send; `content_type(status)` is the header.
    A status other than 200 is an error body (BaseWriter.writeError): `{"error": {...}}` plus a newline."""

    stream = False

    def content_type(self, status):
        return CT_SSE if status == 200 and self.stream else CT_JSON

    def write(self, status, obj):
        if status != 200:
            return go_json(new_error(status, _error_message(obj)), newline=True)
        return self.response(obj)

    def response(self, obj):
        raise NotImplementedError


def new_id(prefix):
    """fmt.Sprintf("<prefix>-%d", rand.Intn(999)): chatcmpl-N / cmpl-N with 0 <= N < 999."""
    return "%s-%d" % (prefix, random.randrange(999))  # noqa: S311 - an id, not a secret


class ChatWriter(Writer):
    """middleware/openai.go ChatWriter with openai.go ToChatCompletion, ToStreamChunks, FinishChunk, ToUsage."""

    def __init__(self, stream, include_usage=False, id_=None):
        self.stream = stream
        self.include_usage = include_usage
        self.id = id_ or new_id("chatcmpl")
        self.created = None  # one `created` for every chunk of a stream: the first response's
        self.first_sent = False
        self.tool_call_sent = False

    def response(self, r):
        if not self.stream:
            return go_json(self.completion(r), newline=True)
        out = bytearray()
        if self.created is None:
            self.created = unix_seconds(r.get("created_at"))
        msg = r.get("message") or {}
        done = bool(r.get("done"))
        trailer = (
            done
            and self.first_sent
            and not msg.get("content")
            and not msg.get("thinking")
            and not msg.get("tool_calls")
            and not r.get("logprobs")
        )
        if not trailer:
            for chunk in self.chunks(r, include_role=not self.first_sent):
                if chunk["choices"][0]["delta"].get("tool_calls"):
                    self.tool_call_sent = True
                out += sse(chunk)
            self.first_sent = True
        if done:
            reason = r.get("done_reason") or "stop"
            if reason == "stop" and self.tool_call_sent:
                reason = "tool_calls"
            finish = self._chunk(r, [{"index": 0, "delta": {}, "finish_reason": reason}])
            out += sse(finish)
            if self.include_usage:
                out += sse(dict(finish, choices=[], usage=_usage(r)))
            out += SSE_DONE
        return bytes(out)

    def _chunk(self, r, choices):
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": r.get("model", ""),
            "system_fingerprint": "fp_ollama",
            "choices": choices,
        }

    def chunks(self, r, include_role):
        """openai.go ToStreamChunks: one chunk, or two when thinking comes with content or tool calls."""
        msg = r.get("message") or {}
        thinking = msg.get("thinking") or ""
        calls = _to_tool_calls(msg.get("tool_calls"))

        def delta(role, content, reasoning, tool_calls):
            d = {}
            if role:
                d["role"] = "assistant"
            if content is not None:
                d["content"] = content
            if reasoning:
                d["reasoning"] = reasoning
            if tool_calls:
                d["tool_calls"] = tool_calls
            choice = {"index": 0, "delta": d, "finish_reason": None}
            return choice

        content = msg.get("content") or ""
        logprobs = {"content": r["logprobs"]} if r.get("logprobs") else None
        if thinking and (content or calls):
            first = delta(include_role, None, thinking, None)
            if logprobs:
                first["logprobs"] = logprobs
            return [self._chunk(r, [first]), self._chunk(r, [delta(False, content, "", calls)])]
        choice = delta(include_role, content, thinking, calls)
        if logprobs:
            choice["logprobs"] = logprobs
        return [self._chunk(r, [choice])]

    def completion(self, r):
        """openai.go ToChatCompletion."""
        msg = r.get("message") or {}
        calls = _to_tool_calls(msg.get("tool_calls"))
        message = {"role": msg.get("role", ""), "content": msg.get("content", "")}
        if msg.get("thinking"):
            message["reasoning"] = msg["thinking"]
        if calls:
            message["tool_calls"] = calls
        reason = r.get("done_reason") or ""
        if reason == "stop" and calls:
            reason = "tool_calls"
        choice = {"index": 0, "message": message, "finish_reason": _finish_reason(reason)}
        if r.get("logprobs"):
            choice["logprobs"] = {"content": r["logprobs"]}
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": unix_seconds(r.get("created_at")),
            "model": r.get("model", ""),
            "system_fingerprint": "fp_ollama",
            "choices": [choice],
            "usage": _usage(r),
        }


class CompleteWriter(Writer):
    """middleware/openai.go CompleteWriter with openai.go ToCompletion, ToCompleteChunk, ToUsageGenerate. Each
    native line is one chunk (the final one carries finish_reason); with include_usage every chunk has zero usage
    and one more chunk with no choices carries the real usage."""

    def __init__(self, stream, include_usage=False, id_=None):
        self.stream = stream
        self.include_usage = include_usage
        self.id = id_ or new_id("cmpl")

    def _choices(self, r):
        return [{"text": r.get("response", ""), "index": 0, "finish_reason": _finish_reason(r.get("done_reason"))}]

    def response(self, r):
        if not self.stream:
            return go_json(self.completion(r), newline=True)
        # ToCompleteChunk stamps time.Now(); the native line's created_at is the emulated "now" it was written at
        chunk = {
            "id": self.id,
            "object": "text_completion",
            "created": unix_seconds(r.get("created_at")),
            "choices": self._choices(r),
            "model": r.get("model", ""),
            "system_fingerprint": "fp_ollama",
        }
        if self.include_usage:
            chunk["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        out = sse(chunk)
        if r.get("done"):
            if self.include_usage:
                out += sse(dict(chunk, choices=[], usage=_usage(r)))
            out += SSE_DONE
        return out

    def completion(self, r):
        """openai.go ToCompletion."""
        return {
            "id": self.id,
            "object": "text_completion",
            "created": unix_seconds(r.get("created_at")),
            "model": r.get("model", ""),
            "system_fingerprint": "fp_ollama",
            "choices": self._choices(r),
            "usage": _usage(r),
        }


def namespace(model_id):
    """types/model ParseName(id).Namespace: `library` for a bare name, else the part before the model."""
    base = model_id.split("@", 1)[0]
    parts = base.split("/")
    if len(parts) == 1:
        return "library"
    return parts[-2]


class ListWriter(Writer):
    """middleware/openai.go ListWriter, openai.go ToListCompletion: `data` is null when there are no models."""

    def response(self, r):
        data = [
            {
                "id": m.get("model") or m.get("name", ""),
                "object": "model",
                "created": unix_seconds(m["modified_at"]),
                "owned_by": namespace(m.get("model") or m.get("name", "")),
            }
            for m in r.get("models") or []
        ]
        return go_json({"object": "list", "data": data or None}, newline=True)


class RetrieveWriter(Writer):
    """middleware/openai.go RetrieveWriter, openai.go ToModel: the id is the path parameter as given."""

    def __init__(self, model):
        self.model = model

    def response(self, r):
        obj = {
            "id": self.model,
            "object": "model",
            "created": unix_seconds(r.get("modified_at")),
            "owned_by": namespace(self.model),
        }
        return go_json(obj, newline=True)


def floats_to_base64(vec):
    """openai.go floatsToBase64: little-endian float32s, standard base64."""
    return base64.b64encode(struct.pack("<%df" % len(vec), *vec)).decode()


class EmbedWriter(Writer):
    """middleware/openai.go EmbedWriter, openai.go ToEmbeddingList (model = the request's model string)."""

    def __init__(self, model, encoding_format=""):
        self.model = model
        self.b64 = (encoding_format or "").lower() == "base64"

    def response(self, r):
        if r.get("embeddings") is None:
            empty = {"object": "", "data": None, "model": "", "usage": {"prompt_tokens": 0, "total_tokens": 0}}
            return go_json(empty, newline=True)
        data = [
            {"object": "embedding", "embedding": floats_to_base64(e) if self.b64 else e, "index": i}
            for i, e in enumerate(r["embeddings"])
        ]
        n = r.get("prompt_eval_count") or 0
        obj = {"object": "list", "data": data or None, "model": self.model}
        obj["usage"] = {"prompt_tokens": n, "total_tokens": n}
        return go_json(obj, newline=True)


# ---------------------------------------------------------------------------------------------------------------
# The middleware step as one call (server/routes.go GenerateRoutes, the /v1 lines)
# ---------------------------------------------------------------------------------------------------------------

ROUTES = {
    "/v1/chat/completions": "POST",
    "/v1/completions": "POST",
    "/v1/embeddings": "POST",
    "/v1/models": "GET",
}
MODEL_PREFIX = "/v1/models/"  # GET /v1/models/:model (one path segment)


def methods(path):
    """The methods of a /v1 route (routes.go GenerateRoutes), or None for a path that is not one. The `:model`
    parameter is one non-empty segment of the decoded path (gin matches URL.Path), so `a%2Fb` is no match."""
    if path in ROUTES:
        return (ROUTES[path],)
    if path.startswith(MODEL_PREFIX):
        model = unquote(path[len(MODEL_PREFIX) :])
        if model and "/" not in model:
            return ("GET",)
    return None


class Translation:
    """What the HTTP module needs: the native path to run, its request body, and the writer for its output."""

    def __init__(self, native_path, body, writer):
        self.native_path = native_path
        self.body = body
        self.writer = writer


def translate(path, raw):
    """The /v1 middleware for `path` (already routed, method checked) and request body `raw`. Returns a Translation,
    or (status, content type, body) when the middleware itself answers (a 400 before any native handler runs)."""
    if path == "/v1/models":
        return Translation("/api/tags", b"", ListWriter())
    if path.startswith(MODEL_PREFIX):
        model = unquote(path[len(MODEL_PREFIX) :])
        return Translation("/api/show", go_json({"name": model}), RetrieveWriter(model))
    schema, convert, native_path = {
        "/v1/chat/completions": (CHAT_REQUEST, from_chat_request, "/api/chat"),
        "/v1/completions": (COMPLETION_REQUEST, from_complete_request, "/api/generate"),
        "/v1/embeddings": (EMBED_REQUEST, from_embed_request, "/api/embed"),
    }[path]
    try:
        req = bind(raw, schema)
        native = convert(req)
    except BindError as e:
        return abort_response(400, e.message)
    except V1Error as e:
        return abort_response(e.status, e.message)
    include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
    stream = bool(req.get("stream", False))
    if path == "/v1/chat/completions":
        writer = ChatWriter(stream, include_usage)
    elif path == "/v1/completions":
        writer = CompleteWriter(stream, include_usage)
    else:
        writer = EmbedWriter(req.get("model", ""), req.get("encoding_format", ""))
    return Translation(native_path, go_json(native), writer)
