# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of keepwarm.ollama: Ollama as the ollama/ollama container (Docker Engine, compose).
# Import as ansible_collections.keepwarm.ollama.plugins.module_utils._container

"""Read containers and compose projects through the ``docker`` CLI; render keepwarm's compose override file.

Rules followed:

* Compose merges the files given with ``-f`` in order; without ``-f`` it reads ``compose.yaml``/``compose.yml``/
  ``docker-compose.yaml``/``docker-compose.yml`` (the first found) plus ``docker-compose.override.yml`` (or
  ``compose.override.yaml``) next to it. A later file's ``environment`` entry wins over an earlier one, and
  ``environment`` wins over ``env_file`` (Compose specification, "Merge" and "environment"). keepwarm never edits
  the user's file and asks compose itself for the merged result (``config``), so its rules are compose's own.
* Compose interpolates ``$NAME`` and ``${NAME}`` in values; ``$$`` is a literal ``$``.
* A container's environment is fixed when it is created: changing it needs a new container (compose ``up``
  recreates a service whose configuration changed). The environment of the container's main process is what the
  server really reads (Ollama reads its settings once, envconfig/config.go).
* Validation of every value is the drop-in's (``_systemd.desired_environment``): the same refusals and messages.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

try:
    import yaml  # docker-compose 1.x is Python and depends on PyYAML; compose v2 prints JSON instead

    HAS_YAML = True
except ImportError:
    HAS_YAML = False

from ansible_collections.keepwarm.ollama.plugins.module_utils._systemd import parse_proc_environ

MAIN_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_FILES = (
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
)
MARKER = "Managed by Ansible (keepwarm.ollama"


class ContainerError(Exception):
    """A failure whose message names the fix (engine down, no such container, project or service)."""


def env_list_to_dict(items):
    """``["NAME=value", ...]`` (docker inspect's Config.Env) as a dict."""
    out = {}
    for item in items or []:
        name, _sep, value = item.partition("=")
        out[name] = value
    return out


def ollama_only(env):
    return dict((k, v) for k, v in (env or {}).items() if k.startswith("OLLAMA_"))


def compare_environment(wanted, have, wanted_label, have_label):
    """Reasons, one per OLLAMA_* variable whose value differs between two environments."""
    reasons = []
    wanted, have = ollama_only(wanted), ollama_only(have)
    for name in sorted(set(wanted) | set(have)):
        if wanted.get(name) != have.get(name):
            reasons.append(
                "%s: %s has %s, %s has %s"
                % (name, wanted_label, _show(wanted.get(name)), have_label, _show(have.get(name)))
            )
    return reasons


def _show(value):
    return "nothing" if value is None else repr(value)


# --- the docker CLI ----------------------------------------------------------------------------------------------


class Docker(object):
    """The ``docker`` CLI (and compose, v2 plugin or docker-compose 1.x) of the managed host."""

    def __init__(self, module):
        self.module = module
        self.docker = module.get_bin_path("docker")
        if not self.docker:
            raise ContainerError(
                "no container engine on this host: the docker CLI is not installed (install Docker Engine, for "
                "example Debian's docker.io, or set keepalive_runtime: systemd for an ollama.service host)"
            )
        self._compose = None

    def run(self, args, check=True, cwd=None):
        rc, out, err = self.module.run_command([self.docker] + list(args), cwd=cwd, environ_update={"LC_ALL": "C"})
        if check and rc != 0:
            raise ContainerError("docker %s failed (%d): %s" % (" ".join(args), rc, (err or out).strip()))
        return rc, out, err

    def ping(self):
        """Fail with the fix when the engine does not answer."""
        rc, out, err = self.run(["version", "--format", "{{.Server.Version}}"], check=False)
        if rc != 0 or not out.strip():
            raise ContainerError(
                "Docker Engine does not answer on this host (docker version: %s): start it with "
                "`systemctl start docker` (or point DOCKER_HOST at it)" % ((err or out).strip() or "no server")
            )
        return out.strip()

    def inspect(self, name):
        """docker inspect of one container, or None when there is no such container."""
        rc, out, err = self.run(["container", "inspect", "--", name], check=False)
        if rc != 0:
            if "No such" in err or "no such" in err:
                return None
            raise ContainerError("docker container inspect %s failed: %s" % (name, err.strip()))
        data = json.loads(out)
        return data[0] if data else None

    def image_env(self, image):
        rc, out, _err = self.run(["image", "inspect", "--", image], check=False)
        if rc != 0:
            return {}
        data = json.loads(out)
        return env_list_to_dict(((data[0].get("Config") or {}).get("Env")) if data else [])

    # compose
    def compose(self):
        """argv prefix of compose: ``docker compose`` (v2 plugin) where present, else ``docker-compose`` (1.x)."""
        if self._compose is None:
            rc, _out, _err = self.run(["compose", "version"], check=False)
            if rc == 0:
                self._compose = [self.docker, "compose"]
            else:
                legacy = self.module.get_bin_path("docker-compose")
                if not legacy:
                    raise ContainerError(
                        "neither `docker compose` (the v2 plugin) nor `docker-compose` is installed on this host: "
                        "install one (Debian 12: apt-get install docker-compose)"
                    )
                self._compose = [legacy]
        return list(self._compose)

    def compose_run(self, project_dir, files, args, check=True):
        cmd = self.compose() + compose_file_args(project_dir, files) + list(args)
        rc, out, err = self.module.run_command(cmd, cwd=project_dir, environ_update={"LC_ALL": "C"})
        if check and rc != 0:
            raise ContainerError("%s failed (%d): %s" % (" ".join(cmd), rc, (err or out).strip()))
        return rc, out, err

    def compose_config(self, project_dir, files):
        """The merged configuration compose itself computes for these files, as a dict."""
        if self.compose()[-1] == "compose":  # v2 prints JSON on request
            _rc, out, _err = self.compose_run(project_dir, files, ["config", "--format", "json"])
            return json.loads(out)
        _rc, out, _err = self.compose_run(project_dir, files, ["config"])
        if not HAS_YAML:
            raise ContainerError(
                "docker-compose 1.x prints YAML and PyYAML is not importable by %s: install "
                "python3-yaml, or the compose v2 plugin" % self.module._name
            )
        return yaml.safe_load(out)

    def compose_containers(self, project_dir, files, service):
        rc, out, _err = self.compose_run(project_dir, files, ["ps", "-q", service], check=False)
        if self.compose()[-1] == "compose":
            rc, out, _err = self.compose_run(project_dir, files, ["ps", "--all", "-q", service], check=False)
        return [line.strip() for line in out.splitlines() if line.strip()] if rc == 0 else []


def compose_file_args(project_dir, files):
    args = ["--project-directory", project_dir]
    for f in files:
        args += ["-f", f]
    return args


def main_compose_file(project_dir):
    for name in MAIN_FILES:
        path = os.path.join(project_dir, name)
        if os.path.isfile(path):
            return path
    return None


def project_files(project_dir, override_file):
    """The files compose merges for the project, keepwarm's override last; raises ContainerError with the fix."""
    if not os.path.isdir(project_dir):
        raise ContainerError(
            "compose project directory %s does not exist: set keepalive_compose_project_dir to the folder that "
            "holds your docker-compose.yml" % project_dir
        )
    main = main_compose_file(project_dir)
    if main is None:
        raise ContainerError(
            "no compose file in %s (looked for %s): set keepalive_compose_project_dir to the "
            "folder of your compose project" % (project_dir, ", ".join(MAIN_FILES))
        )
    own = os.path.join(project_dir, override_file)
    files = [main]
    for name in OVERRIDE_FILES:
        path = os.path.join(project_dir, name)
        if os.path.isfile(path) and path != own:
            files.append(path)
    files.append(own)
    return files


def compose_version_line(main_text):
    """The main file's top-level ``version:`` line (compose 1.x refuses to merge files of different versions)."""
    m = re.search(r"^version:[ \t]*(\S.*?)[ \t]*$", main_text or "", re.MULTILINE)
    return "version: %s\n" % m.group(1) if m else ""


def compose_escape(text):
    """A value for compose: ``$`` doubled (compose interpolates), then a JSON string (a valid YAML scalar)."""
    return json.dumps(text.replace("$", "$$"))


def render_override(service, env, header, version_line=""):
    lines = ["# " + header, "# Compose merges this file over the project's own; keepwarm never edits yours.", ""]
    if version_line:
        lines.append(version_line.rstrip("\n"))
    lines += ["services:", "  %s:" % json.dumps(service), "    environment:"]
    for name, text in env:
        lines.append("      %s: %s" % (name, compose_escape(text)))
    return "\n".join(lines) + "\n"


def service_environment(config, service):
    """The merged ``environment`` of one service of a compose config (mapping or list form), values as text."""
    services = (config or {}).get("services") or {}
    if service not in services:
        raise ContainerError(
            "service %r is not in the compose project (services: %s): set keepalive_compose_service"
            % (service, ", ".join(sorted(services)) or "none")
        )
    env = (services[service] or {}).get("environment") or {}
    if isinstance(env, list):
        env = dict((item.partition("=")[0], item.partition("=")[2]) for item in env)
    return dict((k, "" if v is None else str(v)) for k, v in env.items())


# --- the running server -------------------------------------------------------------------------------------------


def _ppid_map(proc="/proc"):
    children = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "stat")) as f:
                raw = f.read()
        except (IOError, OSError):
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def read_cmdline(pid, proc="/proc"):
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except (IOError, OSError):
        return None


