"""`gateway.token_file` in a config file: a relative path names a file beside the config (roles/gateway hands both
over with systemd's LoadCredential=, or in one container mount), an absolute one is kept, a --token-file flag stays
relative to the working directory; a missing or malformed token fails naming the field and the resolved path."""

from __future__ import annotations

import json
import os

import pytest

from gateway._cli import load, parser
from gateway._config import ConfigError, read_config_file


def write_config(directory, token_file):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gateway.json"
    path.write_text(json.dumps({"models": ["llama3.2"], "gateway": {"token_file": token_file}}))
    return path


def test_relative_token_file_is_read_beside_the_config(tmp_path, monkeypatch):
    creds = tmp_path / "credentials"
    config = write_config(creds, "gateway.token")
    (creds / "gateway.token").write_text("s3cret-token\n")
    # another file of that name in the working directory must not be the one read
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gateway.token").write_text("wrong-token\n")
    cfg = load(parser().parse_args(["--config", str(config)]))
    assert cfg.token == "s3cret-token"
    assert read_config_file(str(config))["gateway"]["token_file"] == str(creds / "gateway.token")


def test_relative_token_file_in_a_subdirectory_of_the_config(tmp_path):
    config = write_config(tmp_path / "etc", "secrets/gw.token")
    (tmp_path / "etc" / "secrets").mkdir()
    (tmp_path / "etc" / "secrets" / "gw.token").write_text("abc")
    assert load(parser().parse_args(["--config", str(config)])).token == "abc"


def test_absolute_token_file_is_kept(tmp_path):
    token = tmp_path / "elsewhere" / "t"
    token.parent.mkdir()
    token.write_text("abs-token")
    config = write_config(tmp_path / "etc", str(token))
    assert read_config_file(str(config))["gateway"]["token_file"] == str(token)
    assert load(parser().parse_args(["--config", str(config)])).token == "abs-token"


def test_token_file_flag_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    config = write_config(tmp_path / "etc", "gateway.token")
    (tmp_path / "etc" / "gateway.token").write_text("from-config-dir")
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "flag.token").write_text("from-flag")
    monkeypatch.chdir(tmp_path / "cwd")
    cfg = load(parser().parse_args(["--config", str(config), "--token-file", "flag.token"]))
    assert cfg.token == "from-flag"


def test_missing_token_beside_the_config_names_the_field_and_the_resolved_path(tmp_path, monkeypatch):
    config = write_config(tmp_path / "etc", "gateway.token")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load(parser().parse_args(["--config", str(config)]))
    assert err.value.field == "gateway.token_file"
    assert os.path.join(str(tmp_path / "etc"), "gateway.token") in str(err.value)


@pytest.mark.parametrize("text", ["", "\n", "two words\n"])
def test_a_token_file_without_one_token_is_refused(tmp_path, text):
    config = write_config(tmp_path, "gateway.token")
    (tmp_path / "gateway.token").write_text(text)
    with pytest.raises(ConfigError) as err:
        load(parser().parse_args(["--config", str(config)]))
    assert err.value.field == "gateway.token_file"
    assert "one token without whitespace" in str(err.value)


def test_no_token_file_means_no_auth(tmp_path):
    config = write_config(tmp_path, None)
    assert load(parser().parse_args(["--config", str(config)])).token is None
