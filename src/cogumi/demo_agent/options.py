"""Options of ``cogumi demo-agent``: profiles, flaw switches, addresses.

Profiles are named sets of flaws (plus, for the trap profiles, a way of
refusing that looks alarming but proves nothing). ``--flaw`` adds flaws; when
``--flaw`` is given without ``--profile`` the base is ``hardened``, so
``--flaw leak-key`` means "only that flaw".
"""

from __future__ import annotations

import argparse
import enum
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


class OptionsError(ValueError):
    """A bad option value; the message names the option."""


class Flaw(enum.StrEnum):
    leak_key = "leak-key"
    reveal_system_prompt = "reveal-system-prompt"
    poisonable_memory = "poisonable-memory"
    exfiltrate = "exfiltrate"
    destructive_calls = "destructive-calls"
    follows_injection = "follows-injection"


class Trap(enum.StrEnum):
    """How a trap profile refuses: each one looks like evidence and is not."""

    quote = "quote"  # quotes the attack message verbatim
    sink_name = "sink-name"  # names the sink domain
    placeholder = "placeholder"  # shows a documentation placeholder key
    benign_traffic = "benign-traffic"  # makes harmless tool calls every step


PROFILES: dict[str, tuple[frozenset[Flaw], Trap | None]] = {
    "hardened": (frozenset(), None),
    "vulnerable": (frozenset(Flaw), None),
    "trap-quote": (frozenset(), Trap.quote),
    "trap-sink-name": (frozenset(), Trap.sink_name),
    "trap-placeholder": (frozenset(), Trap.placeholder),
    "trap-benign-traffic": (frozenset(), Trap.benign_traffic),
}
DEFAULT_PROFILE = "vulnerable"
DEFAULT_SINK = "attacker-sink.local"
SECRET_ENV = "DEMO_AGENT_SECRET"


def generate_secret() -> str:
    """A fake OpenAI-style project key, random enough for the secret detector."""
    alphabet = string.ascii_letters + string.digits
    while True:
        body = "".join(secrets.choice(alphabet) for _ in range(48))
        if (
            any(c.isupper() for c in body)
            and any(c.islower() for c in body)
            and any(c.isdigit() for c in body)
        ):
            return "sk-proj-" + body


@dataclass(frozen=True, slots=True)
class DemoOptions:
    listen: str = "127.0.0.1:8700"
    tool_api_listen: str = "127.0.0.1:0"
    profile: str = DEFAULT_PROFILE
    flaws: frozenset[Flaw] = frozenset(Flaw)
    trap: Trap | None = None
    secret: str = field(default_factory=generate_secret, repr=False)
    sink_domain: str = DEFAULT_SINK
    memory_file: str | None = None
    memory_scope: str = "run"
    latency_ms: int = 0
    downgrade_https: bool = False
    llm_base_url: str | None = None
    llm_model: str = "gpt-4o-mini"
    llm_api_key_env: str | None = None
    llm_timeout: float = 30.0
    log_level: str = "warning"

    def has(self, flaw: Flaw) -> bool:
        return flaw in self.flaws


def split_address(value: str, option: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise OptionsError(f"{option}: expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cogumi demo-agent",
        description="A deliberately vulnerable, tool-using agent with switchable flaws, "
        "for demos and tests. Its tool calls honour HTTP_PROXY (point it at the sidecar).",
    )
    add = parser.add_argument
    add("--listen", default="127.0.0.1:8700", metavar="HOST:PORT",
        help="Address of the agent test endpoint (default: 127.0.0.1:8700; port 0 = any free port).")  # fmt: skip
    add("--tool-api-listen", default="127.0.0.1:0", metavar="HOST:PORT",
        help="Address of the agent's own tool API (default: a free loopback port).")  # fmt: skip
    add("--profile", choices=sorted(PROFILES), default=None,
        help=f"Named behaviour (default: {DEFAULT_PROFILE}, or hardened when --flaw is given).")  # fmt: skip
    add("--flaw", action="append", default=[], choices=[f.value for f in Flaw],
        help="Turn one flaw on (repeatable); added to the profile's flaws.")  # fmt: skip
    add("--secret", default=None, metavar="VALUE",
        help=f"The key the agent guards (default: env {SECRET_ENV}, else a generated fake sk-proj- key). "
        "Pass a canary minted by the platform to make every leak exact.")  # fmt: skip
    add("--sink-domain", default=DEFAULT_SINK, metavar="DOMAIN",
        help=f"Collector used when an exfiltration request names no destination, and named by trap-sink-name (default: {DEFAULT_SINK}).")  # fmt: skip
    add("--memory-file", default=None, metavar="PATH",
        help="JSON file holding long-term memory, kept across sessions and restarts (default: in memory only).")  # fmt: skip
    add("--memory-scope", choices=["run", "global"], default="run",
        help="'run' keeps one memory per run_id, so every campaign starts clean; 'global' shares it (default: run).")  # fmt: skip
    add("--latency-ms", type=int, default=0, metavar="N",
        help="Answer every message after N ms (fixed reply latency for benchmarks).")  # fmt: skip
    add("--downgrade-https", action="store_true",
        help="Send https:// tool URLs as plain http:// (an HTTP tool without TLS), so the sidecar "
        "sees the payload; without it, HTTPS goes through CONNECT and only the host is visible.")  # fmt: skip
    add("--llm-base-url", default=None, metavar="URL",
        help="OpenAI-compatible base URL (e.g. http://host/v1): replies come from that model; tools stay rule-driven.")  # fmt: skip
    add("--llm-model", default="gpt-4o-mini", metavar="NAME", help="Model name for --llm-base-url.")
    add("--llm-api-key-env", default=None, metavar="VAR",
        help="Name of the environment variable holding the model API key (sent as a Bearer token).")  # fmt: skip
    add("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return parser


def from_argv(argv: Sequence[str], env: Mapping[str, str]) -> DemoOptions:
    """Parse flags (argparse exits 2 on unknown flags or bad choices)."""
    ns = build_parser().parse_args(list(argv))
    split_address(ns.listen, "--listen")
    split_address(ns.tool_api_listen, "--tool-api-listen")
    if ns.latency_ms < 0:
        raise OptionsError("--latency-ms: must be at least 0")
    profile = ns.profile or ("hardened" if ns.flaw else DEFAULT_PROFILE)
    base, trap = PROFILES[profile]
    secret = ns.secret or env.get(SECRET_ENV) or generate_secret()
    if len(secret.strip()) < 8 or any(c.isspace() for c in secret):
        raise OptionsError("--secret: expected at least 8 characters and no spaces")
    sink = ns.sink_domain.strip().lower().rstrip(".")
    if not sink or "/" in sink or " " in sink:
        raise OptionsError(f"--sink-domain: expected a domain name, got {ns.sink_domain!r}")
    return DemoOptions(
        listen=ns.listen,
        tool_api_listen=ns.tool_api_listen,
        profile=profile,
        flaws=base | {Flaw(f) for f in ns.flaw},
        trap=trap,
        secret=secret,
        sink_domain=sink,
        memory_file=ns.memory_file,
        memory_scope=ns.memory_scope,
        latency_ms=ns.latency_ms,
        downgrade_https=ns.downgrade_https,
        llm_base_url=ns.llm_base_url.rstrip("/") if ns.llm_base_url else None,
        llm_model=ns.llm_model,
        llm_api_key_env=ns.llm_api_key_env,
        log_level=ns.log_level,
    )
