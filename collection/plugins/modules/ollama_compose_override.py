#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ollama_compose_override
short_description: Manage keepwarm's compose override file that sets the Ollama container's environment
version_added: 0.1.0
description:
  - The compose analogue of M(keepwarm.ollama.ollama_override). Writes (or removes) an override file in the user's
    compose project whose only content is the C(environment) of one service (C(OLLAMA_KEEP_ALIVE),
    C(OLLAMA_MAX_LOADED_MODELS) and other C(OLLAMA_*) variables). The user's own compose file is never edited.
  - The default file name C(docker-compose.override.yml) is the file compose merges by itself, so a plain
    C(docker compose up -d) or C(docker-compose up -d) by the user keeps keepwarm's settings.
  - Values are validated with the same rules and messages as M(keepwarm.ollama.ollama_override) before anything is
    written; C($) is doubled so that compose does not interpolate it.
  - Compose itself computes the merged configuration (C(config)), with keepwarm's file as it would be after the
    task. A variable that another file merged after keepwarm's sets to another value wins and is reported in
    RV(conflicts) with a warning; the project's own values that keepwarm's file overrides are reported with
    C(wins=false).
  - Compares the merged environment with the environment of the service's container (C(docker inspect)) and
    returns RV(recreate_pending) and RV(up_argv), the command that recreates only that service. It never runs it;
    notify a handler. The named volumes survive a recreate (compose keeps them).
  - Fails, writing nothing, when the project folder, its compose file or the service is missing, or when the
    Docker Engine does not answer; the message names the fix.
requirements:
  - Python 3.8 or later on the managed host; only its standard library and C(ansible.module_utils), no pip packages.
  - The C(docker) CLI and Compose (C(docker compose) v2, or C(docker-compose) 1.29) on the managed host,
    talking to a running Docker Engine.
author:
  - keepwarm maintainers (@keepwarm)
attributes:
  check_mode:
    support: full
    description: Computes the file, the merged environment and the pending recreate without writing.
  diff_mode:
    support: full
    description: Shows the override file before and after.
options:
  project_dir:
    description: The folder of the user's compose project (holding C(docker-compose.yml) or C(compose.yaml)).
    type: path
    required: true
  service:
    description: The compose service that runs C(ollama serve).
    type: str
    default: ollama
  override_file:
    description:
      - File name of keepwarm's override file inside O(project_dir), without C(/).
      - A file of that name that keepwarm did not write is never overwritten (the task fails and names the fix).
      - Compose merges only C(docker-compose.override.yml) (or C(compose.override.yaml)) by itself; with another
        name the user's own C(up) does not see keepwarm's settings, and the task warns.
    type: str
    default: docker-compose.override.yml
  keep_alive:
    description:
      - Value of C(OLLAMA_KEEP_ALIVE), as in M(keepwarm.ollama.ollama_override) (C(-1) means forever).
    type: raw
  max_loaded_models:
    description: Value of C(OLLAMA_MAX_LOADED_MODELS), a whole number of at least 0 (0 means automatic).
    type: raw
  environment:
    description:
      - Other C(OLLAMA_*) variables, validated with Ollama's rules; must not repeat O(keep_alive) or
        O(max_loaded_models).
    type: dict
    default: {}
  ports:
    description:
      - Ports published for the service in addition to the project's own, in compose's short syntax
        (C(127.0.0.1:11435:11435)).
      - Compose 1.29 merges C(ports) from an override file by container port, published port, address and
        protocol, so an override can only add entries; it can neither remove nor move one the project publishes.
      - Used by the role C(keepwarm.ollama.gateway), which moves Ollama inside its container to another port
        (C(OLLAMA_HOST) in O(environment)), publishes that on the host's loopback only, and puts keepwarm-gateway on
        the container port the project publishes.
      - RV(recreate_pending) compares the environment; keepwarm changes these ports only together with
        C(OLLAMA_HOST).
    type: list
    elements: str
    default: []
  state:
    description: Whether keepwarm's override file exists. V(absent) removes it (the project's own settings apply).
    type: str
    choices: [present, absent]
    default: present
notes:
  - Needs the C(docker) CLI and compose on the host, C(docker compose) (v2 plugin) where present, else
    C(docker-compose) 1.x (Debian 12), whose YAML output is read with PyYAML (a dependency of docker-compose 1.x).
seealso:
  - module: keepwarm.ollama.ollama_container_info
  - module: keepwarm.ollama.ollama_override
"""

EXAMPLES = r"""
- name: Pin models forever in the compose project in /srv/ollama
  keepwarm.ollama.ollama_compose_override:
    project_dir: /srv/ollama
    keep_alive: -1
    max_loaded_models: 1
  register: override

