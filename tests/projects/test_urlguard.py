"""Outbound-URL guard: static rules, address classes, and every resolved address checked."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest

from cogumi.projects import urlguard
from cogumi.projects.urlguard import UrlRefused, address_refusal, check, check_static

ALWAYS_REFUSED = [
    "169.254.169.254",
    "169.254.1.1",
    "fe80::1",
    "fd00:ec2::254",
    "100.100.100.200",
    "::ffff:169.254.169.254",
    "224.0.0.1",
    "255.255.255.255",
]
PRIVATE = [
    "127.0.0.1",
    "::1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "fd12:3456::1",
    "0.0.0.0",
    "::",
    "::ffff:127.0.0.1",
]
PUBLIC = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "100.128.0.1", "172.32.0.1"]


@pytest.mark.parametrize("allow_private", [True, False])
def test_address_classes(allow_private: bool) -> None:
    for text in ALWAYS_REFUSED:
        assert address_refusal(ipaddress.ip_address(text), allow_private=allow_private), text
    for text in PRIVATE:
        refused = address_refusal(ipaddress.ip_address(text), allow_private=allow_private)
        assert (refused is None) is allow_private, text
    for text in PUBLIC:
        assert address_refusal(ipaddress.ip_address(text), allow_private=allow_private) is None


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("ftp://example.com/", "invalid_url"),
        ("file:///etc/passwd", "invalid_url"),
        ("gopher://example.com", "invalid_url"),
        ("http://", "invalid_url"),
        ("http://user:secret@example.com/", "invalid_url"),
        ("http://example.com:99999/", "invalid_url"),
        ("http://example.com/a b", "invalid_url"),
        ("http://example.com/#frag", "invalid_url"),
        ("http://" + "a" * 2050 + ".com", "invalid_url"),
        ("http://metadata.google.internal/computeMetadata/v1/", "blocked"),
        ("http://METADATA.google.internal./", "blocked"),
        ("http://169.254.169.254/latest/meta-data/", "blocked"),
        ("http://[fd00:ec2::254]/", "blocked"),
        ("http://[::ffff:169.254.169.254]/", "blocked"),
        ("http://100.100.100.200/", "blocked"),
    ],
)
def test_static_refusals(url: str, kind: str) -> None:
    for allow_private in (True, False):
        with pytest.raises(UrlRefused) as refused:
            check_static(url, allow_private=allow_private)
        assert refused.value.kind == kind, refused.value.reason


def test_static_private_literal_depends_on_setting() -> None:
    assert check_static("http://127.0.0.1:8000/agent", allow_private=True).port == 8000
    with pytest.raises(UrlRefused, match="private"):
        check_static("http://10.0.0.5/", allow_private=False)
    parsed = check_static("https://Agent.Example.com/x?y=1", allow_private=False)
    assert (parsed.host, parsed.port, parsed.host_header) == (
        "agent.example.com",
        443,
        "agent.example.com",
    )


async def test_localhost_resolves_and_is_judged_by_setting() -> None:
    target = await check("http://localhost:9/", allow_private=True)
    assert ipaddress.ip_address("127.0.0.1") in target.addresses
    assert target.pinned_url.startswith(("http://127.0.0.1:9/", "http://[::1]:9/"))
    with pytest.raises(UrlRefused) as refused:
        await check("http://localhost:9/", allow_private=False)
    assert refused.value.kind == "blocked" and "resolves to" in refused.value.reason


async def test_unresolvable_host() -> None:
    with pytest.raises(UrlRefused) as refused:
        await check("http://no-such-host.invalid/", allow_private=True)
    assert refused.value.kind == "unresolvable"


def _fake_resolver(answers: dict[str, list[str]]) -> Any:
    """Stands in for public DNS, which lives off this machine."""

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        out = []
        for address in answers[host]:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
            out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return out

    return getaddrinfo


async def test_any_bad_address_in_the_answer_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(
        loop,
        "getaddrinfo",
        _fake_resolver(
            {
                "mixed.example": ["93.184.216.34", "169.254.169.254"],
                "v6meta.example": ["2606:2800:220:1::1", "fd00:ec2::254"],
                "public.example": ["93.184.216.34", "2606:2800:220:1::1"],
            }
        ),
    )
    for host in ("mixed.example", "v6meta.example"):
        with pytest.raises(UrlRefused) as refused:
            await check(f"https://{host}/agent", allow_private=True)
        assert refused.value.kind == "blocked"
    target = await check("https://public.example/agent?x=1", allow_private=False)
    assert [str(a) for a in target.addresses] == ["93.184.216.34", "2606:2800:220:1::1"]
    assert target.pinned_url == "https://93.184.216.34:443/agent?x=1"
    assert target.parsed.host_header == "public.example"


def test_metadata_constants_cover_the_documented_addresses() -> None:
    documented = {"169.254.169.254", "fd00:ec2::254", "100.100.100.200"}
    assert {str(a) for a in urlguard.METADATA_ADDRESSES} == documented
    assert "metadata.google.internal" in urlguard.METADATA_HOSTNAMES
