"""keepwarm.ollama.may_use_proxy: the rulebook's proxy rule (module_utils/_urls.py proxy_for) for roles' uri tasks."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.keepwarm.ollama.plugins.filter.may_use_proxy import FilterModule, may_use_proxy
from ansible_collections.keepwarm.ollama.plugins.module_utils._urls import proxy_for


@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://127.0.0.1:11434", False),
        ("http://127.8.9.10:11434", False),
        ("http://localhost:11434", False),
        ("http://LOCALHOST:11434", False),
        ("http://ollama.localhost:11434", False),  # the Jinja expression this replaces proxied this one
        ("http://[::1]:11434", False),
        ("http://[0:0:0:0:0:0:0:1]:11434", False),  # and this one
        ("https://localhost", False),
        ("http://user:secret@127.0.0.1:11434", False),
        ("http://gpu-01.example.org:11434", True),
        ("http://10.1.2.3:11434", True),
        ("https://gpu-01.example.org", True),
        ("http://127.0.0.1.example.org:11434", True),  # a name, not a loopback address
    ],
)
def test_loopback_is_never_proxied(url, expected):
    assert may_use_proxy(url) is expected


def test_same_answer_as_the_rulebook_with_a_proxy_set():
    env = {"http_proxy": "http://p:3128", "https_proxy": "http://p:3128"}
    for url in ("http://127.0.0.1:1", "http://localhost:1", "http://a.lab:1", "https://[::1]:1", "https://a.lab"):
        assert may_use_proxy(url) is (proxy_for(url, env)[0] is not None), url


@pytest.mark.parametrize("value", [None, "", 11434, "ftp://127.0.0.1/", "127.0.0.1:11434"])
def test_bad_input_names_the_value(value):
    with pytest.raises(AnsibleFilterError, match="may_use_proxy"):
        may_use_proxy(value)


def test_registered_under_its_name():
    assert FilterModule().filters()["may_use_proxy"] is may_use_proxy
