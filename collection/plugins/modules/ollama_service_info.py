#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ollama_service_info
short_description: Read what systemd and the running Ollama server really use
version_added: 0.1.0
description:
  - Reads C(systemctl show) for the unit (C(ActiveState), C(MainPID), C(DropInPaths), C(Environment),
    C(NeedDaemonReload)) and the C(OLLAMA_*) variables of the running process from C(/proc/<pid>/environ).
  - Reports C(restart_pending) when the C(OLLAMA_*) variables a restart would give the process differ from the
    running process's (the unit was changed but the service was not restarted), and the keep-alive the server
    really uses after Ollama's own parse of C(OLLAMA_KEEP_ALIVE) (C(1d) is silently read as 5m).
  - What a restart would give is built the way systemd builds a service's environment (src/core/execute.c
    C(build_environment)), the manager's environment (C(systemctl set-environment), read with
    C(systemctl show-environment)), then the unit's C(Environment=), then its C(EnvironmentFile=) files (read on
    the host; a missing file with C(-) is skipped), minus C(UnsetEnvironment=). So values from an environment file
    or the manager no longer make C(restart_pending) true forever.
  - Reading another user's C(/proc/<pid>/environ) needs root (C(become)).
requirements:
  - Python 3.8 or later on the managed host; only its standard library and C(ansible.module_utils), no pip packages.
author:
  - keepwarm maintainers (@keepwarm)
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing.
options:
  unit:
    description: The systemd unit of the Ollama server.
    type: str
    default: ollama.service
seealso:
  - module: keepwarm.ollama.ollama_override
"""

EXAMPLES = r"""
- name: Read the Ollama service state
  keepwarm.ollama.ollama_service_info:
  register: ollama_service
  become: true

- name: Fail when the server does not run with the intended keep-alive
  ansible.builtin.assert:
    that:
      - ollama_service.keep_alive.forever
      - not ollama_service.restart_pending
    fail_msg: "{{ ollama_service.keep_alive.message }}"
"""

RETURN = r"""
active_state:
  description: systemd's C(ActiveState) of the unit.
  returned: always
  type: str
  sample: active
main_pid:
  description: PID of the server process; 0 when it is not running.
  returned: always
  type: int
  sample: 4242
dropin_paths:
  description: The drop-ins systemd has loaded, in the order it applies them.
  returned: always
  type: list
  elements: str
  sample:
    - /etc/systemd/system/ollama.service.d/override.conf
    - /etc/systemd/system/ollama.service.d/zz-keepwarm.conf
environment:
  description: The effective C(Environment=) of the unit as systemd holds it (all variables).
  returned: always
  type: dict
  sample: {"PATH": "/usr/local/bin:/usr/bin:/bin", "OLLAMA_KEEP_ALIVE": "-1"}
process_environment:
  description:
    - The C(OLLAMA_*) variables of the running process; empty when it is not running.
    - Null when C(/proc/<pid>/environ) cannot be read (not root).
  returned: always
  type: dict
  sample: {"OLLAMA_KEEP_ALIVE": "-1"}
needs_daemon_reload:
  description: systemd's C(NeedDaemonReload), true when unit files changed on disk since the last C(daemon-reload).
  returned: always
  type: bool
  sample: false
restart_pending:
  description:
    - True when the C(OLLAMA_*) variables a restart would give the service (manager environment, C(Environment=),
      C(EnvironmentFile=), minus C(UnsetEnvironment=)) differ from the running process's, or when unit files
      changed and systemd was not reloaded.
  returned: always
  type: bool
  sample: false
restart_reasons:
  description: Each difference behind RV(restart_pending), one sentence each.
  returned: always
  type: list
  elements: str
  sample: ["OLLAMA_KEEP_ALIVE: systemd has '-1', the running process has '5m'"]
keep_alive:
  description:
    - The keep-alive the server uses after Ollama's own parse of C(OLLAMA_KEEP_ALIVE) (envconfig/config.go
      C(KeepAlive)), taken from the running process when it can be read, else from systemd.
  returned: always
  type: dict
  contains:
    raw:
      description: The variable's text, or null when unset.
      type: str
    effective:
      description: What Ollama uses, for example C(5m) or C(forever).
      type: str
    seconds:
      description: The effective value in seconds; null for forever.
      type: float
    forever:
      description: Whether models stay loaded forever by default.
      type: bool
    ignored:
      description: Whether the value was not understood and silently replaced by 5m.
      type: bool
    message:
      description: One sentence for humans.
      type: str
    source:
      description: C(process) or C(systemd).
      type: str
  sample:
    raw: 1d
    effective: 5m
    seconds: 300.0
    forever: false
    ignored: true
    message: "OLLAMA_KEEP_ALIVE='1d' is not understood by Ollama and is silently ignored: the server uses 5m"
    source: process
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.keepwarm.ollama.plugins.module_utils._duration import keep_alive_report
from ansible_collections.keepwarm.ollama.plugins.module_utils._systemd import (
    parse_environment_file,
    parse_proc_environ,
    parse_show,
    parse_show_environment,
    split_shell_quoted,
)

