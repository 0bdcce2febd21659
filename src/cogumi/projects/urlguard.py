"""Outbound-URL guard: which URLs the server may call on a customer's behalf.

The server calls URLs that users type in (agent test endpoints now, webhooks
later). Without a guard that is a server-side request forgery hole: a user
could make the server read cloud credentials from the metadata service or
probe the private network it runs in. The rules:

* only ``http`` and ``https``, a host, no credentials in the URL, at most
  2048 characters;
* link-local (169.254.0.0/16, fe80::/10), cloud-metadata addresses
  (169.254.169.254, fd00:ec2::254, 100.100.100.200, metadata.google.internal),
  multicast, broadcast and reserved ranges are always refused;
* loopback, RFC 1918, CGNAT (100.64.0.0/10), unique-local (fc00::/7) and
  unspecified addresses are refused unless private targets are allowed
  (``settings.private_targets_allowed``: on in embedded mode, off in hosted);
* every address the host resolves to (all A and AAAA records) must pass, and
  callers connect to one of the checked addresses (:attr:`Target.pinned_url`),
  so a DNS answer that changes between check and connect cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}

METADATA_HOSTNAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_ALWAYS_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # link-local (cloud metadata lives here)
        "fe80::/10",  # IPv6 link-local
        "224.0.0.0/4",  # multicast
        "ff00::/8",  # IPv6 multicast
        "240.0.0.0/4",  # reserved, includes 255.255.255.255
    )
)
_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",  # loopback
        "::1/128",
        "10.0.0.0/8",  # RFC 1918
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT
        "fc00::/7",  # unique local
        "0.0.0.0/8",  # "this network", includes the unspecified 0.0.0.0
        "::/128",  # unspecified
    )
)


class UrlRefused(Exception):
    """The URL may not be called; ``reason`` is readable, ``kind`` is machine-friendly.

    ``kind`` is ``invalid_url`` (malformed), ``blocked`` (a forbidden target)
    or ``unresolvable`` (DNS gave no usable answer).
    """

    def __init__(self, reason: str, *, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class ParsedUrl:
    """A URL that passed the static checks."""

    url: str
    scheme: str
    host: str
    port: int
    parts: SplitResult

    @property
    def host_header(self) -> str:
        """``Host`` header value: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


@dataclass(frozen=True)
class Target:
    """A URL with the checked addresses it resolved to."""

    parsed: ParsedUrl
    addresses: tuple[IPAddress, ...]

    @property
    def pinned_url(self) -> str:
        """The URL with its host replaced by the first checked address (connect there)."""
        address = self.addresses[0]
        host = f"[{address}]" if address.version == 6 else str(address)
        parts = self.parsed.parts
        return urlunsplit((parts.scheme, f"{host}:{self.parsed.port}", parts.path, parts.query, ""))


def _unwrap(address: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 (``::ffff:169.254.169.254``) is judged as the IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why ``address`` may not be called, or None when it may."""
    address = _unwrap(address)
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    if any(address in net for net in _ALWAYS_REFUSED):
        return f"{address} is a link-local, multicast or reserved address"
    if not allow_private and any(address in net for net in _PRIVATE):
        return f"{address} is a private, loopback or unspecified address (private targets are not allowed)"
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _split(url: str) -> SplitResult:
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"URL is longer than {MAX_URL_LENGTH} characters", kind="invalid_url")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UrlRefused("URL contains whitespace or control characters", kind="invalid_url")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise UrlRefused(f"URL is malformed: {exc}", kind="invalid_url") from exc
    return parts


def _check_parts(parts: SplitResult) -> tuple[str, str, int]:
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UrlRefused("only http and https URLs are allowed", kind="invalid_url")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("URL must not contain credentials", kind="invalid_url")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UrlRefused("URL has no host", kind="invalid_url")
    if parts.fragment:
        raise UrlRefused("URL must not contain a fragment", kind="invalid_url")
    port = parts.port or DEFAULT_PORTS[scheme]
    if port == 0:
        raise UrlRefused("URL port must be between 1 and 65535", kind="invalid_url")
    return scheme, host, port


def check_static(url: str, *, allow_private: bool) -> ParsedUrl:
    """Checks that need no network: shape, scheme, credentials, IP literals, metadata names."""
    parts = _split(url)
    scheme, host, port = _check_parts(parts)
    if host in METADATA_HOSTNAMES:
        raise UrlRefused(f"{host} is a cloud metadata host", kind="blocked")
    literal = _literal(host)
    if literal is not None:
        reason = address_refusal(literal, allow_private=allow_private)
        if reason is not None:
            raise UrlRefused(reason, kind="blocked")
    return ParsedUrl(url=url, scheme=scheme, host=host, port=port, parts=parts)


async def resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    """All A/AAAA addresses of ``host`` (an IP literal resolves to itself)."""
    literal = _literal(host)
    if literal is not None:
        return (literal,)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlRefused(f"could not resolve host {host}", kind="unresolvable") from exc
    seen: dict[IPAddress, None] = {}
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            seen[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    if not seen:
        raise UrlRefused(f"host {host} has no IPv4 or IPv6 address", kind="unresolvable")
    return tuple(seen)


async def check(url: str, *, allow_private: bool) -> Target:
    """Static checks, then resolve and refuse if ANY resolved address is forbidden."""
    parsed = check_static(url, allow_private=allow_private)
    addresses = await resolve(parsed.host, parsed.port)
    for address in addresses:
        reason = address_refusal(address, allow_private=allow_private)
        if reason is not None:
            raise UrlRefused(f"{parsed.host} resolves to {reason}", kind="blocked")
    return Target(parsed=parsed, addresses=addresses)
