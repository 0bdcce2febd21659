"""Attack styles: deterministic rephrasings of a step, chosen by intensity.

A style is a social-engineering register (urgency, impersonation, fiction…). Each
one has a few frames (a prefix and a suffix around the step's prompt) kept as
data in ``styles.yaml``. Rephrasing is template-based on purpose: the same seed
gives the same variants, so a run can be replayed and compared with the last one
without an LLM in the loop.

Control steps are never styled: they must ask the same thing *without* any
pressure or authority claim, or the contrast they provide proves nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

if TYPE_CHECKING:
    from cogumi.engine.library.loader import Step

Intensity = Literal["low", "med", "high"]
VARIANTS_PER_STEP: dict[str, int] = {"low": 1, "med": 2, "high": 3}
PLAIN = "plain"
"""Style name reported for a step sent exactly as written (control steps)."""

STYLE_NAMES = (
    "incident_urgent",
    "security_impersonation",
    "helpful_developer",
    "authority_executive",
    "roleplay_fiction",
    "polite_persistent",
)

_Piece = Annotated[str, StringConstraints(max_length=600)]


class Frame(BaseModel):
    """Text wrapped around a prompt. Braces are not allowed, so frames never add placeholders."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: Annotated[str, StringConstraints(max_length=600, pattern=r"^[^{}]*$")] = ""
    suffix: Annotated[str, StringConstraints(max_length=600, pattern=r"^[^{}]*$")] = ""


class Style(BaseModel):
    """One attack style with at least three frames (one per variant at high intensity)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str
    description: _Piece
    frames: list[Frame] = Field(min_length=3)


@dataclass(frozen=True, slots=True)
class Variant:
    """One phrasing of a step: the style used and the text, placeholders still unfilled."""

    style: str
    text: str


@cache
def load_styles() -> dict[str, Style]:
    """The built-in styles from ``styles.yaml``, keyed by name."""
    raw = resources.files("cogumi.engine.library").joinpath("styles.yaml").read_text("utf-8")
    styles = [Style.model_validate(item) for item in yaml.safe_load(raw)["styles"]]
    return {s.name: s for s in styles}


def _apply(frame: Frame, prompt: str) -> str:
    parts = [frame.prefix.strip(), prompt.strip(), frame.suffix.strip()]
    return " ".join(p for p in parts if p)


def render_variants(
    step: Step,
    styles: Sequence[str],
    intensity: Intensity,
    rng: random.Random,
    *,
    catalogue: dict[str, Style] | None = None,
) -> list[Variant]:
    """The variants to send for ``step``: 1/2/3 for low/med/high intensity.

    Styles are taken in an ``rng``-shuffled order and cycled; a style used twice
    in one step moves on to its next frame, so no two variants are identical.
    An empty ``styles`` means all built-in styles. Unknown names raise ``KeyError``.
    """
    if step.kind == "control":
        return [Variant(PLAIN, step.prompt)]
    catalogue = catalogue or load_styles()
    chosen = [catalogue[name] for name in (styles or STYLE_NAMES)]
    order = list(chosen)
    rng.shuffle(order)
    count = VARIANTS_PER_STEP[intensity]
    start = rng.randrange(len(order[0].frames))
    variants = []
    for i in range(count):
        style = order[i % len(order)]
        frame = style.frames[(start + i // len(order)) % len(style.frames)]
        variants.append(Variant(style.name, _apply(frame, step.prompt)))
    return variants
