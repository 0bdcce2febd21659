"""Options of ``cogumi scan``: declared once, resolved from flags > env > YAML file.

The declarations reuse the sidecar's option machinery (same precedence rules,
same YAML key forms: ``sink_domains``, ``sink-domains`` or the flag name), so
a scan config file reads like a sidecar config file. Everything a user can
get wrong is checked here, before any server, store or campaign starts, and
reported as a :class:`UsageError` naming the flag (exit code 2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cogumi.scan.report import FAIL_ON
from cogumi.sidecar.options import OptionsError, OptionSpec, build_parser, check_listen, merge

FORMATS = ("json", "md", "sarif", "junit")
ADAPTERS = ("native", "openai", "template")
INTENSITIES = ("low", "med", "high")
DEFAULT_SCRIPTS = ("S1", "S2", "S3", "S4", "S5")


class UsageError(Exception):
    """The command line (or config file) cannot be run as given; exit code 2."""


class ConnectionProblem(Exception):
    """The target or the server cannot be used; the message says why (exit code 2)."""


class JsonText(str):
    """A JSON value given as text on the command line or as a mapping in the YAML file."""

    __slots__ = ()

    def __new__(cls, value: Any) -> JsonText:
        return super().__new__(cls, value if isinstance(value, str) else json.dumps(value))


SPECS: tuple[OptionSpec, ...] = (
    OptionSpec("target", str, None, "Agent endpoint to attack (the native contract's base URL, or the OpenAI/template URL).", metavar="URL"),
    OptionSpec("adapter", str, "native", "How to talk to the target: native, openai or template.", metavar="KIND"),
    OptionSpec("model", str, None, "Model name (openai adapter).", metavar="NAME"),
    OptionSpec("api_key_env", str, None, "Name of the environment variable holding the target's API key (openai adapter).", metavar="VAR"),
    OptionSpec("request_template", JsonText, None, "JSON body with {{message}} where the attack goes (template adapter).", metavar="JSON"),
    OptionSpec("response_path", str, None, "Dotted path to the reply text in the answer, e.g. choices.0.message.content (template adapter).", metavar="PATH"),
    OptionSpec("sidecar_listen", str, None, "Run a sidecar in this process on HOST:PORT; start your agent with HTTP_PROXY and HTTPS_PROXY set to http://HOST:PORT so its network calls become evidence.", metavar="HOST:PORT"),
    OptionSpec("sink_domains", list, [], "Attacker sink domain (repeatable; default attacker-sink.local).", metavar="DOMAIN"),
    OptionSpec("tool_domains", list, [], "Domain of one of the agent's tools (repeatable).", metavar="DOMAIN"),
    OptionSpec("internal_suffixes", list, [], "Internal domain suffix (repeatable).", metavar="SUFFIX"),
    OptionSpec("sensitive_paths", list, [], "Sensitive path pattern such as /admin (repeatable).", metavar="PATTERN"),
    OptionSpec("intensity", str, None, "Prompt variants per step: low, med or high (1/2/3). Default low (with --server: the project's).", metavar="LEVEL"),
    OptionSpec("scripts", list, [], "Scripts to run, comma-separated: S1..S5, P01..P16, custom ids (default S1..S5; with --server: the project's).", metavar="IDS"),
    OptionSpec("scripts_file", str, None, "YAML or JSON file of custom techniques and scripts (the attack library format).", metavar="FILE"),
    OptionSpec("format", str, "json", "Output format: json, md, sarif (SARIF 2.1.0) or junit (JUnit XML).", metavar="FORMAT"),
    OptionSpec("out", str, None, "Write the report to FILE instead of stdout.", metavar="FILE"),
    OptionSpec("data_dir", str, None, "Keep the embedded store in DIR (default: a temporary directory, removed afterwards).", metavar="DIR"),
    OptionSpec("fail_on", str, "high", "Exit 1 when a finding is at least this severe: critical, high, medium, low, info or none.", metavar="SEVERITY"),
    OptionSpec("server", str, None, "Run the campaign on this COGUMI server instead of an embedded store.", "COGUMI_SERVER", metavar="URL"),
    OptionSpec("api_key", str, None, "API key (cgk_...) for --server; prefer the environment variable.", "COGUMI_API_KEY", metavar="KEY"),
    OptionSpec("project", str, None, "Project id on --server.", "COGUMI_PROJECT", metavar="ID"),
)  # fmt: skip

SCAN_DESCRIPTION = (
    "Run one red-team campaign against an agent and print what it proved. "
    "Exit codes: 0 clean, 1 findings at or above --fail-on, 2 usage or connection error."
)
_PROJECT_FLAGS = {
    "agent_test_url": "--target", "adapter": "--adapter", "model": "--model",
    "api_key_env": "--api-key-env", "request_template": "--request-template",
    "response_path": "--response-path", "sink_domains": "--sink-domain",
    "tool_domains": "--tool-domain", "internal_suffixes": "--internal-suffix",
    "sensitive_paths": "--sensitive-path",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ScanOptions:
    target: str | None = None
    adapter: str = "native"
    model: str | None = None
    api_key_env: str | None = None
    request_template: str | None = None
    response_path: str | None = None
    sidecar_listen: str | None = None
    sink_domains: tuple[str, ...] = ()
    tool_domains: tuple[str, ...] = ()
    internal_suffixes: tuple[str, ...] = ()
    sensitive_paths: tuple[str, ...] = ()
    intensity: str | None = None
    scripts: tuple[str, ...] = ()
    scripts_file: str | None = None
    format: str = "json"
    out: str | None = None
    data_dir: str | None = None
    fail_on: str = "high"
    server: str | None = None
    api_key: str | None = field(default=None, repr=False)
    project: str | None = None
    custom_document: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def remote(self) -> bool:
        return self.server is not None

    def adapter_config(self) -> dict[str, Any]:
        """The project's ``adapter`` field for these options."""
        config: dict[str, Any] = {"kind": self.adapter}
        if self.adapter == "openai":
            config["model"] = self.model
            if self.api_key_env:
                config["api_key_env"] = self.api_key_env
        elif self.adapter == "template":
            config["request_template"] = json.loads(self.request_template or "null")
            config["response_path"] = self.response_path
        return config

    def project_fields(self) -> dict[str, Any]:
        """Body of the internal project (validated by ``ProjectCreate``)."""
        fields: dict[str, Any] = {
            "agent_test_url": self.target,
            "adapter": self.adapter_config(),
            "tool_domains": list(self.tool_domains),
            "internal_suffixes": list(self.internal_suffixes),
            "sensitive_paths": list(self.sensitive_paths),
        }
        if self.sink_domains:
            fields["sink_domains"] = list(self.sink_domains)
        return fields


