"""Unit tests of the emulator's OpenAI-compatible layer (lab/emulator/openai.py): OpenAI request -> native request,
native output -> OpenAI JSON / SSE. Each test names the upstream file and function whose rule it checks
(ollama/ollama openai/openai.go, middleware/openai.go; ollama-behaviour.md §7 "OpenAI- and Anthropic-compatible
routes"). The end-to-end tests against a running emulator are in test_emu_openai.py."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from lab.emulator import openai as v1

T0 = "2026-11-30T10:00:00.5Z"  # Unix 1796032800
T0_UNIX = 1796032800
T1 = "2026-11-30T10:00:03.25Z"


def translate(path: str, body) -> v1.Translation:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    t = v1.translate(path, raw)
    assert isinstance(t, v1.Translation), t
    return t


def native(path: str, body) -> dict:
    return json.loads(translate(path, body).body)


def abort(path: str, body) -> tuple[int, str, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, ctype, out = v1.translate(path, raw)
    assert out.endswith(b"}"), "c.AbortWithStatusJSON writes no trailing newline"
    return status, ctype, json.loads(out)


def events(data: bytes) -> list:
    """Split SSE bytes into decoded `data:` payloads; asserts the framing is `data: ...\\n\\n` throughout."""
    assert data.endswith(b"\n\n")
    out = []
    for block in data[:-2].split(b"\n\n"):
        assert block.startswith(b"data: "), block
        payload = block[len(b"data: ") :]
        out.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return out


CHAT = "/v1/chat/completions"
USER_HI = [{"role": "user", "content": "hi"}]


# ---- requests ------------------------------------------------------------------------------------------------


def test_chat_request_drops_keep_alive_and_never_sets_num_ctx():
    """openai.go ChatCompletionRequest has no keep_alive field and FromChatRequest builds options only from stop,
    max_tokens, temperature (default 1.0), seed, frequency/presence_penalty and top_p (default 1.0): a /v1 body's
    keep_alive and num_ctx never reach the native ChatHandler (nil keep_alive; automatic num_ctx)."""
    body = {
        "model": "llama3.2",
        "messages": USER_HI,
        "keep_alive": -1,
        "options": {"num_ctx": 8192},
        "num_ctx": 8192,
    }
    req = native(CHAT, body)
    assert req == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hi"}],
        "options": {"temperature": 1.0, "top_p": 1.0},
        "stream": False,
    }


def test_chat_request_option_mapping():
    """openai.go FromChatRequest: stop string -> [stop], non-strings in a stop list are skipped, max_tokens ->
    num_predict, seed/penalties copied, temperature/top_p as given; response_format json_object -> format "json",
    json_schema -> its schema; reasoning_effort "minimal" -> think "low" (thinkFromReasoningEffort)."""
    body = {
        "model": "m",
        "messages": USER_HI,
        "stream": True,
        "stop": ["a", 3, "b"],
        "max_tokens": 7,
        "seed": 42,
        "temperature": 0,
        "top_p": 0.5,
        "frequency_penalty": 0.25,
        "presence_penalty": -1,
        "response_format": {"type": " JSON_Object "},
        "reasoning_effort": "minimal",
    }
    req = native(CHAT, body)
    assert req["options"] == {
        "stop": ["a", "b"],
        "num_predict": 7,
        "temperature": 0.0,
        "seed": 42,
        "frequency_penalty": 0.25,
        "presence_penalty": -1.0,
        "top_p": 0.5,
    }
    assert req["stream"] is True and req["format"] == "json" and req["think"] == "low"
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    req = native(CHAT, {"model": "m", "messages": USER_HI, "stop": "x", "response_format": {
        "type": "json_schema", "json_schema": {"schema": schema}}, "reasoning": {"effort": "xhigh"}})  # fmt: skip
    assert req["options"]["stop"] == ["x"] and req["format"] == schema and req["think"] == "max"


@pytest.mark.parametrize(
    "body",
    [{"model": "m"}, {"model": "m", "messages": []}, {"model": "m", "messages": None}, b"null", b"{}"],
)
def test_chat_without_messages_is_400(body):
    """middleware/openai.go ChatMiddleware: len(req.Messages) == 0 -> 400 `[] is too short - 'messages'`, wrapped
    by openai.go NewError (type invalid_request_error, param and code null), sent by c.AbortWithStatusJSON
    (application/json; charset=utf-8)."""
    assert abort(CHAT, body) == (
        400,
        "application/json; charset=utf-8",
        {
            "error": {
                "message": "[] is too short - 'messages'",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
    )


@pytest.mark.parametrize(
    ("path", "raw", "message"),
    [
        (CHAT, b"", "EOF"),
        (CHAT, b'{"model":', "unexpected EOF"),
        (CHAT, b"[]", "json: cannot unmarshal array into Go value of type openai.ChatCompletionRequest"),
        (
            CHAT,
            b'{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}',
            "json: cannot unmarshal string into Go struct field ChatCompletionRequest.temperature of type float64",
        ),
        (
            CHAT,
            b'{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1.5}',
            "json: cannot unmarshal number 1.5 into Go struct field ChatCompletionRequest.max_tokens of type int",
        ),
        (
            CHAT,
            b'{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":1}}',
            "json: cannot unmarshal number into Go struct field StreamOptions.stream_options.include_usage of type "
            "bool",
        ),
        (
            CHAT,
            b'{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":true}',
            "json: cannot unmarshal bool into Go struct field ChatCompletionRequest.stream_options of type "
            "openai.StreamOptions",
        ),
        (
            "/v1/completions",
            b'{"model":"m","prompt":["a"]}',
            "json: cannot unmarshal array into Go struct field CompletionRequest.prompt of type string",
        ),
        (
            "/v1/completions",
            b'{"model":"m","temperature":"x"}',
            "json: cannot unmarshal string into Go struct field CompletionRequest.temperature of type float32",
        ),
    ],
)
def test_bind_errors_are_400_with_go_text(path, raw, message):
    """middleware/openai.go ChatMiddleware/CompletionsMiddleware: a ShouldBindJSON error is 400 with err.Error()
    (Go encoding/json text; an empty body is plain `EOF`, not the native handlers' `missing request body`)."""
    status, _, body = abort(path, raw)
    assert status == 400 and body["error"]["message"] == message
    assert body["error"]["type"] == "invalid_request_error"


def test_chat_message_content_parts_images_and_tool_calls():
    """openai.go FromChatRequest: a content list becomes one native message per part (text; image_url data URI ->
    images, decodeImageURL); tool_calls go on the last message of that list, arguments decoded from their JSON
    text (FromCompletionToolCall); a tool message without a name takes it from the matching tool call id
    (nameFromToolCallID); content may be absent when tool_calls is present."""
    png = base64.b64encode(b"\x89PNG fake").decode()
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    messages = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + png}},
            ],
        },
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12C"},
    ]
    req = native(CHAT, {"model": "m", "messages": messages})
    assert req["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is this?"},
        {"role": "user", "content": "", "images": [png]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "content": "12C", "tool_name": "get_weather", "tool_call_id": "call_1"},
    ]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"role": "user"}, "invalid message content type: <nil>"),
        ({"role": "user", "content": 5}, "invalid message content type: float64"),
        ({"role": "user", "content": {"a": 1}}, "invalid message content type: map[string]interface {}"),
        ({"role": "user", "content": ["x"]}, "invalid message format"),
        ({"role": "user", "content": [{"type": "video"}]}, "invalid message format"),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": "https://example.invalid/a.png"}]},
            "image URLs are not currently supported, please use base64 encoded data instead",
        ),
        ({"role": "user", "content": [{"type": "image_url", "image_url": "data:image/gif;base64,AA=="}]}, None),
        (
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{"}}]},
            "invalid tool call arguments",
        ),
    ],
)
def test_chat_message_errors(message, error):
    """openai.go FromChatRequest / decodeImageURL / FromCompletionToolCall error texts, all 400 from
    ChatMiddleware (an unsupported image type is `invalid image input`)."""
    status, _, body = abort(CHAT, {"model": "m", "messages": [message]})
    assert status == 400 and body["error"]["message"] == (error or "invalid image input")