def is_serve(argv):
    """``ollama serve`` (the binary, or a script run by its interpreter, whose path ends in ollama)."""
    if not argv or "serve" not in argv[1:]:
        return False
    before = argv[: argv.index("serve")]
    return any(os.path.basename(a) == "ollama" for a in before)


def find_serve_process(pid, proc="/proc"):
    """The ``ollama serve`` process: the container's main process, or its first descendant that is one."""
    if not pid:
        return None
    if is_serve(read_cmdline(pid, proc)):
        return pid
    children = _ppid_map(proc)
    queue = list(children.get(pid, []))
    while queue:
        cur = queue.pop(0)
        if is_serve(read_cmdline(cur, proc)):
            return cur
        queue.extend(children.get(cur, []))
    return None


def read_process_environment(pid, proc="/proc"):
    try:
        with open(os.path.join(proc, str(pid), "environ"), "rb") as f:
            return parse_proc_environ(f.read())
    except (IOError, OSError):
        return None


def container_facts(inspect):
    """The parts of docker inspect that keepwarm reports."""
    state = inspect.get("State") or {}
    host = inspect.get("HostConfig") or {}
    config = inspect.get("Config") or {}
    labels = config.get("Labels") or {}
    ports = []
    for port, binds in sorted(((inspect.get("NetworkSettings") or {}).get("Ports") or {}).items()):
        for b in binds or []:
            host_ip = b.get("HostIp") or "0.0.0.0"  # noqa: S104 - docker's way to print "all addresses"
            ports.append("%s:%s->%s" % (host_ip, b.get("HostPort"), port))
    mounts = [
        dict(type=m.get("Type"), name=m.get("Name"), source=m.get("Source"), destination=m.get("Destination"))
        for m in inspect.get("Mounts") or []
    ]
    return dict(
        id=inspect.get("Id", "")[:12],
        name=(inspect.get("Name") or "").lstrip("/"),
        image=config.get("Image"),
        status=state.get("Status", "unknown"),
        running=bool(state.get("Running")),
        pid=int(state.get("Pid") or 0),
        started_at=state.get("StartedAt"),
        restart_count=int(inspect.get("RestartCount") or 0),
        restart_policy=(host.get("RestartPolicy") or {}).get("Name") or "no",
        ports=ports,
        mounts=mounts,
        compose_project=labels.get("com.docker.compose.project"),
        compose_service=labels.get("com.docker.compose.service"),
    )
