#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ollama_override
short_description: Manage the systemd drop-in that sets the Ollama server's environment
version_added: 0.1.0
description:
  - Writes (or removes) a drop-in C(<systemd_dir>/<unit>.d/<dropin>) whose C([Service]) section sets
    C(OLLAMA_KEEP_ALIVE), C(OLLAMA_MAX_LOADED_MODELS) and other C(OLLAMA_*) variables with C(Environment=).
  - Values are validated with Ollama's own rules before anything is written. Values Ollama would silently
    ignore (C(OLLAMA_KEEP_ALIVE=1d) falls back to 5m) are refused with the reason.
  - Values are quoted and escaped so that systemd reads back exactly the intended text (quotes,
    backslashes, C(%) and spaces round-trip). Newlines and other control characters are refused, since
    they could end the line and inject unit directives.
  - The default file name C(zz-keepwarm.conf) sorts after C(override.conf) (what C(systemctl edit) writes),
    so its assignments win. Every other unit line or drop-in that sets one of the same variables is
    reported in RV(conflicts), with which one wins.
  - Also reported, each with a warning, are C(UnsetEnvironment=) lines in any drop-in, which remove the variable
    whatever the file order (systemd applies them last), and a drop-in of the same file name in a directory that
    systemd reads instead of O(systemd_dir) (C(/etc/systemd/system.control), C(/run/systemd/system.control),
    C(/run/systemd/transient), C(/run/systemd/generator.early)), which hides keepwarm's file completely
    (RV(masked_by)).
  - The write is atomic and the file gets mode C(0644) and, when the module runs as root, owner and group
    C(root); the drop-in directory is made C(root)-owned and not writable by others, since whoever can write a
    drop-in can add C(ExecStartPre=+...) commands that run as root. A wrong mode or owner is a change. It does
    not reload systemd or restart the service; notify a handler for that.
requirements:
  - Python 3.8 or later on the managed host; only its standard library and C(ansible.module_utils), no pip packages.
author:
  - keepwarm maintainers (@keepwarm)
attributes:
  check_mode:
    support: full
    description: Computes the file and reports the change without writing.
  diff_mode:
    support: full
    description: Shows the drop-in before and after.