def test_reasoning_effort_invalid():
    """openai.go thinkFromReasoningEffort: an unknown effort is a 400 listing the accepted values."""
    status, _, body = abort(CHAT, {"model": "m", "messages": USER_HI, "reasoning_effort": "huge"})
    assert status == 400
    assert body["error"]["message"] == (
        'invalid reasoning value: "huge" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or '
        '"none")'
    )


def test_completion_request_mapping():
    """openai.go FromCompleteRequest: penalties always set (float32 zero values), top_p 0 means 1.0, temperature
    default 1.0, logprobs N > 0 -> logprobs + top_logprobs N; no keep_alive, no num_ctx; a non-string stop element
    is a 400 `invalid type for 'stop' field: <Go type>`."""
    req = native("/v1/completions", {"model": "m", "prompt": "p", "keep_alive": "1h", "logprobs": 3, "suffix": "s"})
    assert req == {
        "model": "m",
        "prompt": "p",
        "options": {"temperature": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0, "top_p": 1.0},
        "stream": False,
        "suffix": "s",
        "logprobs": True,
        "top_logprobs": 3,
    }
    assert native("/v1/completions", {"model": "m", "stop": "x", "top_p": 0.9})["options"]["top_p"] == 0.9
    status, _, body = abort("/v1/completions", {"model": "m", "stop": ["a", 1]})
    assert (status, body["error"]["message"]) == (400, "invalid type for 'stop' field: float64")


