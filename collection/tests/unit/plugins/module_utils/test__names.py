"""Model names as types/model/name.go ParseName/DisplayShortest normalise them."""

import pytest
from ansible_collections.keepwarm.ollama.plugins.module_utils._names import display_shortest, same_model


@pytest.mark.parametrize(
    "name, shown",
    [
        ("llama3", "llama3:latest"),
        ("llama3:latest", "llama3:latest"),
        ("llama3.2", "llama3.2:latest"),
        ("qwen2.5:7b", "qwen2.5:7b"),
        ("library/llama3", "llama3:latest"),
        ("registry.ollama.ai/library/llama3:8b", "llama3:8b"),
        ("https://registry.ollama.ai/library/llama3", "llama3:latest"),
        ("jmorgan/mymodel", "jmorgan/mymodel:latest"),
        ("example.com:5000/team/model:q4", "example.com:5000/team/model:q4"),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
        ("llama3@sha256:abcd", "llama3:latest"),
    ],
)
def test_display_shortest(name, shown):
    assert display_shortest(name) == shown


@pytest.mark.parametrize(
    "a, b, same",
    [
        ("llama3", "llama3:latest", True),
        ("LLaMA3", "llama3:latest", True),
        ("library/llama3", "llama3", True),
        ("llama3", "llama3:8b", False),
        ("llama3", "llama3.2", False),
        ("jmorgan/llama3", "llama3", False),
        ("example.com/library/llama3", "llama3", False),
    ],
)
def test_same_model(a, b, same):
    assert same_model(a, b) is same
