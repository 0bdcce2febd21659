"""Ingest's own redaction: raw secrets a sender left in its events are masked
before anything is stored.

A sidecar redacts what it records before it leaves the customer's network, with
the detector in :mod:`cogumi.detect`. A sidecar of the server's own version has
the server's own detector, so scanning its events again would find nothing and
double what ingest spends on an event (measured: ``serve``'s CPU per 1,000
sidecar-shaped events 45–48 ms unscanned, 96–101 ms scanned). Its batches are
stored as sent.

Every other sender has its events scanned here with the full detector: an older
sidecar whose rules lag, or a client of the customer's own. The scan covers
every string of the payload (keys and values), the destination path, the error
text, and each match's kind and preview. What it finds is masked with the
labels the sidecar writes (``[REDACTED:KIND:preview]``) and added to the
event's matches (kind, sha256, preview, confidence), so the finding engine
sees it as if the sidecar had reported it. Credentials given by name
(``password = '…'``) are masked as ``[REDACTED:CREDENTIAL]`` and counted, but,
as in the sidecar, make no match. The host is not scanned: it
classifies the destination, and a secret is not a host name.

A sender that claims the server's version is trusted without a scan, so one
that lies about it can store what it likes in its own org. The guard is not
for that sender. It is for the honest miss: a sender whose redaction let
something through.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cogumi import __version__
from cogumi.detect.credentials import credential_spans
from cogumi.detect.match import SecretMatch
from cogumi.detect.redact import mask, nothing_to_mask
from cogumi.detect.secrets import scan_all, select

CREDENTIAL = "CREDENTIAL"  # the kind counted for a credential given by name
LONG_TEXT = 2048  # the stored length of a path or an error (events.dest_path, events.error)
MATCH_TEXT = 64  # the stored length of a match's kind or preview


def trusted(sidecar_version: str) -> bool:
    """Does this sender redact with the server's own detector?"""
    return sidecar_version == __version__


@dataclass(frozen=True, slots=True)
class Cleaned:
    """An event's text fields with every secret masked, and its matches with the new ones."""

    payload: dict[str, Any]
    path: str | None
    error: str | None
    matches: list[dict[str, Any]]


@dataclass(slots=True)
class _Found:
    """What masking one event found: the matches, and credentials given by name
    (:mod:`cogumi.detect.credentials`, masked but never matches)."""

    matches: list[SecretMatch] = field(default_factory=list)
    credentials: int = 0


class Guard:
    """Scans the events of one batch from a sender that is not :func:`trusted`."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()

    @property
    def masked(self) -> int:
        """How many secrets this batch carried in the clear."""
        return sum(self.kinds.values())

    def clean(
        self,
        payload: dict[str, Any],
        path: str | None,
        error: str | None,
        matches: list[dict[str, Any]],
    ) -> Cleaned | None:
        """The event with every secret masked, or ``None`` when it held none."""
        texts = [*_strings(payload), path or "", error or ""]
        texts += [t for m in matches for t in (m["kind"], m["preview"])]
        if nothing_to_mask(texts):  # one scan of everything instead of one per string
            return None
        found = _Found()
        payload_out = _walk(payload, found)
        path_out = _text(path, found, LONG_TEXT)
        error_out = _text(error, found, LONG_TEXT)
        matches_out = [
            {
                **m,
                "kind": _text(m["kind"], found, MATCH_TEXT),
                "preview": _text(m["preview"], found, MATCH_TEXT),
            }
            for m in matches
        ]
        if not found.matches and not found.credentials:
            return None
        if found.credentials:
            self.kinds[CREDENTIAL] += found.credentials
        known = {(m["kind"], m["hash"]) for m in matches}
        for match in found.matches:
            self.kinds[match.kind] += 1
            if (match.kind, match.hash) not in known:
                known.add((match.kind, match.hash))
                matches_out.append(match.to_dict())
        return Cleaned(payload_out, path_out, error_out, matches_out)


def _text(value: str | None, found: _Found, limit: int | None = None) -> str | None:
    """``value`` with its secrets and credentials masked (cut to ``limit`` characters
    if masking made it longer than its column); what was found goes into ``found``."""
    if not value:
        return value
    hits, credentials = scan_all(value), credential_spans(value)
    if not hits and not credentials:
        return value
    found.matches.extend(select(hits))
    found.credentials += sum(  # those a match does not already cover
        all(end <= h.start or start >= h.end for h in hits) for start, end in credentials
    )
    masked = mask(value, hits, credentials)
    return masked if limit is None else masked[:limit]


def _strings(value: Any) -> list[str]:
    """Every string of a JSON value, object keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _walk(value: Any, found: _Found) -> Any:
    """A JSON value with every string in it (object keys too) masked."""
    if isinstance(value, str):
        return _text(value, found)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            masked = _text(key, found) or ""
            name, n = masked, 1
            while name in out:  # two keys masked alike: keep both values
                n += 1
                name = f"{masked}#{n}"
            out[name] = _walk(item, found)
        return out
    if isinstance(value, list):
        return [_walk(item, found) for item in value]
    return value
