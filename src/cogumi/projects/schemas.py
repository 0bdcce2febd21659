"""Request and response bodies of the projects API, with every field validated.

Lists of hosts are lowercased, stripped of trailing dots and deduplicated on
the way in, so what is stored is what the sidecar and the engine compare with.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import AfterValidator, Field, StrictBool, StringConstraints, field_validator

from cogumi.projects import urlguard
from cogumi.projects.models import Environment, TokenStatus
from cogumi.schemas import Input, Output

MAX_LIST_ITEMS = 100
BUILTIN_SCRIPTS = ("S1", "S2", "S3", "S4", "S5")
SCRIPT_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
RESPONSE_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MESSAGE_PLACEHOLDER = "{{message}}"
MAX_TEMPLATE_BYTES = 16_384

AttackStyle = Literal[
    "incident_urgent",
    "security_impersonation",
    "helpful_developer",
    "authority_executive",
    "roleplay_fiction",
    "polite_persistent",
]
Intensity = Literal["low", "med", "high"]
ATTACK_STYLES: tuple[AttackStyle, ...] = get_args(AttackStyle)


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


ProjectName = Annotated[
    str, StringConstraints(min_length=1, max_length=120), AfterValidator(_no_control)
]
Description = Annotated[str, StringConstraints(max_length=2000)]


def normalize_hostname(value: str) -> str:
    """Lowercase, drop one leading ``.``/``*.`` and a trailing dot; check every label."""
    host = value.strip().lower().removeprefix("*.").removeprefix(".").rstrip(".")
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as exc:
        raise ValueError(f"{value!r} is not a valid hostname") from exc
    labels = host.split(".")
    if not host or len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{value!r} is not a valid hostname or domain suffix")
    return host


def _dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _hosts(values: list[str]) -> list[str]:
    return _dedupe([normalize_hostname(v) for v in values])


def _paths(values: list[str]) -> list[str]:
    for value in values:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with '/'")
        if any(ch.isspace() for ch in value) or _CONTROL.search(value):
            raise ValueError(f"{value!r} must not contain whitespace or control characters")
    return _dedupe(values)


HostList = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=253)]],
    Field(max_length=MAX_LIST_ITEMS),
    AfterValidator(_hosts),
]
PathList = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=256)]],
    Field(max_length=MAX_LIST_ITEMS),
    AfterValidator(_paths),
]
SinkList = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=253)]],
    Field(min_length=1, max_length=MAX_LIST_ITEMS),
    AfterValidator(_hosts),
]


def _agent_url(value: str) -> str:
    """Static URL-guard checks only; private targets are checked with the settings later."""
    try:
        urlguard.check_static(value, allow_private=True)
    except urlguard.UrlRefused as exc:
        raise ValueError(exc.reason) from exc
    return value


AgentUrl = Annotated[
    str, StringConstraints(min_length=1, max_length=2048), AfterValidator(_agent_url)
]


class NativeAdapter(Input):
    """The native agent-endpoint contract: ``POST {url}/message`` and ``POST {url}/health``."""

    kind: Literal["native"]


class OpenAIAdapter(Input):
    """An OpenAI-compatible chat-completions endpoint at the agent test URL."""

    kind: Literal["openai"]
    model: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=MODEL_NAME)]
    api_key_env: (
        Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=ENV_NAME)] | None
    ) = Field(
        default=None,
        description="Name of the environment variable holding the key on the worker; "
        "never the key itself.",
    )


class TemplateAdapter(Input):
    """Any JSON HTTP endpoint: a request template with ``{{message}}`` and a response path."""

    kind: Literal["template"]
    request_template: dict[str, Any] = Field(
        description=f"JSON body sent to the agent; the string {MESSAGE_PLACEHOLDER} is "
        "replaced by the adversary message."
    )
    response_path: Annotated[
        str, StringConstraints(min_length=1, max_length=256, pattern=RESPONSE_PATH)
    ] = Field(description="Dotted path to the reply text, e.g. `choices.0.message.content`.")

    @field_validator("request_template")
    @classmethod
    def _template(cls, value: dict[str, Any]) -> dict[str, Any]:
        encoded = json.dumps(value)
        if len(encoded.encode()) > MAX_TEMPLATE_BYTES:
            raise ValueError(f"must be at most {MAX_TEMPLATE_BYTES} bytes as JSON")
        if MESSAGE_PLACEHOLDER not in encoded:
            raise ValueError(f"must contain the placeholder {MESSAGE_PLACEHOLDER}")
        return value


Adapter = Annotated[NativeAdapter | OpenAIAdapter | TemplateAdapter, Field(discriminator="kind")]


def _scripts(values: list[str]) -> list[str]:
    for value in values:
        if not SCRIPT_ID.match(value):
            raise ValueError(f"{value!r} is not a script id (S1..S5 or letters, digits, _ . -)")
    return _dedupe(values)


class RedteamConfig(Input):
    """Which attack styles and scripts a campaign uses, and how many variants per step."""

    styles: Annotated[list[AttackStyle], Field(min_length=1, max_length=len(ATTACK_STYLES))] = (
        Field(default_factory=lambda: list(ATTACK_STYLES))
    )
    intensity: Intensity = "med"
    scripts: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=64)]],
        Field(min_length=1, max_length=MAX_LIST_ITEMS),
        AfterValidator(_scripts),
    ] = Field(default_factory=lambda: list(BUILTIN_SCRIPTS))

    @field_validator("styles")
    @classmethod
    def _unique_styles(cls, value: list[str]) -> list[str]:
        return _dedupe(value)


class ProjectCreate(Input):
    name: ProjectName
    description: Description = ""
    environment: Environment = Environment.sandbox
    agent_test_url: AgentUrl | None = None
    adapter: Adapter = Field(default_factory=lambda: NativeAdapter(kind="native"))
    tool_domains: HostList = Field(default_factory=list)
    internal_suffixes: HostList = Field(default_factory=list)
    sensitive_paths: PathList = Field(default_factory=list)
    sink_domains: SinkList = Field(default_factory=lambda: ["attacker-sink.local"])
    retention_days: int = Field(default=7, ge=1, le=365)
    redteam: RedteamConfig = Field(default_factory=RedteamConfig)


class ProjectUpdate(Input):
    """Only the fields sent change; ``agent_test_url: null`` clears it, other nulls are errors."""

    name: ProjectName | None = None
    description: Description | None = None
    environment: Environment | None = None
    agent_test_url: AgentUrl | None = None
    adapter: Adapter | None = None
    tool_domains: HostList | None = None
    internal_suffixes: HostList | None = None
    sensitive_paths: PathList | None = None
    sink_domains: SinkList | None = None
    retention_days: int | None = Field(default=None, ge=1, le=365)
    redteam: RedteamConfig | None = None

    NULLABLE: ClassVar[frozenset[str]] = frozenset({"agent_test_url"})

    def changes(self) -> dict[str, Any]:
        """The sent fields as plain data; raises ValueError naming a field sent as null."""
        data = self.model_dump(mode="json", include=self.model_fields_set)
        for name, value in data.items():
            if value is None and name not in self.NULLABLE:
                raise ValueError(name)
        return data


class ProjectOut(Output):
    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    description: str
    environment: Environment
    agent_test_url: str | None
    adapter: dict[str, Any]
    tool_domains: list[str]
    internal_suffixes: list[str]
    sensitive_paths: list[str]
    sink_domains: list[str]
    retention_days: int
    redteam: dict[str, Any]
    prod_override_enabled: bool
    prod_override_by: uuid.UUID | None
    prod_override_at: datetime | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class ProjectList(Output):
    items: list[ProjectOut]


class ProdConfirmations(Input):
    """Each must be the JSON ``true`` itself: ``1`` or ``"yes"`` is no explicit confirmation."""

    not_customer_facing: StrictBool = Field(
        default=False, description="This environment does not serve customer-facing traffic."
    )
    no_real_customer_secrets: StrictBool = Field(
        default=False, description="No real customer secrets are present in this environment."
    )
    accepts_unsafe_behaviour: StrictBool = Field(
        default=False, description="Adversarial prompts may trigger unsafe agent behaviour."
    )


class ProdOverrideIn(Input):
    enabled: StrictBool
    confirmations: ProdConfirmations | None = None


class SidecarTokenCreate(Input):
    name: Annotated[
        str, StringConstraints(min_length=1, max_length=120), AfterValidator(_no_control)
    ]


class SidecarTokenOut(Output):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    prefix: str
    status: TokenStatus
    created_at: datetime
    created_by: uuid.UUID | None
    revoked_at: datetime | None
    last_seen_at: datetime | None
    events_accepted: int
    events_dropped: int


class SidecarTokenIssued(SidecarTokenOut):
    token: str = Field(description="The token itself. Shown once; only a hash is stored.")


class SidecarTokenList(Output):
    items: list[SidecarTokenOut]


class Snippet(Output):
    title: str
    language: str
    filename: str
    content: str


class ConnectSnippets(Output):
    project_id: uuid.UUID
    ingest_url: str
    token_placeholder: str
    snippets: dict[str, Snippet]


class ValidateEndpointIn(Input):
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None, description="URL to test before saving it; default: the project's."
    )


class ValidateEndpointOut(Output):
    ok: bool
    url: str
    latency_ms: float | None
    method: Literal["health", "message"] | None = Field(
        description="Which call answered; null when no request could be sent."
    )
    status_code: int | None
    reason: str
