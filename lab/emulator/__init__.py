"""A stdlib-only stand-in for `ollama serve` (and a few `ollama` CLI commands) for the keepwarm lab and tests.

It follows /work/shared/ollama-behaviour.md (written from upstream ollama/ollama source, HEAD after v0.33.0-rc2);
each rule names the upstream file/function it follows. Runs on Python 3.9+ with nothing outside the standard
library. From a checkout: `python -m lab.emulator serve` (the server), `python -m lab.emulator ps` (`ollama ps`).
The lab installs it as ONE executable, /usr/local/bin/ollama: a zipapp built by lab/emulator/build.py (reproducible,
stdlib only) and run with the host's system python3.

Modules:
    gotime.py     Go time/number rules: RFC 3339 with nanoseconds, time.ParseDuration, strconv Parse(U)Int
    logs.py       non-blocking log lines
    env.py        environment variables (envconfig/config.go and the emulator-only ones below), VERSION
    catalog.py    the model catalogue and model-name parsing (types/model)
    clock.py      the emulated clock (OLLAMA_EMULATOR_TIME_SCALE)
    options.py    request options (api/types.go Options.FromMap), runner options compared by needsReload
    scheduler.py  server/sched.go: runners, keep_alive, reload, eviction, /api/ps
    jsonbind.py   gin ShouldBindJSON over Go encoding/json (error texts), keep_alive decoding
    api.py        server/routes.go: the route table, Host/CORS checks, one handler per endpoint
    server.py     `ollama serve` (threaded HTTP server, signals, shutdown)
    cli.py        the `ollama` CLI (cmd/cmd.go) and its tables (format/)
    build.py      builds the /usr/local/bin/ollama zipapp

Commands (like the real binary, all but `serve` talk HTTP to OLLAMA_HOST):
    ollama serve                 run the API server
    ollama ps [PREFIX]           NAME / ID / SIZE / PROCESSOR / CONTEXT / UNTIL table (cmd/cmd.go ListRunningHandler)
    ollama list                  NAME / ID / SIZE / MODIFIED table (cmd/cmd.go ListHandler)
    ollama stop MODEL            unload (keep_alive 0, empty prompt) (cmd/cmd.go StopHandler)
    ollama run MODEL [PROMPT]    load (empty prompt) or generate; `--keepalive DURATION`
    ollama pull MODEL            simulated pull
    ollama --version | -v

Environment read by `serve` (upstream parse rules, envconfig/config.go):
    OLLAMA_HOST                 bind address (config.go Host(): scheme default ports, bad port -> 11434)
    OLLAMA_KEEP_ALIVE           default keep-alive (KeepAlive(): ParseDuration, else ParseInt seconds, negative ->
                                forever; anything unparseable -> 5m SILENTLY, no log line, like upstream)
    OLLAMA_MAX_LOADED_MODELS    global cap (Uint; invalid -> logged, auto = 3 x max(GPUs,1) = 3, one emulated GPU)
    OLLAMA_NUM_PARALLEL         slots per runner (Uint; invalid -> warning, 1; 0 -> 1); KV cache = num_ctx x slots;
                                a generation or embedding holds a slot, extra ones wait in the runner, load-only
                                requests take none; embedding-only models and the families in sched.go load get 1
    OLLAMA_CONTEXT_LENGTH       default num_ctx (Uint; 0/invalid -> VRAM tier: >=47 GiB 262144, >=23 GiB 32768,
                                else 4096), always clamped to the model's training context
    OLLAMA_MAX_QUEUE            pending-request queue (Uint, default 512); beyond it 503
    OLLAMA_MODELS               accepted and reported in the startup log only (models come from the catalogue)
    OLLAMA_ORIGINS              extra CORS origins (routes.go GenerateRoutes); a request with a non-allowed Origin
                                gets 403 with an empty body
Emulator-only variables (never read by real Ollama):
    OLLAMA_EMULATOR_TIME_SCALE  default 1. Emulated time runs this many times faster than real time. EVERY duration
                                is emulated: keep-alive expiry, load time, token time; every timestamp the API returns
                                (created_at, expires_at, /emulator/events times) and every *_duration metric is
                                emulated. The emulated clock starts at the real wall clock when the server starts.
    OLLAMA_EMULATOR_CATALOG     path of a JSON file {"models": [...]} replacing the default catalogue (fields as in
                                catalog.py DEFAULT_CATALOG; only `name` is required, the rest have defaults; `from`:
                                a model created FROM another entry, sharing its blob and so its runner; `adapters`,
                                `projectors`: blob digests of ADAPTER/projector layers, compared by needsReload)
    OLLAMA_EMULATOR_VRAM        bytes of the one emulated GPU (default 17179869184 = 16 GiB; 0 = CPU-only host)
    OLLAMA_EMULATOR_LOAD_BPS    cold-load speed in bytes per emulated second (default 1e9: llama3.2 ~2 s)
    OLLAMA_EMULATOR_TOKEN_RATE  generated tokens per emulated second (default 100; a warm load-only request takes ~1 ms)
    OLLAMA_EMULATOR_MAX_BODY    request body limit in bytes (default 16777216); larger bodies get 413
    OLLAMA_EMULATOR_RUNNER      `llama` (default): GGUF models on llama-server, as upstream runs them on Linux: a
                                loading model is NOT in /api/ps and ps answers at once (llm/llama_server.go Load
                                waits before sched.go load puts the runner in s.loaded); keep_alive 0 while it loads
                                changes nothing. `mlx`: imitates the macOS MLX runner (x/mlxrunner/client.go Load
                                returns early): the loading runner is in s.loaded with refMu held, so ps waits for
                                the load, and keep_alive 0 unloads it once its loading request ends; needsReload
                                does not compare runner options. (Replaces OLLAMA_EMULATOR_PS_BLOCKS.)
    OLLAMA_EMULATOR_VRAM_RECOVERY  emulated seconds an evicted or reloaded runner's GPU memory takes to show free,
                                which the load that needed the room waits for (sched.go waitForVRAMRecovery: 250 ms
                                polls, at most 5 s); default 0.25 (the first poll: emulated memory frees at once);
                                CPU runners (size_vram 0) never wait
    OLLAMA_EMULATOR_EVENTS_FILE optional path; every scheduler event is also appended there as one JSON line
    OLLAMA_EMULATOR_VERSION     version reported by /api/version (default 0.33.0)

Emulator-only HTTP endpoints: GET /emulator/events -> {"events": [...]} (load, reload, unload, eviction, and
`load_aborted` with reason `client_disconnected` when a cold load is aborted; aborted loads are NOT cold starts);
DELETE /emulator/events clears it. Every response (any route, any status, /v1 included) carries the header
`X-Ollama-Emulator-Now`: the emulated clock at the time of the response, RFC 3339 with nanoseconds in the server's
zone like `expires_at`. A client comparing `expires_at` with "now" must use this header, not its own clock (with
OLLAMA_EMULATOR_TIME_SCALE > 1 the two drift apart at once); the CLI's `ps`/`list` do, and
tests/emulator/test_emu_http_rules.py::test_emulated_now_header checks it.

OpenAI-compatible API (openai.py): POST /v1/chat/completions, /v1/completions, /v1/embeddings, GET /v1/models and
/v1/models/{model} on the same port (client base URL `http://HOST:PORT/v1`, any API key); see openai.py for what
reaches the scheduler (no keep_alive, no num_ctx) and what is not imitated.

Not imitated (deliberate, see the behaviour doc for the real rules), and why:
  - one emulated GPU, with exact memory accounting: no OOM, so no OOM retry (`evictAllAndWait`), no automatic
    num_ctx/num_batch step-down on OOM, no runtime-OOM expiry, no automatic generation batch, no host-memory
    pressure mmap rule (only the CPU rule of `applyLlamaServerMmapDefaults`), and GPU placement is one device;
  - OLLAMA_LOAD_TIMEOUT is not emulated (emulated loads never stall) and Ping never fails (runners never crash), so
    needsReload never reloads a dead runner;
  - the VRAM-recovery wait delays only the load that waited for the unload (processPending); upstream's
    processCompleted is also blocked meanwhile, which delays other requests' bookkeeping by up to the same time;
  - vision models' num_ctx floor of 2048 and the multimodal projector offload rules (no vision models in the
    default catalogue);
  - the Host-header check (allowedHostsMiddleware) is implemented for loopback binds; the CORS check is implemented
    for the Origin header only (no preflight answers);
  - /api/ps entries whose expires_at fall in the same second keep load order (Go's map order is random);
  - bodies over OLLAMA_EMULATOR_MAX_BODY get 413 (gin has no limit);
  - /api/push, /api/create, /api/copy and /api/blobs answer 501 (routes exist so the method checks give 405 like
    upstream); /v1/responses, /v1/messages and /v1/audio/transcriptions are not served (404);
  - `:cloud` model names are looked up like any other tag (there is no cloud to proxy to).

Resident memory: peak RSS = VmHWM from /proc/PID/status of the `serve` process (Python 3.11.7, x86_64), read after
three loads and 200 simultaneous /api/ps connections (tests/emulator/test_emu_robust.py::
test_200_concurrent_ps_and_memory, which asserts < 40 MB): 27.5 MB (27516 kB) measured on 2026-11-26.
"""
