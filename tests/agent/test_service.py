"""Issue 13 items 1, 2, 4, 6 and 9 against a real emulator process: the agent as a service operators leave running.

Each test fails on the agent before issue 13 (no watchdog, a poll loop that waits for every load, retries of doomed
loads every beat, a state file that crashes the beat, tracebacks on signals).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from .conftest import ROOT, cold_loads, parse_log, run_subprocess

SCALE = "60"


def pinned(emu, name: str = "llama3.2:latest") -> bool:
    from heartbeat_agent import classify

    return any(m["name"] == name and classify(m["expires_at"]).state == "forever" for m in emu.ps())


def wait_for(predicate, timeout: float, step: float = 0.02) -> float:
    """Seconds until `predicate()` held; raises AssertionError after `timeout`."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s")
        time.sleep(step)
    return time.monotonic() - start


class Watch:
    """`python -m heartbeat_agent ... watch` in a real process; its stdout collected by a reader thread."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        full_env = dict(os.environ)
        full_env.pop("STATE_DIRECTORY", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "heartbeat_agent", *args, "watch"],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def has(self, *parts: str) -> bool:
        return any(all(p in line for p in parts) for line in list(self.lines))

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode, "".join(self.lines), err


# ---- 13.1 watch under systemd: sd_notify over $NOTIFY_SOCKET --------------------------------------------------------


def test_watch_speaks_sd_notify_ready_watchdog_stopping(emulator_factory, tmp_path):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE=SCALE)
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    watch = Watch("--url", emu.url, "--model", "llama3.2", "--poll", "0.2",
                  env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000"})  # fmt: skip
    try:
        messages = [sock.recv(4096).decode() for _ in range(3)]
        assert messages[0].startswith("READY=1\nSTATUS=")
        assert messages[1].startswith("WATCHDOG=1\nSTATUS=") and messages[2].startswith("WATCHDOG=1")
        code, out, err = watch.stop()
        tail = []
        sock.settimeout(2)
        while True:
            try:
                tail.append(sock.recv(4096).decode())
            except OSError:
                break
    finally:
        sock.close()
        if watch.proc.poll() is None:
            watch.stop(signal.SIGKILL)
    assert code == 0 and "Traceback" not in out + err
    assert any(m.startswith("STOPPING=1") for m in tail)
    log = parse_log(out)
    assert log[0]["action"] == "watch" and log[0]["watchdog"] == "3.000"
    assert log[-1] == {"action": "watch", "result": "stopped", "signal": "SIGTERM"}


# ---- 13.2 no stall: one cold load does not hold up the other models' repairs ---------------------------------------


def test_watch_repairs_while_another_model_loads(emulator_factory):
    """qwen2.5:7b takes ~6 s to load (slow disk); meanwhile a client sets llama3.2 to "5m": re-pinned within a poll."""
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="1", OLLAMA_EMULATOR_LOAD_BPS="8e8")
    emu.request("POST", "/api/generate", {"model": "llama3.2", "keep_alive": -1})  # ~2.5 s
    assert pinned(emu)
    watch = Watch("--url", emu.url, "--model", "llama3.2", "--model", "qwen2.5:7b", "--poll", "0.2")
    try:
        wait_for(lambda: watch.has("action=start", "model=qwen2.5:7b"), 10)
        emu.request("POST", "/api/generate", {"model": "llama3.2", "keep_alive": "5m"})
        wait_for(lambda: not pinned(emu), 2, 0.005)
        reaction = wait_for(lambda: pinned(emu), 3, 0.01)
        # still loading: the re-pin did not wait for it
        assert not watch.has("action=load", "model=qwen2.5:7b", "result=ok")
        wait_for(lambda: watch.has("action=load", "model=qwen2.5:7b", "result=ok"), 15, 0.1)
        assert pinned(emu, "qwen2.5:7b")
    finally:
        code, out, err = watch.stop()
    assert reaction < 1.5, reaction
    assert code == 0 and "Traceback" not in out + err
    loads = [e for e in cold_loads(emu.events()) if e["model"] == "qwen2.5:7b"]
    assert len(loads) == 1  # "absent" while loading was never taken for "absent, load again"


# ---- 13.4 backoff after a failed load --------------------------------------------------------------------------------


def test_failed_load_backs_off_instead_of_retrying_every_beat(emulator_factory, cli, tmp_path):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE=SCALE)
    args = ("--url", emu.url, "--model", "no-such-model:7b", "--metrics-path", str(tmp_path / "k.prom"))
    first = cli(*args, "once")
    assert first.code == 1 and first.beat["posts"] == "1"
    (failed,) = first.actions("load")
    assert failed["error"] == "not_found" and float(failed["retry_in"]) == 30
    for _ in range(3):
        again = cli(*args, "once")
        assert again.code == 1 and again.beat["posts"] == "0"
        (skip,) = again.actions("skip")
        assert skip["reason"] == "backoff" and "next try in" in skip["message"]


# ---- 13.6 robust state -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        '{"version": 1, "models": {"llama3.2:latest": {"repairs": []}}}',
        '{"version": 1, "models": []}',
        "[1, 2]",
        '{"version": 99, "models": {}}',
        '{"version": 1, "models": {"llama3.2:latest": {"cold_loads": "many"}}}',
        "{not json",
    ],
    ids=["repairs-list", "models-list", "array", "future-version", "count-string", "not-json"],
)
def test_state_file_of_the_wrong_shape_starts_afresh(emulator_factory, cli, tmp_path, content):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE=SCALE)
    prom = tmp_path / "k.prom"
    state = tmp_path / "k.state.json"
    state.write_text(content)
    for _ in range(2):
        run = cli("--url", emu.url, "--model", "llama3.2", "--metrics-path", str(prom), "once")
        assert run.code == 0, run.out
    saved = json.loads(state.read_text())
    assert saved["version"] == 2 and saved["models"]["llama3.2:latest"]["cold_loads"] == 1


def test_state_warning_names_the_file(emulator_factory, cli, tmp_path):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE=SCALE)
    state = tmp_path / "k.state.json"
    state.write_text('{"version": 1, "models": []}')
    run = cli("--url", emu.url, "--model", "llama3.2", "--metrics-path", str(tmp_path / "k.prom"), "once")
    (warning,) = run.actions("state")
    assert warning["result"] == "warning" and str(state) in warning["message"] and "afresh" in warning["message"]


def test_once_remembers_without_state_directory_or_metrics(emulator_factory, tmp_path):
    """No STATE_DIRECTORY, no metrics path: the backoff still holds across `once` processes (XDG state dir)."""
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE=SCALE)
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    args = ("--url", emu.url, "--model", "no-such-model:7b", "once")
    assert run_subprocess(*args, env=env).beat["posts"] == "1"
    again = run_subprocess(*args, env=env)
    assert again.beat["posts"] == "0" and again.actions("skip")[0]["reason"] == "backoff"
    assert (tmp_path / "xdg" / "keepwarm-heartbeat" / "heartbeat-state.json").exists()


# ---- 13.9 signals ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_once_interrupted_during_a_long_load(emulator_factory, tmp_path, sig, code):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="1", OLLAMA_EMULATOR_LOAD_BPS="2e8")  # a ~10 s cold load
    prom = tmp_path / "k.prom"
    proc = subprocess.Popen(
        [sys.executable, "-m", "heartbeat_agent", "--url", emu.url, "--model", "llama3.2", "--metrics-path",
         str(prom), "once"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = proc.stdout.readline()
        assert "action=start" in first and "job=load" in first
        time.sleep(0.3)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code
    assert "Traceback" not in out + err and err == ""
    last = parse_log(first + out)[-1]
    assert last["action"] == "beat" and last["error"] == "terminated" and last["signal"] == signal.Signals(sig).name
    text = prom.read_text()
    assert f"keepwarm_beat_exit_code {code}\n" in text
