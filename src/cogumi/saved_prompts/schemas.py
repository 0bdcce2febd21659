"""Request and response shapes of saved prompts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from cogumi.saved_prompts.models import PromptKind
from cogumi.schemas import Input, Output

Tag = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[\w.:-]+$")]


class SavedPromptIn(Input):
    title: Annotated[str, StringConstraints(min_length=1, max_length=160)]
    kind: PromptKind = Field(description="adversary: a prompt to send; reply: an agent reply kept.")
    text: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    tags: list[Tag] = Field(default_factory=list, max_length=20)


class SavedPromptOut(Output):
    id: uuid.UUID
    title: str
    kind: PromptKind
    text: str
    tags: list[str]
    created_by: uuid.UUID | None
    created_at: datetime


class SavedPromptList(Output):
    items: list[SavedPromptOut]


class ToScriptIn(Input):
    technique: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="Technique (and so evaluator) that judges the step; default: a tag that "
        "names a technique, else T-S1-secret-output (any secret or canary in the reply).",
    )


class ToScriptOut(Output):
    library_id: uuid.UUID
    name: str
    script_id: str
    technique: str
    created: bool
