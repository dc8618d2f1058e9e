"""pytest fixtures for the lab fleet (placeholder until the lab lands).

Contract: session fixture `lab_hosts` yields a fleet object with
  .inventory: pathlib.Path   -- Ansible INI inventory of the running lab (group ollama_gpu)
  .hosts: list[str]          -- inventory host names
  .ssh(host, *cmd, check=True) -> subprocess.CompletedProcess  -- run a command on a host as root over SSH
"""

import pytest


@pytest.fixture(scope="session")
def lab_hosts():
    raise RuntimeError("the lab fixture is not implemented yet")