ARGUMENT_SPEC = dict(unit=dict(type="str", default="ollama.service"))
PROPERTIES = (
    "LoadState",
    "ActiveState",
    "MainPID",
    "DropInPaths",
    "Environment",
    "EnvironmentFiles",
    "UnsetEnvironment",
    "NeedDaemonReload",
)


def environment_file_paths(show_text):
    """``EnvironmentFiles=`` lines of ``systemctl show`` (one per file: ``PATH (ignore_errors=yes|no)``)."""
    paths = []
    for line in show_text.splitlines():
        if line.startswith("EnvironmentFiles="):
            value = line[len("EnvironmentFiles=") :].strip()
            path = value.rsplit(" (ignore_errors=", 1)[0].strip()
            if path:
                paths.append(path)
    return paths


def read_environment_files(paths):
    """``{name: value}`` from the files in order (later files win); unreadable files are skipped."""
    env = {}
    for path in paths:
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except (IOError, OSError):
            continue
        for name, val in parse_environment_file(text):
            env[name] = val
    return env


def parse_manager_environment(text):
    """``systemctl show-environment``: one ``NAME=value`` per line, values shell-quoted when needed."""
    env = {}
    for line in (text or "").splitlines():
        words = split_shell_quoted(line)
        if words and "=" in words[0]:
            name, _sep, val = words[0].partition("=")
            env[name] = val
    return env


def expected_environment(show, manager_env=None, file_env=None):
    """The environment a restart would give the service: manager, then Environment=, then EnvironmentFile=, minus
    UnsetEnvironment= (src/core/execute.c build_environment)."""
    env = dict(manager_env or {})
    env.update(parse_show_environment(show.get("Environment", "")))
    env.update(file_env or {})
    for word in split_shell_quoted(show.get("UnsetEnvironment", "")):
        name, has_value, val = word.partition("=")
        if name in env and (not has_value or env[name] == val):
            del env[name]
    return env


def build_facts(show, proc_env, manager_env=None, file_env=None):
    """Facts from parsed ``systemctl show`` output and the process environment dict (None if unreadable).

    ``manager_env`` is ``systemctl show-environment`` as a dict, ``file_env`` the unit's EnvironmentFile= contents.
    """
    env = dict(parse_show_environment(show.get("Environment", "")))
    expected = expected_environment(show, manager_env, file_env)
    try:
        pid = int(show.get("MainPID") or 0)
    except ValueError:
        pid = 0
    needs_reload = show.get("NeedDaemonReload", "no") == "yes"
    process_env = None
    if proc_env is not None:
        process_env = dict((k, v) for k, v in proc_env.items() if k.startswith("OLLAMA_"))
    reasons = []
    if process_env is not None and pid:
        wanted = dict((k, v) for k, v in expected.items() if k.startswith("OLLAMA_"))
        for name in sorted(set(wanted) | set(process_env)):
            if wanted.get(name) != process_env.get(name):
                reasons.append(
                    "%s: systemd has %s, the running process has %s"
                    % (name, _show(wanted.get(name)), _show(process_env.get(name)))
                )
    if needs_reload:
        reasons.append("unit files changed on disk: run systemctl daemon-reload, then restart")
    if process_env is not None and pid:
        raw, source = process_env.get("OLLAMA_KEEP_ALIVE"), "process"
    else:
        raw, source = expected.get("OLLAMA_KEEP_ALIVE"), "systemd"
    keep_alive = keep_alive_report(raw)
    keep_alive["source"] = source
    return dict(
        active_state=show.get("ActiveState", "unknown"),
        load_state=show.get("LoadState", "unknown"),
        main_pid=pid,
        dropin_paths=split_shell_quoted(show.get("DropInPaths", "")),
        environment=env,
        process_environment=process_env if pid else ({} if process_env is not None else None),
        needs_daemon_reload=needs_reload,
        restart_pending=bool(reasons),
        restart_reasons=reasons,
        keep_alive=keep_alive,
    )


def _show(value):
    return "nothing" if value is None else repr(value)


def read_proc_environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return parse_proc_environ(f.read())
    except (IOError, OSError):
        return None


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    systemctl = module.get_bin_path("systemctl", required=True)
    cmd = [systemctl, "show"]
    for prop in PROPERTIES:
        cmd.extend(["-p", prop])
    cmd.extend(["--", module.params["unit"]])
    rc, out, err = module.run_command(cmd, environ_update={"LC_ALL": "C"})
    if rc != 0:
        module.fail_json(msg="systemctl show %s failed: %s" % (module.params["unit"], to_native(err).strip()), rc=rc)
    show = parse_show(out)
    if show.get("LoadState") == "not-found":
        module.fail_json(msg="unit %s is not known to systemd (LoadState=not-found)" % module.params["unit"])
    pid = int(show.get("MainPID") or 0) if (show.get("MainPID") or "0").isdigit() else 0
    proc_env = read_proc_environ(pid) if pid else {}
    if pid and proc_env is None:
        module.warn("cannot read /proc/%d/environ (run with become: true); restart_pending is not checked" % pid)
    rc_env, manager_out, _err = module.run_command([systemctl, "show-environment"], environ_update={"LC_ALL": "C"})
    manager_env = parse_manager_environment(manager_out) if rc_env == 0 else {}
    file_env = read_environment_files(environment_file_paths(out))
    facts = build_facts(show, proc_env, manager_env, file_env)
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
