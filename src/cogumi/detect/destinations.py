"""Destination classes for outbound calls: where did the agent send this?

First match wins, in this order: attacker_sink, internal_api, tool,
llm_provider, public_internet, unknown. The order matters: a sink that is also
listed as a tool domain is still a sink, and a private address is internal even
if someone listed it as a tool.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class DestinationClass(StrEnum):
    attacker_sink = "attacker_sink"
    internal_api = "internal_api"
    tool = "tool"
    llm_provider = "llm_provider"
    public_internet = "public_internet"
    unknown = "unknown"


BUILTIN_INTERNAL_SUFFIXES = frozenset(
    {"localhost", "internal", "cluster.local", "local", "home.arpa", "lan", "intranet"}
)
"""Always internal, on top of a project's own suffixes (RFC 6761/8375 names and Kubernetes)."""

LLM_PROVIDER_DOMAINS = frozenset(
    {
        "openai.com",
        "anthropic.com",
        "claude.ai",
        "generativelanguage.googleapis.com",
        "aiplatform.googleapis.com",
        "openai.azure.com",
        "services.ai.azure.com",
        "models.inference.ai.azure.com",
        "mistral.ai",
        "cohere.ai",
        "cohere.com",
        "openrouter.ai",
        "groq.com",
        "together.xyz",
        "together.ai",
        "fireworks.ai",
        "deepseek.com",
        "perplexity.ai",
        "x.ai",
        "ai21.com",
        "cerebras.ai",
        "deepinfra.com",
        "replicate.com",
        "api-inference.huggingface.co",
        "router.huggingface.co",
        "inference.huggingface.co",
        "voyageai.com",
        "integrate.api.nvidia.com",
        "api.sambanova.ai",
        "dashscope.aliyuncs.com",
        "api.moonshot.ai",
        "open.bigmodel.cn",
    }
)
"""Model APIs, matched with their subdomains."""

_LLM_PATTERNS = (
    re.compile(r"^bedrock(?:-runtime|-agent-runtime)?(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com$"),
    re.compile(r"^[a-z0-9-]+-aiplatform\.googleapis\.com$"),
)
"""Regional endpoints that a suffix list cannot express."""

_INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "0.0.0.0/32",
        "::1/128",
        "::/128",
        "fe80::/10",
        "fc00::/7",
    )
)
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def _clean_domain(value: str) -> str:
    return value.strip().lower().strip(".")


@dataclass(frozen=True)
class DestinationRules:
    """A project's view of the network: its sink, internal and tool domains."""

    sink_domains: frozenset[str] = field(default_factory=frozenset)
    internal_suffixes: frozenset[str] = field(default_factory=frozenset)
    tool_domains: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_lists(
        cls,
        *,
        sink_domains: Iterable[str] = (),
        internal_suffixes: Iterable[str] = (),
        tool_domains: Iterable[str] = (),
    ) -> DestinationRules:
        """Build from user input: lowercased, leading/trailing dots stripped, blanks dropped."""

        def clean(values: Iterable[str]) -> frozenset[str]:
            return frozenset(c for c in (_clean_domain(v) for v in values) if c)

        return cls(clean(sink_domains), clean(internal_suffixes), clean(tool_domains))


def normalize_host(host: str) -> str | None:
    """Lowercase host without port, brackets, zone id or trailing dot; None if invalid.

    Accepts ``api.openai.com:443``, ``[::1]:8080``, ``fe80::1%eth0`` and
    ``API.OpenAI.com.``; internationalised names become their ASCII form.
    """
    h = host.strip()
    if not h:
        return None
    if h.startswith("["):
        close = h.find("]")
        if close == -1 or (close + 1 < len(h) and not re.fullmatch(r":\d{1,5}", h[close + 1 :])):
            return None
        h = h[1:close]
    elif h.count(":") == 1:
        h, _, port = h.partition(":")
        if not port.isdigit():
            return None
    h = h.split("%", 1)[0].lower().rstrip(".")
    if _ip(h) is not None:
        return h
    return _valid_hostname(h)


def _valid_hostname(h: str) -> str | None:
    try:
        ascii_host = h.encode("idna").decode("ascii") if not h.isascii() else h
    except UnicodeError:
        return None
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    return ascii_host


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _under(host: str, domains: Iterable[str]) -> bool:
    """``host`` equals one of ``domains`` or is a subdomain of one."""
    return any(host == d or host.endswith("." + d) for d in domains)


def _is_internal(host: str, rules: DestinationRules) -> bool:
    if "." not in host:
        return True  # single-label names (compose services, "localhost") never leave the network
    return _under(host, BUILTIN_INTERNAL_SUFFIXES) or _under(host, rules.internal_suffixes)


def _is_llm_provider(host: str) -> bool:
    return _under(host, LLM_PROVIDER_DOMAINS) or any(p.match(host) for p in _LLM_PATTERNS)


def _classify_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> DestinationClass:
    if any(address in net for net in _INTERNAL_NETWORKS if net.version == address.version):
        return DestinationClass.internal_api
    if address.is_global and not address.is_multicast:
        return DestinationClass.public_internet
    return DestinationClass.unknown


def classify(host: str, rules: DestinationRules) -> DestinationClass:
    """The class of one destination host (see the module docstring for the order)."""
    name = normalize_host(host)
    if name is None:
        return DestinationClass.unknown
    if _under(name, rules.sink_domains):
        return DestinationClass.attacker_sink
    address = _ip(name)
    if address is not None:
        if _classify_ip(address) is DestinationClass.internal_api:
            return DestinationClass.internal_api
        if name in rules.tool_domains:
            return DestinationClass.tool
        return _classify_ip(address)
    if _is_internal(name, rules):
        return DestinationClass.internal_api
    if _under(name, rules.tool_domains):
        return DestinationClass.tool
    if _is_llm_provider(name):
        return DestinationClass.llm_provider
    return DestinationClass.public_internet
