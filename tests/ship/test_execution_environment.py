"""execution-environment.yml: `ansible-builder create` (no container engine) writes a build context whose
Containerfile installs keepwarm.ollama from the artifact; the galaxy stage's install command is then run for real on
that context's files."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml
from conftest import ROOT, clean_env, collection_version, run, tool


@pytest.fixture(scope="module")
def context(artifact, tmp_path_factory):
    """A copy of the EE definition and what it names (collections/requirements.yml, dist/<artifact>), then
    `ansible-builder create` in it."""
    work = tmp_path_factory.mktemp("ee")
    shutil.copyfile(ROOT / "execution-environment.yml", work / "execution-environment.yml")
    (work / "collections").mkdir()
    shutil.copyfile(ROOT / "collections" / "ee-requirements.yml", work / "collections" / "ee-requirements.yml")
    (work / "dist").mkdir()
    shutil.copyfile(artifact, work / "dist" / artifact.name)
    proc = run(
        [tool("ansible-builder"), "create", "--file", "execution-environment.yml", "--context", "context"]
        + ["--output-filename", "Containerfile", "-v", "3"],
        cwd=work,
    )
    assert "No matches" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return work / "context"


def test_ee_definition_is_schema_v3():
    ee = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert ee["version"] == 3
    assert ee["dependencies"]["ansible_core"]["package_pip"].startswith("ansible-core>=2.19")


def test_context_carries_the_artifact_and_requirements(context, artifact):
    build = context / "_build"
    assert (build / "dist" / artifact.name).read_bytes() == artifact.read_bytes()
    reqs = yaml.safe_load((build / "requirements.yml").read_text())
    assert reqs["collections"] == [{"name": f"dist/keepwarm-ollama-{collection_version()}.tar.gz", "type": "file"}]
    bindep = (build / "bindep.txt").read_text()
    assert "openssh-clients [platform:rpm]" in bindep


def test_containerfile_installs_keepwarm(context):
    text = (context / "Containerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    galaxy = lines.index("FROM base AS galaxy")
    final = next(i for i, line in enumerate(lines) if line.startswith("FROM base AS final"))
    # The galaxy stage copies the context (with dist/<artifact>) to /build and installs requirements.yml there.
    stage = lines[galaxy:final]
    assert "COPY _build /build" in stage
    assert "WORKDIR /build" in stage
    install = [
        line for line in stage if re.match(r"RUN .*ansible-galaxy collection install .*-r requirements\.yml", line)
    ]
    assert len(install) == 1, stage
    assert '--collections-path "/usr/share/ansible/collections"' in install[0]
    # ... and the final image takes the installed collections from that stage.
    assert "COPY --from=galaxy /usr/share/ansible /usr/share/ansible" in lines[final:]
    assert re.search(r'^ARG ANSIBLE_INSTALL_REFS=".*ansible-core>=2\.19,<2\.20', text, re.M)


def test_galaxy_stage_install_runs(context, tmp_path):
    """Run the Containerfile's galaxy-stage command on the context's own files (/build -> context/_build). A real
    build resolves keepwarm.ollama's declared community.docker from Galaxy; here (no Galaxy) it is put into the
    collections path first and $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS is --offline (`ansible-builder build --build-arg
    ANSIBLE_GALAXY_CLI_COLLECTION_OPTS=--offline`), so the install finds the dependency already satisfied."""
    import install_community_docker

    dest = tmp_path / "usr-share-ansible-collections"
    install_community_docker.install_into(dest)
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\n")
    env = clean_env(dest, cfg, ANSIBLE_GALAXY_DISABLE_GPG_VERIFY="1")
    build = context / "_build"
    text = (context / "Containerfile").read_text()
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in text
    run(
        [tool("ansible-galaxy"), "collection", "install", "--offline", "-r", "requirements.yml"]
        + ["--collections-path", str(dest)],
        cwd=build,
        env=env,
    )
    manifest = json.loads((dest / "ansible_collections" / "keepwarm" / "ollama" / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["version"] == collection_version()
    assert set(manifest["collection_info"]["dependencies"]) == {"community.docker"}
    assert (
        dest / "ansible_collections" / "keepwarm" / "ollama" / "roles" / "heartbeat" / "tasks" / "main.yml"
    ).is_file()
    proc = run([tool("ansible-galaxy"), "collection", "list", "--format", "json"], cwd=tmp_path, env=env)
    listed = json.loads(proc.stdout)[str(dest / "ansible_collections")]
    assert set(listed) == {"keepwarm.ollama", "community.docker", "community.library_inventory_filtering_v1"}