options:
  unit:
    description: The systemd unit whose environment is set.
    type: str
    default: ollama.service
  dropin:
    description:
      - File name of the drop-in inside C(<unit>.d/). Must end in C(.conf) and contain no C(/).
    type: str
    default: zz-keepwarm.conf
  keep_alive:
    description:
      - Value of C(OLLAMA_KEEP_ALIVE), the server's default keep-alive for requests that do not send one.
      - An integer (seconds; negative means forever, for example C(-1)) or a Go duration string such as
        C(-1m), C(30m), C(1h30m), C(1.5h), or an integer string such as C("-1") or C("10").
      - Refused, with the reason, are values Ollama silently replaces by 5m, for example C(forever), C(1d),
        C(5 m), C(1e3), an empty string and booleans, and integers Ollama turns into something else
        (envconfig/config.go C(KeepAlive)). Above 9,223,372,036 seconds, C(time.Duration(n\) * time.Second)
        wraps around int64 (C(18446744074) becomes 0.29 s), and beyond the int64 range
        (C(99999999999999999999)) the value is the 5m default. The same rules apply to C(OLLAMA_LOAD_TIMEOUT)
        given in O(environment).
    type: raw
  max_loaded_models:
    description:
      - Value of C(OLLAMA_MAX_LOADED_MODELS), a global cap on loaded models. C(0) means automatic.
      - Must be a whole number from 0 to 18446744073709551615 (C(strconv.ParseUint)); Ollama ignores C(-1), text
        or a larger number with only a log line. The same applies to the other unsigned variables in
        O(environment) (C(OLLAMA_NUM_PARALLEL), C(OLLAMA_MAX_QUEUE), C(OLLAMA_CONTEXT_LENGTH), ...).
    type: raw
  environment:
    description:
      - Other variables to set, for example C(OLLAMA_NUM_PARALLEL) or C(OLLAMA_CONTEXT_LENGTH).
      - Known C(OLLAMA_*) variables (the ones upstream's envconfig/config.go reads, with their types) are
        validated with Ollama's rules; an unknown C(OLLAMA_*) name gives a warning that names the closest known
        one. Names must be letters, digits and C(_) (a trailing newline is refused, not a traceback).
      - O(keep_alive) and O(max_loaded_models) must not be repeated here.
    type: dict
    default: {}
  state:
    description: Whether the drop-in exists.
    type: str
    choices: [present, absent]
    default: present
  systemd_dir:
    description:
      - Directory holding unit files and drop-in directories.
      - With the default, the conflict report scans all of systemd's unit directories; with another
        directory only that one.
    type: path
    default: /etc/systemd/system
notes:
  - After a change, run C(systemctl daemon-reload) and restart the unit (a handler using
    M(ansible.builtin.systemd_service) with O(ansible.builtin.systemd_service#module:daemon_reload=true)).
seealso:
  - module: keepwarm.ollama.ollama_service_info
"""

EXAMPLES = r"""
- name: Pin every model by default and allow two loaded models
  keepwarm.ollama.ollama_override:
    keep_alive: -1
    max_loaded_models: 2
    environment:
      OLLAMA_NUM_PARALLEL: 1
  notify: Restart ollama

- name: Remove keepwarm's drop-in
  keepwarm.ollama.ollama_override:
    state: absent
  notify: Restart ollama
"""

RETURN = r"""
path:
  description: Path of the drop-in.
  returned: always
  type: str
  sample: /etc/systemd/system/ollama.service.d/zz-keepwarm.conf
environment:
  description: The variables the drop-in sets, as systemd reads them back (empty when O(state=absent)).
  returned: always
  type: dict
  sample: {"OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_MAX_LOADED_MODELS": "2"}
content:
  description: The drop-in text that is (or, in check mode, would be) on disk; null when absent.
  returned: always
  type: str
  sample: "[Service]\nEnvironment=\"OLLAMA_KEEP_ALIVE=-1\"\n"
conflicts:
  description:
    - Other unit lines, drop-ins or environment files that set one of the same variables.
    - C(wins) is true when that assignment beats the drop-in's (a later file name, C(EnvironmentFile=), an
      C(UnsetEnvironment=) line (C(unset) true, C(value) null), or a same-named drop-in that masks keepwarm's
      (C(masked) true)).
  returned: always
  type: list
  elements: dict
  sample:
    - variable: OLLAMA_KEEP_ALIVE
      path: /etc/systemd/system/ollama.service.d/override.conf
      line: 3
      value: 10m
      wins: false
masked_by:
  description: The same-named drop-in systemd reads instead of RV(path), or null.
  returned: always
  type: str
  sample: /run/systemd/system.control/ollama.service.d/zz-keepwarm.conf
diff:
  description: Before and after text of the drop-in.
  returned: when diff mode is on
  type: dict
  sample: {"before": "", "after": "[Service]\nEnvironment=\"OLLAMA_KEEP_ALIVE=-1\"\n"}
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.keepwarm.ollama.plugins.module_utils._systemd import (
    UnitValueError,
    desired_environment as _desired_environment,
    find_conflicts,
    masked_by,
    parse_environment_value,
    parse_unit_text,
    render_dropin,
    unit_sources,
)

HEADER = "Managed by Ansible (keepwarm.ollama.ollama_override); local changes are overwritten."

ARGUMENT_SPEC = dict(
    unit=dict(type="str", default="ollama.service"),
    dropin=dict(type="str", default="zz-keepwarm.conf"),
    keep_alive=dict(type="raw"),
    max_loaded_models=dict(type="raw"),
    environment=dict(type="dict", default={}),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    systemd_dir=dict(type="path", default="/etc/systemd/system"),
)


def desired_environment(params):
    """Validate the options; return ``(list of (name, text), warnings)`` or raise UnitValueError."""
    return _desired_environment(params.get("keep_alive"), params.get("max_loaded_models"), params.get("environment"))


def check_names(unit, dropin):
    if not unit or "/" in unit or "\n" in unit or "." not in unit:
        raise UnitValueError("unit %r refused: give a unit name such as ollama.service" % (unit,))
    if not dropin.endswith(".conf") or "/" in dropin or dropin.startswith(".") or "\n" in dropin:
        raise UnitValueError("dropin %r refused: a file name ending in .conf, without /" % (dropin,))


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except (IOError, OSError):
        return None


def environment_read_back(text):
    """What systemd will read from ``text``: the Environment= assignments of [Service], in order."""
    env = {}
    for section, key, value, _line in parse_unit_text(text or ""):
        if section == "Service" and key == "Environment":
            for name, val in parse_environment_value(value):
                env[name] = val
    return env


def _as_root():
    return os.geteuid() == 0


def ownership_problems(path):
    """What is wrong with the owner or mode of the drop-in and its directory (root runs only): a list of texts."""
    found = []
    if not _as_root():
        return found
    folder = os.path.dirname(path)
    for target, mode in ((folder, None), (path, 0o644)):
        try:
            st = os.stat(target)
        except OSError:
            continue
        if st.st_uid != 0 or st.st_gid != 0:
            found.append("%s is owned by uid %d gid %d, not root" % (target, st.st_uid, st.st_gid))
        if mode is not None and (st.st_mode & 0o7777) != mode:
            found.append("%s has mode %04o, not %04o" % (target, st.st_mode & 0o7777, mode))
        if mode is None and st.st_mode & 0o022:
            found.append("%s is writable by group or others (mode %04o)" % (target, st.st_mode & 0o7777))
    return found


def fix_ownership(path):
    if not _as_root():
        return
    folder = os.path.dirname(path)
    os.chown(folder, 0, 0)
    os.chmod(folder, os.stat(folder).st_mode & 0o7777 & ~0o022)
    if os.path.exists(path):
        os.chown(path, 0, 0)
        os.chmod(path, 0o644)


def write_atomic(module, path, data):
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        os.makedirs(folder, 0o755)
    fd, tmp = tempfile.mkstemp(prefix=".keepwarm-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        module.atomic_move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    os.chmod(path, 0o644)


def run(module):
    p = module.params
    try:
        check_names(p["unit"], p["dropin"])
        if p["state"] == "present":
            env, warnings = desired_environment(p)
        else:
            env, warnings = [], []
    except UnitValueError as exc:
        module.fail_json(msg=to_native(exc))
    for warning in warnings:
        module.warn(warning)

    path = os.path.join(p["systemd_dir"], p["unit"] + ".d", p["dropin"])
    before = read_bytes(path)
    if p["state"] == "present":
        text = render_dropin(env, header=HEADER)
        after = to_bytes(text)
        mode_ok = before is None or (os.stat(path).st_mode & 0o7777) == 0o644
        owner_problems = ownership_problems(path) if before is not None else []
        changed = before != after or not mode_ok or bool(owner_problems)
    else:
        text, after = None, None
        owner_problems = []
        changed = before is not None

    sources = unit_sources(p["unit"], p["systemd_dir"])
    conflicts = find_conflicts(path, set(name for name, _text in env), sources, text)
    masking = masked_by(path, sources)

    if changed and not module.check_mode:
        try:
            if after is None:
                os.unlink(path)
            else:
                write_atomic(module, path, after)
                fix_ownership(path)
        except (IOError, OSError) as exc:
            module.fail_json(msg="cannot write %s: %s" % (path, to_native(exc)), path=path)

    result = dict(
        changed=changed,
        path=path,
        environment=environment_read_back(text),
        content=text,
        conflicts=conflicts,
        masked_by=masking,
    )
    if owner_problems:
        result["ownership_fixed"] = owner_problems
    if masking and text is not None:
        module.warn(
            "%s masks %s: systemd reads the drop-in of the same name from the higher-priority directory and never "
            "reads keepwarm's, so none of its variables take effect; remove or rename %s" % (masking, path, masking)
        )
    for c in conflicts:
        if c.get("masked"):
            continue
        if c.get("unset"):
            module.warn(
                "UnsetEnvironment=%s in %s (line %s) removes %s from the service whatever the drop-in order: the "
                "drop-in's value has no effect" % (c["variable"], c["path"], c["line"], c["variable"])
            )
        elif c["wins"]:
            module.warn(
                "%s=%r from %s (line %s) wins over %s: the drop-in's value has no effect"
                % (c["variable"], c["value"], c["path"], c["line"], path)
            )
    if module._diff:
        result["diff"] = dict(
            before=to_native(before or b""),
            after=text or "",
            before_header=path,
            after_header=path,
        )
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