def test_completion_without_prompt_is_the_native_load_request():
    """openai.go FromCompleteRequest copies the prompt as is: no prompt -> the native empty-prompt (load) request,
    and with no keep_alive it can never be the unload path (routes.go GenerateHandler)."""
    req = native("/v1/completions", {"model": "m", "keep_alive": 0})
    assert req["prompt"] == "" and "keep_alive" not in req


def test_embeddings_request_and_validation():
    """middleware/openai.go EmbeddingsMiddleware: encoding_format must be float or base64 (case-insensitive);
    input "" becomes [""]; a missing/null input or [] is 400 `invalid input`; the native request has model,
    input and dimensions only (no keep_alive)."""
    assert native("/v1/embeddings", {"model": "e", "input": "", "keep_alive": -1}) == {"model": "e", "input": [""]}
    assert (
        native("/v1/embeddings", {"model": "e", "input": ["a", "b"], "dimensions": 4, "encoding_format": "BASE64"})[
            "dimensions"
        ]
        == 4
    )
    for body in ({"model": "e"}, {"model": "e", "input": None}, {"model": "e", "input": []}):
        assert abort("/v1/embeddings", body)[:2] == (400, "application/json; charset=utf-8")
        assert abort("/v1/embeddings", body)[2]["error"]["message"] == "invalid input"
    status, _, body = abort("/v1/embeddings", {"model": "e", "input": "x", "encoding_format": "int8"})
    assert (status, body["error"]["message"]) == (
        400,
        "Invalid value for 'encoding_format' = int8. Supported values: ['float', 'base64'].",
    )


def test_translate_routes():
    """server/routes.go GenerateRoutes: /v1/chat/completions -> ChatHandler, /v1/completions -> GenerateHandler,
    /v1/embeddings -> EmbedHandler, /v1/models -> ListHandler, /v1/models/:model -> ShowHandler with
    {"name": model} (RetrieveMiddleware)."""
    assert translate(CHAT, {"model": "m", "messages": USER_HI}).native_path == "/api/chat"
    assert translate("/v1/completions", {"model": "m"}).native_path == "/api/generate"
    assert translate("/v1/embeddings", {"model": "m", "input": "x"}).native_path == "/api/embed"
    assert translate("/v1/models", b"").native_path == "/api/tags"
    t = translate("/v1/models/llama3.2:latest", b"")
    assert (t.native_path, json.loads(t.body)) == ("/api/show", {"name": "llama3.2:latest"})


# ---- responses -----------------------------------------------------------------------------------------------


def chat_line(content, created=T0, done=False, **extra):
    return {"model": "llama3.2", "created_at": created, "message": {"role": "assistant", "content": content},
            "done": done, **extra}  # fmt: skip


FINAL = {"done_reason": "stop", "prompt_eval_count": 11, "eval_count": 3, "total_duration": 5}


def test_chat_completion_non_streaming():
    """openai.go ToChatCompletion: object chat.completion, created = created_at as Unix seconds, system_fingerprint
    fp_ollama, one choice with the message and finish_reason = done_reason, usage from prompt_eval_count and
    eval_count; the writer sends it with json.Encoder (trailing newline, application/json)."""
    w = v1.ChatWriter(stream=False, id_="chatcmpl-7")
    out = w.write(200, chat_line("The sky", done=True, **FINAL))
    assert out.endswith(b"}\n") and w.content_type(200) == "application/json"
    assert json.loads(out) == {
        "id": "chatcmpl-7",
        "object": "chat.completion",
        "created": T0_UNIX,
        "model": "llama3.2",
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "The sky"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }


