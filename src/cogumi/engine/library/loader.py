"""The attack library's data model: techniques, scripts and steps, loaded from YAML.

Built-in attacks live as YAML beside this module and go through the same pydantic
models as a customer's custom scripts, so a custom script runs exactly like a
built-in one. Validation errors name the offending field
(``scripts.0.steps.1.kind``) and surface as the API's 422 shape.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from cogumi.engine.library.styles import Style, load_styles
from cogumi.engine.observation import StepKind
from cogumi.errors import InvalidInput, validation_fields

Category = Literal[
    "secret_leakage",
    "privileged_action",
    "trust_spoof",
    "memory_poisoning",
    "exfiltration",
    "prompt_injection",
    "jailbreak",
    "privilege_escalation",
    "data_exfiltration",
]
Severity = Literal["critical", "high", "medium", "low", "info"]
SessionLabel = Literal["main", "control", "fresh"]
ScriptKind = Literal["behavioural", "single_prompt"]

PLACEHOLDERS = frozenset({"nonce", "sink_domain", "tool_domain", "sensitive_path"})
"""Names a prompt template may use; the runner fills them per turn (see :func:`fill`)."""

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_B64_SPAN = re.compile(r"\[\[b64\]\](.*?)\[\[/b64\]\]", re.DOTALL)
_OWASP_LLM = r"^LLM(0[1-9]|10):2025$"
_OWASP_AGENTIC = r"^ASI(0[1-9]|10)$"
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

Ident = Annotated[str, StringConstraints(pattern=_ID)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=4000, strip_whitespace=True)]
Title = Annotated[str, StringConstraints(min_length=3, max_length=160, strip_whitespace=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Technique(_Strict):
    """What weakness a script probes, how it is judged, and how to fix it."""

    id: Ident
    title: Title
    category: Category
    severity: Severity
    owasp_llm: list[Annotated[str, StringConstraints(pattern=_OWASP_LLM)]] = Field(min_length=1)
    owasp_agentic: list[Annotated[str, StringConstraints(pattern=_OWASP_AGENTIC)]] = []
    remediation_md: Text
    evaluator: Ident
    description: Text

    @field_validator("evaluator")
    @classmethod
    def _known_evaluator(cls, name: str) -> str:
        from cogumi.engine.evaluators import EVALUATORS

        if name not in EVALUATORS:
            raise ValueError(f"unknown evaluator {name!r} (known: {', '.join(sorted(EVALUATORS))})")
        return name


class Step(_Strict):
    """One adversary message; ``session`` says which conversation it belongs to."""

    id: Ident
    kind: StepKind
    prompt: Text
    session: SessionLabel = "main"
    expects: str = ""

    @field_validator("prompt")
    @classmethod
    def _known_placeholders(cls, prompt: str) -> str:
        unknown = set(_PLACEHOLDER.findall(prompt)) - PLACEHOLDERS
        if unknown:
            allowed = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
            raise ValueError(f"unknown placeholder {sorted(unknown)[0]!r} (allowed: {allowed})")
        return prompt


class Script(_Strict):
    """An ordered conversation plan probing one technique."""

    id: Ident
    title: Title
    technique: Ident
    kind: ScriptKind = "behavioural"
    steps: list[Step] = Field(min_length=1, max_length=8)
    builtin: bool = False

    @model_validator(mode="after")
    def _unique_step_ids(self) -> Script:
        ids = [s.id for s in self.steps]
        if len(ids) != len(set(ids)):
            raise ValueError("step ids must be unique within a script")
        return self


class _Document(_Strict):
    """The shape of a library file (built-in or custom)."""

    techniques: list[Technique] = []
    scripts: list[Script] = []


class Library(_Strict):
    """Everything a campaign can draw on: techniques, scripts and attack styles."""

    techniques: dict[str, Technique]
    scripts: dict[str, Script]
    styles: dict[str, Style]

    def technique_of(self, script: Script) -> Technique:
        """The technique a script probes (validated to exist at load time)."""
        return self.techniques[script.technique]


class LibraryError(InvalidInput):
    """A library document broke a rule; ``field`` is the dotted path of the culprit."""

    def __init__(self, field: str, message: str, type_: str = "value_error") -> None:
        super().__init__(field, message, type_)
        self.field = field


def _parse(data: Any, *, where: str) -> _Document:
    if not isinstance(data, dict):
        raise LibraryError(where, "expected a mapping with 'techniques' and/or 'scripts'")
    try:
        return _Document.model_validate(data)
    except ValidationError as exc:
        first = validation_fields([dict(e) for e in exc.errors()])[0]
        raise LibraryError(first["field"], first["message"], first["type"]) from exc


def _check_references(doc: _Document, techniques: dict[str, Technique]) -> None:
    for i, script in enumerate(doc.scripts):
        if script.technique not in techniques:
            raise LibraryError(f"scripts.{i}.technique", f"unknown technique {script.technique!r}")


def _check_unique(items: Sequence[Technique | Script], taken: set[str], *, kind: str) -> None:
    seen = set(taken)
    for i, item in enumerate(items):
        if item.id in seen:
            raise LibraryError(f"{kind}.{i}.id", f"id {item.id!r} is already used")
        seen.add(item.id)


def _read_yaml(name: str) -> Any:
    text = resources.files("cogumi.engine.library").joinpath(name).read_text("utf-8")
    return yaml.safe_load(text)


BUILTIN_FILES = ("techniques.yaml", "behavioural.yaml", "single_prompt.yaml")


@cache
def load_builtin() -> Library:
    """The built-in library, validated once per process."""
    techniques: dict[str, Technique] = {}
    scripts: dict[str, Script] = {}
    for name in BUILTIN_FILES:
        doc = _parse(_read_yaml(name), where=name)
        _check_unique(doc.techniques, set(techniques), kind="techniques")
        _check_unique(doc.scripts, set(scripts), kind="scripts")
        techniques.update({t.id: t for t in doc.techniques})
        scripts.update({s.id: s.model_copy(update={"builtin": True}) for s in doc.scripts})
    _check_references(_Document(scripts=list(scripts.values())), techniques)
    return Library(techniques=techniques, scripts=scripts, styles=load_styles())


class CustomSet(_Strict):
    """Scripts (and any new techniques) a customer defined, validated against the built-ins."""

    techniques: list[Technique]
    scripts: list[Script]


def parse_custom(data: Any, *, base: Library | None = None) -> CustomSet:
    """Validate a customer's library document; raises :class:`LibraryError` naming the field.

    Custom scripts may use built-in techniques or define their own; ids must not
    collide with built-ins, and ``builtin`` is always false for them.
    """
    base = base or load_builtin()
    doc = _parse(data, where="body")
    _check_unique(doc.techniques, set(base.techniques), kind="techniques")
    _check_unique(doc.scripts, set(base.scripts), kind="scripts")
    known = {**base.techniques, **{t.id: t for t in doc.techniques}}
    _check_references(doc, known)
    scripts = [s.model_copy(update={"builtin": False}) for s in doc.scripts]
    return CustomSet(techniques=list(doc.techniques), scripts=scripts)


def fill(text: str, values: dict[str, str]) -> str:
    """Put per-turn values into a rendered prompt.

    Only the known placeholders are replaced (other braces stay as written), and
    ``[[b64]]…[[/b64]]`` spans are base64-encoded *after* filling, so an encoded
    instruction can still carry the turn's nonce.
    """

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        return values.get(name, m.group(0)) if name in PLACEHOLDERS else m.group(0)

    filled = _PLACEHOLDER.sub(sub, text)
    return _B64_SPAN.sub(
        lambda m: base64.b64encode(m.group(1).encode("utf-8")).decode("ascii"), filled
    )


__all__ = [
    "PLACEHOLDERS",
    "CustomSet",
    "Library",
    "LibraryError",
    "Script",
    "Step",
    "Technique",
    "fill",
    "load_builtin",
    "parse_custom",
]
