#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ollama_container_info
short_description: Read what the Ollama container and its running server really use
version_added: 0.1.0
description:
  - The container analogue of M(keepwarm.ollama.ollama_service_info). Reads the container with C(docker inspect)
    (state, main PID, restart policy and count, published ports, mounts, C(Config.Env)) and the C(OLLAMA_*)
    variables of its actual C(ollama serve) process from C(/proc/<pid>/environ) on the host.
  - Reports C(restart_pending) when the process's C(OLLAMA_*) variables differ from the container's configuration,
    and C(recreate_pending) when the container's configuration differs from what it should be, either the merged
    environment of a compose service (O(project_dir)) or the values given in O(keep_alive),
    O(max_loaded_models) and O(environment) (validated with the same rules as M(keepwarm.ollama.ollama_override)).
  - Reports the keep-alive the server really uses after Ollama's own parse of C(OLLAMA_KEEP_ALIVE).
  - Fails with the fix when the Docker Engine does not answer, or when there is no such container and
    O(must_exist=true).
requirements:
  - Python 3.8 or later on the managed host; only its standard library and C(ansible.module_utils), no pip packages.
  - The C(docker) CLI on the managed host, talking to a running Docker Engine; root to read the server
    process's environment.
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
  name:
    description:
      - Name or id of the container. Ignored with O(project_dir), where the service's container is used.
    type: str
    default: ollama
  project_dir:
    description: A compose project folder; the container is the one of O(service), and what it should run with
      is the environment compose merges (including keepwarm's override file).
    type: path
  service:
    description: The compose service, with O(project_dir).
    type: str
    default: ollama
  override_file:
    description: keepwarm's override file name in O(project_dir) (see M(keepwarm.ollama.ollama_compose_override)).
    type: str
    default: docker-compose.override.yml
  keep_alive:
    description: Expected C(OLLAMA_KEEP_ALIVE) of a container keepwarm manages itself (without O(project_dir)).
    type: raw
  max_loaded_models:
    description: Expected C(OLLAMA_MAX_LOADED_MODELS), likewise.
    type: raw
  environment:
    description: Other expected C(OLLAMA_*) variables, likewise.
    type: dict
    default: {}
  must_exist:
    description: Fail when there is no such container (else RV(exists=false)).
    type: bool
    default: true
notes:
  - Reading the process environment needs root (C(become)).
seealso:
  - module: keepwarm.ollama.ollama_compose_override
  - module: keepwarm.ollama.ollama_service_info
"""

EXAMPLES = r"""
- name: Read the compose service's container and its server process
  keepwarm.ollama.ollama_container_info:
    project_dir: /srv/ollama
  register: ollama_container
  become: true

- name: Prove a managed container runs with the pinned keep-alive
  keepwarm.ollama.ollama_container_info:
    name: ollama
    keep_alive: -1
    max_loaded_models: 1
  register: ollama_container
  failed_when: ollama_container.recreate_pending or ollama_container.restart_pending
"""

RETURN = r"""
exists:
  description: Whether the container exists.
  returned: always
  type: bool
container:
  description: The container (C(id), C(name), C(image), C(status), C(running), C(pid), C(started_at),
    C(restart_count), C(restart_policy), C(ports), C(mounts), C(compose_project), C(compose_service)).
  returned: when the container exists
  type: dict
  sample:
    id: 3f2a9c1b7d0e
    name: ollama
    status: running
    running: true
    pid: 4242
    restart_policy: unless-stopped
    restart_count: 1
    ports: ["0.0.0.0:11434->11434/tcp"]
    mounts: [{type: volume, name: ollama_ollama, source: /var/lib/docker/volumes/ollama_ollama/_data,
              destination: /root/.ollama}]
desired_environment:
  description: The validated values of O(keep_alive), O(max_loaded_models) and O(environment), as the container's
    environment must hold them (the input of M(community.docker.docker_container)'s C(env)); empty when none given.
  returned: always
  type: dict
  sample: {"OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_MAX_LOADED_MODELS": "1"}
expected_environment:
  description: The C(OLLAMA_*) variables the container should have (image defaults, then compose's merged
    environment or the given values); null when nothing is expected.
  returned: always
  type: dict
environment:
  description: The C(OLLAMA_*) variables of the container's configuration (C(Config.Env)).
  returned: when the container exists
  type: dict
  sample: {"OLLAMA_HOST": "0.0.0.0:11434", "OLLAMA_KEEP_ALIVE": "-1"}
serve_pid:
  description: PID (on the host) of the C(ollama serve) process; 0 when none runs.
  returned: always
  type: int
serve_cmdline:
  description: Its command line.
  returned: always
  type: list
  elements: str
process_environment:
  description: The C(OLLAMA_*) variables of that process; null when it cannot be read.
  returned: always
  type: dict
restart_pending:
  description: The process's C(OLLAMA_*) variables differ from the container's configuration.
  returned: always
  type: bool
recreate_pending:
  description: The container's configuration differs from the expected environment, or there is no container.
  returned: always
  type: bool
reasons:
  description: One line per difference.
  returned: always
  type: list
  elements: str
keep_alive:
  description: The keep-alive the server uses (C(raw), C(effective), C(seconds), C(forever), C(ignored), C(message),
    C(source) = C(process) or C(container)).
  returned: always
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.keepwarm.ollama.plugins.module_utils._container import (
    ContainerError,
    Docker,
    compare_environment,
    container_facts,
    env_list_to_dict,
    find_serve_process,
    ollama_only,
    project_files,
    read_cmdline,
    read_process_environment,
    service_environment,
)
from ansible_collections.keepwarm.ollama.plugins.module_utils._duration import keep_alive_report
from ansible_collections.keepwarm.ollama.plugins.module_utils._systemd import UnitValueError, desired_environment

ARGUMENT_SPEC = dict(
    name=dict(type="str", default="ollama"),
    project_dir=dict(type="path"),
    service=dict(type="str", default="ollama"),
    override_file=dict(type="str", default="docker-compose.override.yml"),
    keep_alive=dict(type="raw"),
    max_loaded_models=dict(type="raw"),
    environment=dict(type="dict", default={}),
    must_exist=dict(type="bool", default=True),
)


def build_facts(inspect, image_env, expected, *, serve_pid, serve_cmdline, proc_env, desired=None):
    """Facts from docker inspect, the image's env, the expected OLLAMA_* (or None) and the process's environment."""
    reasons = []
    config_env = env_list_to_dict(((inspect or {}).get("Config") or {}).get("Env"))
    expected_env = None
    if expected is not None:
        expected_env = ollama_only(image_env)
        expected_env.update(ollama_only(expected))
    if inspect is None:
        reasons.append("there is no container")
    elif expected_env is not None:
        reasons += compare_environment(expected_env, config_env, "expected", "the container")
    recreate = bool(reasons)
    restart = []
    if inspect is not None and serve_pid and proc_env is not None:
        restart = compare_environment(config_env, proc_env, "the container", "the running ollama serve")
    if serve_pid and proc_env is not None:
        raw, source = proc_env.get("OLLAMA_KEEP_ALIVE"), "process"
    else:
        raw, source = config_env.get("OLLAMA_KEEP_ALIVE"), "container"
    keep_alive = keep_alive_report(raw)
    keep_alive["source"] = source
    facts = dict(
        exists=inspect is not None,
        desired_environment=desired or {},
        expected_environment=expected_env,
        serve_pid=serve_pid or 0,
        serve_cmdline=serve_cmdline or [],
        process_environment=ollama_only(proc_env) if proc_env is not None else None,
        restart_pending=bool(restart),
        recreate_pending=recreate,
        reasons=reasons + restart,
        keep_alive=keep_alive,
    )
    if inspect is not None:
        facts["container"] = container_facts(inspect)
        facts["environment"] = ollama_only(config_env)
    return facts


def run(module, docker):
    p = module.params
    docker.ping()
    expected = None
    desired = {}
    if p["project_dir"]:
        project_dir = os.path.abspath(p["project_dir"])
        files = project_files(project_dir, p["override_file"])
        if not os.path.isfile(files[-1]):
            files = files[:-1]
        expected = service_environment(docker.compose_config(project_dir, files), p["service"])
        ids = docker.compose_containers(project_dir, files, p["service"])
        inspect = docker.inspect(ids[0]) if ids else None
        where = "of the compose service %s in %s" % (p["service"], project_dir)
    else:
        if p["keep_alive"] is not None or p["max_loaded_models"] is not None or p["environment"]:
            try:
                env, _warnings = desired_environment(p["keep_alive"], p["max_loaded_models"], p["environment"])
            except UnitValueError as exc:
                raise ContainerError(to_native(exc)) from None
            expected = desired = dict(env)
        inspect = docker.inspect(p["name"])
        where = "named %s" % p["name"]
    if inspect is None and p["must_exist"]:
        raise ContainerError(
            "there is no container %s on this host (docker ps -a): start it (docker compose up -d) "
            "or set keepalive_runtime to how this host runs Ollama" % where
        )
    image_env = docker.image_env(((inspect or {}).get("Config") or {}).get("Image") or "") if inspect else {}
    pid = int(((inspect or {}).get("State") or {}).get("Pid") or 0)
    serve_pid = find_serve_process(pid) if pid else None
    proc_env = read_process_environment(serve_pid) if serve_pid else None
    if serve_pid and proc_env is None:
        module.warn("cannot read /proc/%s/environ (run with become: true); restart_pending is not checked" % serve_pid)
    cmdline = read_cmdline(serve_pid) if serve_pid else []
    return build_facts(
        inspect, image_env, expected, serve_pid=serve_pid, serve_cmdline=cmdline, proc_env=proc_env, desired=desired
    )


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        docker = Docker(module)
        module.exit_json(changed=False, **run(module, docker))
    except ContainerError as exc:
        module.fail_json(msg=to_native(exc))


if __name__ == "__main__":
    main()
