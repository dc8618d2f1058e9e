"""The lab's Docker hosts without booting one: base variant inputs, files written into a host, inventory groups.

The Docker host itself (real Docker Engine in an nspawn host, the compose project, the published port) is exercised
end to end by the Molecule scenario `docker` (molecule/docker)."""

from __future__ import annotations

import subprocess
import sys
import tarfile

from lab import base, dockerhost, fleet


def test_docker_variant_has_its_own_cache_key_and_the_systemd_key_is_unchanged():
    assert base.key("docker") != base.key("systemd")
    assert base.key() == base.key("systemd")
    assert "ollama_unit" in base.inputs("systemd") and "docker" not in base.inputs("systemd")
    docker = base.inputs("docker")
    assert {"docker.io", "docker-compose", "netbase", "sgml-base", "libjansson4"} <= set(docker["packages"])
    assert docker["docker"]["daemon_json"] == {"storage-driver": "vfs"}


def test_only_the_narrowed_settings_are_added():
    assert dockerhost.NSPAWN_ARGS == ("--capability=CAP_NET_ADMIN", "--system-call-filter=@keyring bpf")
    assert dockerhost.NSPAWN_ENV == {"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}  # /proc/sys stays read-only


def test_prepare_writes_the_users_compose_project_and_a_first_boot_unit(tmp_path):
    dockerhost.prepare(tmp_path)
    compose = (tmp_path / "srv/ollama/docker-compose.yml").read_text()
    assert "container_name: ollama" in compose and '"11434:11434"' in compose and "ollama:/root/.ollama" in compose
    assert "restart: unless-stopped" in compose and "OLLAMA_" not in compose
    unit = tmp_path / "etc/systemd/system" / dockerhost.COMPOSE_UNIT
    assert "After=docker.service" in unit.read_text()
    link = tmp_path / "etc/systemd/system/multi-user.target.wants" / dockerhost.COMPOSE_UNIT
    assert link.is_symlink()
    script = (tmp_path / "usr/local/sbin/kw-lab-provision-ollama").read_text()
    assert "docker import" in script and 'ENTRYPOINT ["/bin/ollama"]' in script and "docker-compose up -d" in script


def test_image_script_puts_the_emulator_at_bin_ollama(tmp_path):
    """The image tar carries python3 and /usr/bin/ollama (the script reads /usr/local/bin/ollama: simulated here)."""
    fake = tmp_path / "ollama"
    fake.write_text("#!/usr/bin/python3\nprint('emulator')\n")
    script = dockerhost.IMAGE_SCRIPT.replace("/usr/local/bin/ollama", str(fake))
    # The controller's whole /usr/lib takes ~20 s to tar: keep the list's shape, with two small entries.
    start = script.index("PATHS = [")
    script = script[:start] + 'PATHS = ["usr/bin/env", "etc/passwd"]\n' + script[script.index("SKIP = ", start) :]
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True).stdout
    path = tmp_path / "image.tar"
    path.write_bytes(out)
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
        assert {"usr/bin/ollama", "usr/bin/env", "etc/passwd", "tmp", "root/.ollama"} <= names
        assert tar.extractfile("usr/bin/ollama").read().startswith(b"#!/usr/bin/python3")
        assert not any(n.startswith("etc/ssh") for n in names)  # never the host's keys
        # parents as 0755 entries: `docker import` makes missing ones 0700, and a non-root container (the gateway's
        # sidecar runs as 65534) could not reach /usr/bin/python3
        dirs = {m.name: m.mode for m in tar.getmembers() if m.isdir()}
        assert dirs["usr"] == dirs["usr/bin"] == dirs["etc"] == dirs["var"] == 0o755


def test_inventory_groups_docker_hosts(tmp_path):
    paths = fleet.Paths(tmp_path)
    for name, runtime in (("kw-lab-1", "systemd"), ("kw-lab-2", "docker")):
        (paths.hosts / name).mkdir(parents=True)
        (paths.hosts / name / "runtime").write_text(runtime + "\n")
    fleet._write_inventory(paths, ["kw-lab-1", "kw-lab-2"])
    text = paths.inventory.read_text()
    assert "[ollama_docker]\nkw-lab-2\n" in text
    assert "keepwarm_runtime=container" in text and "keepwarm_compose_project_dir=/srv/ollama" in text
    assert paths.runtime("kw-lab-1") == "systemd" and paths.runtime("kw-lab-9") == "systemd"