- name: Recreate only the ollama service when its environment changed
  ansible.builtin.command:
    argv: "{{ override.up_argv }}"
  when: override.recreate_pending
  changed_when: true
"""

RETURN = r"""
path:
  description: Path of keepwarm's override file.
  returned: always
  type: str
  sample: /srv/ollama/docker-compose.override.yml
files:
  description: The compose files merged, in order (keepwarm's last).
  returned: always
  type: list
  elements: str
  sample: [/srv/ollama/docker-compose.yml, /srv/ollama/docker-compose.override.yml]
environment:
  description: The variables keepwarm's file sets (empty when O(state=absent)).
  returned: always
  type: dict
  sample: {"OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_MAX_LOADED_MODELS": "1"}
merged_environment:
  description: The service's environment as compose merges it with keepwarm's file as it is after the task.
  returned: always
  type: dict
  sample: {"OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_MAX_LOADED_MODELS": "1"}
content:
  description: The override text that is (or, in check mode, would be) on disk; null when absent.
  returned: always
  type: str
conflicts:
  description:
    - Variables keepwarm sets that the project also sets. C(wins) is true when the project's value is what the
      container gets (a file merged after keepwarm's), false when keepwarm's value overrides it.
  returned: always
  type: list
  elements: dict
  sample:
    - {variable: OLLAMA_KEEP_ALIVE, value: 10m, path: /srv/ollama/docker-compose.yml, wins: false}
container:
  description: Id of the service's container, or null when it has none yet.
  returned: always
  type: str
container_environment:
  description: The C(OLLAMA_*) variables of the service's container (null without a container).
  returned: always
  type: dict
recreate_pending:
  description: The merged C(OLLAMA_*) environment differs from the container's, there is no container, or it is
    not running (C(docker kill) and C(docker stop) disable its restart policy until the next start).
  returned: always
  type: bool
recreate_reasons:
  description: One line per differing variable.
  returned: always
  type: list
  elements: str
up_argv:
  description: The command that creates or recreates only this service (C(up -d --no-deps SERVICE)).
  returned: always
  type: list
  elements: str
  sample: [/usr/bin/docker-compose, --project-directory, /srv/ollama, -f, docker-compose.yml, up, -d, --no-deps,
    ollama]
diff:
  description: Before and after text of the override file.
  returned: when diff mode is on
  type: dict
"""

import json
import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.keepwarm.ollama.plugins.module_utils._container import (
    MARKER,
    OVERRIDE_FILES,
    ContainerError,
    Docker,
    compare_environment,
    compose_file_args,
    compose_version_line,
    env_list_to_dict,
    ollama_only,
    project_files,
    render_override,
    service_environment,
)
from ansible_collections.keepwarm.ollama.plugins.module_utils._systemd import UnitValueError, desired_environment

HEADER = "Managed by Ansible (keepwarm.ollama.ollama_compose_override); local changes are overwritten."

ARGUMENT_SPEC = dict(
    project_dir=dict(type="path", required=True),
    service=dict(type="str", default="ollama"),
    override_file=dict(type="str", default="docker-compose.override.yml"),
    keep_alive=dict(type="raw"),
    max_loaded_models=dict(type="raw"),
    environment=dict(type="dict", default={}),
    ports=dict(type="list", elements="str", default=[]),
    state=dict(type="str", default="present", choices=["present", "absent"]),
)


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except (IOError, OSError):
        return None


def find_conflicts(docker, project_dir, files, service, *, env, merged):
    """The project's own values of keepwarm's variables: overridden (wins=false) or winning (wins=true)."""
    conflicts = []
    others = files[:-1]
    before = {}
    for path in others:  # each file alone: which one sets the variable (compose does the parsing)
        try:
            cfg = docker.compose_config(project_dir, [path])
            file_env = service_environment(cfg, service)
        except ContainerError:
            continue  # an override file alone may not be a valid project; the merged check below still holds
        for name, text in env:
            if name in file_env and file_env[name] != text:
                before[name] = (file_env[name], path)
    for name, text in env:
        if merged.get(name) != text:
            conflicts.append(
                dict(variable=name, value=merged.get(name), path=before.get(name, (None, "?"))[1], wins=True)
            )
        elif name in before:
            conflicts.append(dict(variable=name, value=before[name][0], path=before[name][1], wins=False))
    return conflicts


def render(service, env, version_line, ports):
    """keepwarm's override text: the service's environment, and ports it publishes besides the project's."""
    text = render_override(service, env, HEADER, version_line)
    if ports:
        text += "    ports:\n" + "".join("      - %s\n" % json.dumps(p) for p in ports)
    return text


def run(module, docker):
    p = module.params
    name = p["override_file"]
    if not name or "/" in name or name.startswith("."):
        raise ContainerError("override_file %r refused: a file name inside project_dir, without /" % (name,))
    try:
        env, warnings = desired_environment(p["keep_alive"], p["max_loaded_models"], p["environment"])
    except UnitValueError as exc:
        raise ContainerError(to_native(exc)) from None
    if p["state"] == "absent":
        env = []
    for warning in warnings:
        module.warn(warning)
    project_dir = os.path.abspath(p["project_dir"])
    files = project_files(project_dir, name)
    path = files[-1]
    docker.ping()

    before = read_bytes(path)
    if before is not None and to_bytes(MARKER) not in before:
        raise ContainerError(
            "%s exists and keepwarm did not write it: keepwarm never overwrites your files; set "
            "keepalive_compose_override_file to another name (and list it in COMPOSE_FILE if your own `up` "
            "should merge it)" % path
        )
    if name not in OVERRIDE_FILES and p["state"] == "present":
        module.warn(
            "compose does not merge %s by itself: a plain `up` in %s drops keepwarm's settings unless "
            "COMPOSE_FILE lists it" % (name, project_dir)
        )

    with open(files[0]) as f:
        version_line = compose_version_line(f.read())
    if p["state"] == "present":
        text = render(p["service"], env, version_line, p["ports"])
        after = to_bytes(text)
    else:
        text, after = None, None
    changed = before != after

    # The service must be the project's own (compose would refuse keepwarm's file naming a service without image).
    service_environment(docker.compose_config(project_dir, files[:-1]), p["service"])
    # compose merges keepwarm's file as it will be: a copy in a scratch folder stands in for it (check mode too)
    tmpdir = tempfile.mkdtemp(prefix="keepwarm-compose-")
    try:
        effective = files[:-1]
        if after is not None:
            scratch = os.path.join(tmpdir, name)
            with open(scratch, "wb") as f:
                f.write(after)
            effective = effective + [scratch]
        merged = service_environment(docker.compose_config(project_dir, effective), p["service"])
        conflicts = find_conflicts(docker, project_dir, files[:-1] + [path], p["service"], env=env, merged=merged)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    final_files = files if after is not None else files[:-1]
    ids = docker.compose_containers(project_dir, final_files, p["service"])
    inspect = docker.inspect(ids[0]) if ids else None
    container_env = None
    reasons = []
    if inspect is None:
        reasons.append("the service %s has no container yet" % p["service"])
    else:
        config_env = env_list_to_dict((inspect.get("Config") or {}).get("Env"))
        image_env = docker.image_env((inspect.get("Config") or {}).get("Image") or "")
        wanted = dict(image_env)
        wanted.update(merged)
        container_env = ollama_only(config_env)
        reasons = compare_environment(wanted, config_env, "the merged compose configuration", "the container")
        state = inspect.get("State") or {}
        if not state.get("Running") and p["state"] == "present":
            # `docker kill`/`docker stop` disable the restart policy until the next start (docker-kill(1)).
            reasons.append("the container is not running (status %s): `up` starts it" % state.get("Status"))

    if changed and not module.check_mode:
        try:
            if after is None:
                os.unlink(path)
            else:
                fd, tmp = tempfile.mkstemp(prefix=".keepwarm-", dir=project_dir)
                with os.fdopen(fd, "wb") as f:
                    f.write(after)
                os.chmod(tmp, 0o644)
                module.atomic_move(tmp, path)
        except (IOError, OSError) as exc:
            raise ContainerError("cannot write %s: %s" % (path, to_native(exc))) from None

    for c in conflicts:
        if c["wins"]:
            module.warn(
                "%s=%r from %s wins over %s: keepwarm's value has no effect"
                % (c["variable"], c["value"], c["path"], path)
            )
    result = dict(
        changed=changed,
        path=path,
        files=final_files,
        environment=dict(env),
        merged_environment=merged,
        content=text,
        conflicts=conflicts,
        container=inspect.get("Id", "")[:12] if inspect else None,
        container_environment=container_env,
        recreate_pending=bool(reasons),
        recreate_reasons=reasons,
        up_argv=docker.compose()
        + compose_file_args(project_dir, final_files)
        + ["up", "-d", "--no-deps", p["service"]],
    )
    if module._diff:
        result["diff"] = dict(before=to_native(before or b""), after=text or "", before_header=path, after_header=path)
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        docker = Docker(module)
        module.exit_json(**run(module, docker))
    except ContainerError as exc:
        module.fail_json(msg=to_native(exc))


if __name__ == "__main__":
    main()