def test_chat_stream_chunks_finish_usage_and_done():
    """middleware/openai.go ChatWriter.writeResponse: SSE `data: {json}\\n\\n`; the first chunk's delta has role
    assistant; every chunk has the first response's `created`; the content-less final native line is not a content
    chunk but a finish chunk with an empty delta and finish_reason; with stream_options.include_usage one more
    chunk with no choices carries usage; then `data: [DONE]` (openai.go ToStreamChunks, FinishChunk, ToUsage)."""
    w = v1.ChatWriter(stream=True, include_usage=True, id_="chatcmpl-3")
    assert w.content_type(200) == "text/event-stream"
    raw = w.write(200, chat_line("The")) + w.write(200, chat_line(" sky", T1))
    raw += w.write(200, chat_line("", T1, done=True, **FINAL))
    chunks = events(raw)
    assert chunks[-1] == "[DONE]"
    head = {"id": "chatcmpl-3", "object": "chat.completion.chunk", "created": T0_UNIX, "model": "llama3.2",
            "system_fingerprint": "fp_ollama"}  # fmt: skip
    assert chunks[:-1] == [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "The"}, "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {"content": " sky"}, "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**head, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}},
    ]


def test_chat_stream_without_usage_and_length_reason():
    """middleware/openai.go ChatWriter: without include_usage no chunk has a usage key; FinishChunk passes
    done_reason through (length), and a done line that still has content gets its content chunk first."""
    w = v1.ChatWriter(stream=True)
    chunks = events(w.write(200, chat_line("The")) + w.write(200, chat_line(" end", done=True, done_reason="length")))
    assert [c if c == "[DONE]" else c["choices"] for c in chunks] == [
        [{"index": 0, "delta": {"role": "assistant", "content": "The"}, "finish_reason": None}],
        [{"index": 0, "delta": {"content": " end"}, "finish_reason": None}],
        [{"index": 0, "delta": {}, "finish_reason": "length"}],
        "[DONE]",
    ]
    assert all("usage" not in c for c in chunks[:-1])
    assert w.id.startswith("chatcmpl-") and 0 <= int(w.id.split("-")[1]) < 999