def flag_of(location: Sequence[Any]) -> str:
    """The scan flag behind a project field's validation error location."""
    for part in reversed([str(p) for p in location]):
        if part in _PROJECT_FLAGS:
            return _PROJECT_FLAGS[part]
    return "--" + str(location[0]).replace("_", "-") if location else "options"


def _choice(value: str, allowed: Sequence[str], flag: str) -> str:
    value = value.strip().lower()
    if value not in allowed:
        raise UsageError(f"{flag}: expected one of {', '.join(allowed)}, got {value!r}")
    return value


def _script_ids(values: Sequence[str]) -> tuple[str, ...]:
    ids = [part.strip() for value in values for part in value.split(",") if part.strip()]
    return tuple(dict.fromkeys(ids))


def _check_format(value: str) -> str:
    return _choice(value.strip().lower(), FORMATS, "--format")


def load_scripts_file(path: str) -> dict[str, Any]:
    """Read a custom library document; YAML is a superset of JSON, so one parser reads both."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--scripts-file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"--scripts-file {path}: not valid YAML or JSON: {exc}") from exc
    if not isinstance(loaded, dict):
        raise UsageError(f"--scripts-file {path}: expected a mapping with techniques and scripts")
    return loaded


def _check_modes(values: dict[str, Any]) -> None:
    if values.get("server"):
        missing = [f"--{n.replace('_', '-')}" for n in ("api_key", "project") if not values.get(n)]
        if missing:
            raise UsageError(f"--server needs {' and '.join(missing)}")
        local = [
            n for n in ("target", "sidecar_listen", "scripts_file", "data_dir") if values.get(n)
        ]
        if local:
            flags = ", ".join("--" + n.replace("_", "-") for n in local)
            raise UsageError(
                f"{flags}: not used with --server (the server's project holds its target "
                "and settings; custom scripts are saved on the server)"
            )
        return
    if not values.get("target"):
        raise UsageError("--target URL is required (or --server, --api-key and --project)")


def _check_adapter(values: dict[str, Any]) -> None:
    adapter = values["adapter"]
    if adapter == "openai" and not values.get("model"):
        raise UsageError("--adapter openai needs --model")
    if adapter == "template":
        if not values.get("request_template") or not values.get("response_path"):
            raise UsageError("--adapter template needs --request-template and --response-path")
        try:
            template = json.loads(values["request_template"])
        except ValueError as exc:
            raise UsageError(f"--request-template: not valid JSON ({exc})") from exc
        if not isinstance(template, dict):
            raise UsageError("--request-template: expected a JSON object")


def resolve(
    flags: Mapping[str, Any], env: Mapping[str, str], config_file: str | None
) -> ScanOptions:
    """Merge and check every option; raises :class:`UsageError` naming the flag."""
    try:
        values = merge(flags, env, config_file, SPECS)
    except OptionsError as exc:
        raise UsageError(str(exc)) from exc
    values["adapter"] = _choice(values.get("adapter", "native"), ADAPTERS, "--adapter")
    if values.get("intensity") is not None:
        values["intensity"] = _choice(values["intensity"], INTENSITIES, "--intensity")
    values["fail_on"] = _choice(values.get("fail_on", "high"), FAIL_ON, "--fail-on")
    values["format"] = _check_format(values.get("format", "json"))
    values["scripts"] = _script_ids(values.get("scripts", ()))
    if values.get("sidecar_listen"):
        try:
            check_listen(values["sidecar_listen"], "--sidecar-listen")
        except OptionsError as exc:
            raise UsageError(str(exc)) from exc
    _check_modes(values)
    _check_adapter(values)
    if values.get("scripts_file"):
        values["custom_document"] = load_scripts_file(values["scripts_file"])
    return ScanOptions(**values)


def parse(argv: Sequence[str], env: Mapping[str, str]) -> ScanOptions:
    """``cogumi scan`` arguments -> options (argparse itself exits 2 on unknown flags)."""
    parser = build_parser(SPECS, prog="cogumi scan", description=SCAN_DESCRIPTION)
    namespace = vars(parser.parse_args(list(argv)))
    config_file = namespace.pop("config", None)
    return resolve(namespace, env, config_file)
