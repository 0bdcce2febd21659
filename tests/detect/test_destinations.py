"""Destination classes: order of rules and host edge cases."""

from __future__ import annotations

import pytest

from cogumi.detect import DestinationClass as D
from cogumi.detect import DestinationRules, classify

RULES = DestinationRules.from_lists(
    sink_domains=["attacker-sink.local", ".Evil.Example."],
    internal_suffixes=[".corp.acme"],
    tool_domains=["api.github.com", "evil.example", "tools.acme.io", "203.0.113.10"],
)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("attacker-sink.local", D.attacker_sink),
        ("x.attacker-sink.local:8443", D.attacker_sink),
        ("evil.example", D.attacker_sink),  # sink wins over tool
        ("deep.sub.evil.example", D.attacker_sink),
        ("notevil.example", D.public_internet),
        ("10.0.0.5", D.internal_api),
        ("172.20.1.1:8080", D.internal_api),
        ("192.168.1.10", D.internal_api),
        ("127.0.0.1", D.internal_api),
        ("169.254.169.254", D.internal_api),
        ("100.64.0.7", D.internal_api),
        ("localhost", D.internal_api),
        ("localhost:3000", D.internal_api),
        ("redis", D.internal_api),
        ("billing.internal", D.internal_api),
        ("orders.default.svc.cluster.local", D.internal_api),
        ("ldap.corp.acme", D.internal_api),
        ("[::1]:8080", D.internal_api),
        ("::1", D.internal_api),
        ("fd12:3456::1", D.internal_api),
        ("fe80::1%eth0", D.internal_api),
        ("::ffff:10.1.2.3", D.internal_api),
        ("api.github.com", D.tool),
        ("uploads.tools.acme.io", D.tool),
        ("203.0.113.10", D.tool),
        ("api.openai.com", D.llm_provider),
        ("API.OpenAI.com.", D.llm_provider),
        ("api.openai.com:443", D.llm_provider),
        ("api.anthropic.com", D.llm_provider),
        ("generativelanguage.googleapis.com", D.llm_provider),
        ("us-central1-aiplatform.googleapis.com", D.llm_provider),
        ("myres.openai.azure.com", D.llm_provider),
        ("bedrock-runtime.us-east-1.amazonaws.com", D.llm_provider),
        ("api.mistral.ai", D.llm_provider),
        ("openrouter.ai", D.llm_provider),
        ("api.groq.com", D.llm_provider),
        ("api.x.ai", D.llm_provider),
        ("example.com", D.public_internet),
        ("8.8.8.8", D.public_internet),
        ("[2001:4860:4860::8888]:443", D.public_internet),
        ("2001:4860:4860::8888", D.public_internet),
        ("s3.amazonaws.com", D.public_internet),
        ("bücher.example", D.public_internet),
        ("", D.unknown),
        ("   ", D.unknown),
        ("bad host!", D.unknown),
        ("-leading.example", D.unknown),
        ("[::1", D.unknown),
        ("host:notaport", D.unknown),
        ("224.0.0.1", D.unknown),
        ("a" * 64 + ".example", D.unknown),
    ],
)
def test_classify(host: str, expected: D) -> None:
    assert classify(host, RULES) is expected


def test_rules_from_lists_normalise_input() -> None:
    rules = DestinationRules.from_lists(
        sink_domains=[" Sink.Example. ", ""], tool_domains=[".Tools.IO"]
    )
    assert rules.sink_domains == frozenset({"sink.example"})
    assert rules.tool_domains == frozenset({"tools.io"})


def test_empty_rules_still_know_the_builtins() -> None:
    empty = DestinationRules()
    assert classify("attacker-sink.local", empty) is D.internal_api  # only a sink when configured
    assert classify("api.cohere.com", empty) is D.llm_provider