def test_chat_stream_splits_thinking_and_maps_tool_calls():
    """openai.go ToStreamChunks: thinking with content is split into a reasoning chunk and a content chunk;
    ToToolCalls re-encodes arguments as JSON text; FinishChunk says tool_calls instead of stop once a tool call
    was streamed."""
    w = v1.ChatWriter(stream=True, id_="chatcmpl-1")
    line = chat_line("Hi", thinking=None)
    line["message"]["thinking"] = "hmm"
    call = {"id": "c1", "function": {"index": 0, "name": "f", "arguments": {"x": 1}}}
    tool = chat_line("")
    tool["message"]["tool_calls"] = [call]
    chunks = events(w.write(200, line) + w.write(200, tool) + w.write(200, chat_line("", done=True, **FINAL)))
    deltas = [c["choices"][0]["delta"] if c != "[DONE]" else c for c in chunks]
    assert deltas[:2] == [{"role": "assistant", "reasoning": "hmm"}, {"content": "Hi"}]
    assert deltas[2]["tool_calls"] == [
        {"id": "c1", "index": 0, "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}
    ]
    assert chunks[3]["choices"][0]["finish_reason"] == "tool_calls"


def test_native_errors_become_openai_errors():
    """middleware/openai.go BaseWriter.writeError: the native `{"error": text}` with its status becomes
    `{"error": {"message", "type", "param": null, "code": null}}` + newline, application/json; NewError's type is
    invalid_request_error for 400, not_found_error for 404, api_error otherwise."""
    for status, etype in ((400, "invalid_request_error"), (404, "not_found_error"), (500, "api_error"),
                          (503, "api_error")):  # fmt: skip
        for w in (v1.ChatWriter(stream=True), v1.CompleteWriter(False), v1.EmbedWriter("m"), v1.ListWriter()):
            out = w.write(status, {"error": "model 'x' not found"})
            assert w.content_type(status) == "application/json" and out.endswith(b"}\n")
            assert json.loads(out) == {
                "error": {"message": "model 'x' not found", "type": etype, "param": None, "code": None}
            }


def gen_line(text, created=T0, done=False, **extra):
    return {"model": "llama3.2", "created_at": created, "response": text, "done": done, **extra}


def test_completion_non_streaming_and_load_reason():
    """openai.go ToCompletion: object text_completion, choices [{text, index, finish_reason}], usage; the native
    load-only answer (done_reason "load") passes through as finish_reason "load"."""
    w = v1.CompleteWriter(stream=False, id_="cmpl-5")
    assert json.loads(w.write(200, gen_line("The sky", done=True, **FINAL))) == {
        "id": "cmpl-5",
        "object": "text_completion",
        "created": T0_UNIX,
        "model": "llama3.2",
        "system_fingerprint": "fp_ollama",
        "choices": [{"text": "The sky", "index": 0, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }
    load = json.loads(w.write(200, gen_line("", done=True, done_reason="load")))
    assert load["choices"][0]["finish_reason"] == "load" and load["usage"]["total_tokens"] == 0


def test_completion_stream_usage_on_every_chunk():
    """middleware/openai.go CompleteWriter: one chunk per native line (ToCompleteChunk: id, object text_completion,
    created, choices, model, system_fingerprint); with include_usage each chunk carries zero usage and the last
    line adds a chunk with no choices and the real usage; then [DONE]."""
    w = v1.CompleteWriter(stream=True, include_usage=True, id_="cmpl-9")
    raw = w.write(200, gen_line("The")) + w.write(200, gen_line("", done=True, **FINAL))
    chunks = events(raw)
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert list(chunks[0]) == ["id", "object", "created", "choices", "model", "system_fingerprint", "usage"]
    assert chunks[0]["choices"] == [{"text": "The", "index": 0, "finish_reason": None}] and chunks[0]["usage"] == zero
    assert chunks[1]["choices"] == [{"text": "", "index": 0, "finish_reason": "stop"}] and chunks[1]["usage"] == zero
    assert chunks[2]["choices"] == [] and chunks[2]["usage"]["total_tokens"] == 14
    assert chunks[3] == "[DONE]" and len(chunks) == 4
    plain = events(v1.CompleteWriter(stream=True).write(200, gen_line("x", done=True, done_reason="stop")))
    assert "usage" not in plain[0] and plain[1] == "[DONE]"


def test_embedding_list_float_and_base64():
    """openai.go ToEmbeddingList: object list, data [{object embedding, embedding, index}], model = the request's
    model string, usage prompt_tokens = total_tokens = prompt_eval_count; base64 = little-endian float32 bytes
    (floatsToBase64)."""
    r = {"model": "all-minilm", "embeddings": [[0.5, -0.25], [1.0, 0.0]], "prompt_eval_count": 4}
    assert json.loads(v1.EmbedWriter("all-minilm:latest").write(200, r)) == {
        "object": "list",
        "data": [
            {"object": "embedding", "embedding": [0.5, -0.25], "index": 0},
            {"object": "embedding", "embedding": [1.0, 0.0], "index": 1},
        ],
        "model": "all-minilm:latest",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    b64 = json.loads(v1.EmbedWriter("e", "base64").write(200, r))["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(b64)) == (0.5, -0.25)


def test_model_list_and_retrieve():
    """openai.go ToListCompletion: id = model (else name), object model, created = modified_at Unix seconds,
    owned_by = ParseName(id).Namespace (library for bare names); `data` is null with no models. ToModel: the id is
    the path parameter as sent."""
    tags = {"models": [
        {"name": "llama3.2:latest", "model": "llama3.2:latest", "modified_at": T0},
        {"name": "acme/coder:7b", "model": "acme/coder:7b", "modified_at": "2026-11-30T11:00:00.5+01:00"},
    ]}  # fmt: skip
    assert json.loads(v1.ListWriter().write(200, tags)) == {
        "object": "list",
        "data": [
            {"id": "llama3.2:latest", "object": "model", "created": T0_UNIX, "owned_by": "library"},
            {"id": "acme/coder:7b", "object": "model", "created": T0_UNIX, "owned_by": "acme"},
        ],
    }
    assert json.loads(v1.ListWriter().write(200, {"models": []})) == {"object": "list", "data": None}
    show = {"modified_at": T0, "details": {}}
    assert json.loads(v1.RetrieveWriter("llama3.2").write(200, show)) == {
        "id": "llama3.2",
        "object": "model",
        "created": T0_UNIX,
        "owned_by": "library",
    }


def test_go_json_escapes_html():
    """Go encoding/json (json.Marshal / Encoder, HTML escaping on): <, > and & are written as \\u003c, \\u003e and
    \\u0026, non-ASCII as UTF-8."""
    assert v1.go_json({"a": "<b>&é"}) == '{"a":"\\u003cb\\u003e\\u0026é"}'.encode()


def test_streamed_error_line_after_output_is_an_empty_chunk():
    """middleware/openai.go ChatWriter.Write: once the status is 200, a native `{"error": ...}` stream line
    (routes.go streamResponse after output started) is unmarshalled as a ChatResponse: it becomes a chunk with
    empty content (and no model) and the error text is lost; no finish chunk, no [DONE] (it is not done)."""
    w = v1.ChatWriter(stream=True, id_="chatcmpl-2")
    first = events(w.write(200, chat_line("The")))
    out = events(w.write(200, {"error": "an error was encountered while running the model"}))
    empty = {"index": 0, "delta": {"content": ""}, "finish_reason": None}
    assert out == [{**first[0], "model": "", "choices": [empty]}]
