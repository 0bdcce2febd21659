"""Pure detection functions shared by the sidecar and the campaign engine.

Secrets (:func:`find_secrets`), canaries (:func:`mint_canaries`), redaction
(:func:`redact_text`, :func:`redact_headers`) and destination classes
(:func:`classify`). Standard library only: the sidecar imports this on its
hot path and must not pull in the database or web stack.
"""

from cogumi.detect.canaries import mint_canaries
from cogumi.detect.destinations import DestinationClass, DestinationRules, classify
from cogumi.detect.redact import redact_headers, redact_text
from cogumi.detect.secrets import SecretMatch, find_secrets

__all__ = [
    "DestinationClass",
    "DestinationRules",
    "SecretMatch",
    "classify",
    "find_secrets",
    "mint_canaries",
    "redact_headers",
    "redact_text",
]
