"""ollama_service_info: facts from systemctl show output and a process environment."""

from ansible_collections.keepwarm.ollama.plugins.module_utils._systemd import parse_show
from ansible_collections.keepwarm.ollama.plugins.modules.ollama_service_info import build_facts

SHOW = (
    "LoadState=loaded\nActiveState=active\nMainPID=77\n"
    "DropInPaths=/etc/systemd/system/ollama.service.d/zz-keepwarm.conf\n"
    'Environment="PATH=/usr/bin:/bin" OLLAMA_KEEP_ALIVE=1d "OLLAMA_MODELS=/srv/a b"\n'
    "NeedDaemonReload=no\n"
)


def test_same_environment_no_restart():
    facts = build_facts(parse_show(SHOW), {"OLLAMA_KEEP_ALIVE": "1d", "OLLAMA_MODELS": "/srv/a b", "HOME": "/x"})
    assert facts["main_pid"] == 77 and facts["active_state"] == "active"
    assert facts["dropin_paths"] == ["/etc/systemd/system/ollama.service.d/zz-keepwarm.conf"]
    assert facts["process_environment"] == {"OLLAMA_KEEP_ALIVE": "1d", "OLLAMA_MODELS": "/srv/a b"}
    assert facts["restart_pending"] is False
    ka = facts["keep_alive"]
    assert (ka["raw"], ka["effective"], ka["ignored"], ka["forever"], ka["source"]) == (
        "1d",
        "5m",
        True,
        False,
        "process",
    )


def test_restart_pending_when_process_differs():
    facts = build_facts(parse_show(SHOW), {"OLLAMA_KEEP_ALIVE": "-1"})
    assert facts["restart_pending"] is True
    assert any("OLLAMA_KEEP_ALIVE" in r for r in facts["restart_reasons"])
    assert any("OLLAMA_MODELS" in r for r in facts["restart_reasons"])
    assert facts["keep_alive"]["forever"] is True  # the running process's value counts


def test_not_running_uses_systemd_value():
    show = parse_show(SHOW.replace("MainPID=77", "MainPID=0").replace("ActiveState=active", "ActiveState=inactive"))
    facts = build_facts(show, {})
    assert facts["process_environment"] == {} and facts["restart_pending"] is False
    assert facts["keep_alive"]["source"] == "systemd" and facts["keep_alive"]["effective"] == "5m"


def test_needs_daemon_reload():
    facts = build_facts(parse_show(SHOW.replace("NeedDaemonReload=no", "NeedDaemonReload=yes")), None)
    assert facts["needs_daemon_reload"] is True and facts["restart_pending"] is True
    assert facts["process_environment"] is None
