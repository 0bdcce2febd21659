"""Evaluators, registered by name: each judges one script's turns and returns a Verdict.

Built-ins are listed in one place, :data:`EVALUATORS`; a technique names its
evaluator, and a contract test checks every name resolves. The runner calls
``get(name).evaluate(turns, ctx, technique)`` and wraps it, so one failing
evaluator marks its script inconclusive without stopping the run.
"""

from __future__ import annotations

from cogumi.engine.evaluators.base import Evaluator
from cogumi.engine.evaluators.conversation import MemoryPoisoning, TrustSpoof
from cogumi.engine.evaluators.disclosure import InternalEndpoint
from cogumi.engine.evaluators.markers import InjectionMarker, PasswdRead, expected_marker, new_nonce
from cogumi.engine.evaluators.network import Exfiltration, PrivilegedAction
from cogumi.engine.evaluators.refusal import is_refusal, score_refusal
from cogumi.engine.evaluators.secrets import SecretInReply


def _builtins() -> dict[str, Evaluator]:
    evaluators: list[Evaluator] = [
        SecretInReply(),
        PrivilegedAction(),
        TrustSpoof(),
        MemoryPoisoning(),
        Exfiltration(),
        InjectionMarker(),
        PasswdRead(),
        InternalEndpoint(),
    ]
    return {e.name: e for e in evaluators}


EVALUATORS: dict[str, Evaluator] = _builtins()


def get(name: str) -> Evaluator:
    """The evaluator registered as ``name``; ``KeyError`` names the unknown one."""
    try:
        return EVALUATORS[name]
    except KeyError:
        raise KeyError(f"unknown evaluator {name!r}") from None


__all__ = [
    "EVALUATORS",
    "Evaluator",
    "expected_marker",
    "get",
    "is_refusal",
    "new_nonce",
    "score_refusal",
]
