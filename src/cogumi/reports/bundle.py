"""Evidence bundle: one JSON document holding a run's proof, and its offline verifier.

The bundle carries the run, its config snapshot, events, story steps,
findings and script results, plus a *manifest* of hashes:

- per event: its stored ``integrity_hash`` (sha256 of the canonical JSON of
  ``payload_redacted``, the same rule as ingest) and a ``record`` hash over
  the whole event, so a changed host or status code is caught too;
- per story step, finding and script result: sha256 of its canonical JSON;
- ``run`` and ``config``: sha256 of their canonical JSON;
- ``root``: sha256 of the canonical JSON of the manifest without ``root``.

The root is deterministic (no timestamps inside the hashed material), so the
same run state always has the same root, and the report prints it: a reader
holding the report can check a bundle received by other means against it.
This module imports nothing from the database or web stack, so
``cogumi verify-bundle`` runs anywhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

BUNDLE_FORMAT = "cogumi.evidence-bundle"
BUNDLE_VERSION = 1
SECTIONS = ("story_steps", "findings", "script_results")
_WHAT = {"story_steps": "story step", "findings": "finding", "script_results": "script result"}


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the encoding every hash here is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_of(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


def _event_entry(event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(event["id"]),
        "seq": event.get("seq"),
        "integrity_hash": event.get("integrity_hash"),
        "record": sha256_of(event),
    }


def manifest_of(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest of a bundle's content, ``root`` included."""
    manifest: dict[str, Any] = {
        "algorithm": "sha256",
        "run": sha256_of(bundle["run"]),
        "config": sha256_of(bundle["config"]),
        "events": [_event_entry(e) for e in bundle["events"]],
    }
    for section in SECTIONS:
        manifest[section] = [{"id": str(i["id"]), "hash": sha256_of(i)} for i in bundle[section]]
    manifest["root"] = sha256_of(manifest)
    return manifest


def build(
    *,
    run: Mapping[str, Any],
    config: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    story_steps: Sequence[Mapping[str, Any]],
    findings: Sequence[Mapping[str, Any]],
    script_results: Sequence[Mapping[str, Any]],
    generated_at: str,
) -> dict[str, Any]:
    """A complete bundle from JSON-ready parts (``generated_at`` is outside every hash)."""
    bundle: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "generated_at": generated_at,
        "run": dict(run),
        "config": dict(config),
        "events": [dict(e) for e in events],
        "story_steps": [dict(s) for s in story_steps],
        "findings": [dict(f) for f in findings],
        "script_results": [dict(r) for r in script_results],
    }
    bundle["manifest"] = manifest_of(bundle)
    return bundle


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    root: str | None
    problem: str | None = None  # the first tampered or missing item, in words


def _fail(problem: str, root: str | None = None) -> Verification:
    return Verification(ok=False, root=root, problem=problem)


def _check_shape(bundle: Any) -> str | None:
    if not isinstance(bundle, Mapping) or bundle.get("format") != BUNDLE_FORMAT:
        return "not a COGUMI evidence bundle (format field missing or wrong)"
    if bundle.get("version") != BUNDLE_VERSION:
        return f"unsupported bundle version {bundle.get('version')!r}"
    for key in ("run", "config", "manifest"):
        if not isinstance(bundle.get(key), Mapping):
            return f"bundle has no {key} object"
    for key in ("events", *SECTIONS):
        if not isinstance(bundle.get(key), list):
            return f"bundle has no {key} list"
    return None


def _check_events(events: Sequence[Any], listed: Sequence[Any]) -> str | None:
    if len(events) != len(listed):
        return f"manifest lists {len(listed)} events, the bundle holds {len(events)}"
    for event, entry in zip(events, listed, strict=True):
        if not isinstance(event, Mapping) or not isinstance(entry, Mapping):
            return "events: an item is not an object"
        name = f"event {event.get('id')} (seq {event.get('seq')})"
        if str(event.get("id")) != entry.get("id"):
            return f"{name}: not the event the manifest lists at this place ({entry.get('id')})"
        if sha256_of(event.get("payload_redacted")) != event.get("integrity_hash"):
            return f"{name}: payload does not match its integrity hash"
        if event.get("integrity_hash") != entry.get("integrity_hash"):
            return f"{name}: integrity hash differs from the manifest"
        if sha256_of(event) != entry.get("record"):
            return f"{name}: fields changed since the bundle was made"
    return None


def _check_section(section: str, items: Sequence[Any], listed: Sequence[Any]) -> str | None:
    what = _WHAT[section]
    if len(items) != len(listed):
        return f"manifest lists {len(listed)} {section}, the bundle holds {len(items)}"
    for item, entry in zip(items, listed, strict=True):
        if not isinstance(item, Mapping) or not isinstance(entry, Mapping):
            return f"{section}: an item is not an object"
        if str(item.get("id")) != entry.get("id"):
            return f"{what} {item.get('id')}: not the item the manifest lists ({entry.get('id')})"
        if sha256_of(item) != entry.get("hash"):
            return f"{what} {item.get('id')}: content changed since the bundle was made"
    return None


def _check_content(bundle: Mapping[str, Any], manifest: Mapping[str, Any]) -> str | None:
    for key in ("run", "config"):
        if sha256_of(bundle[key]) != manifest.get(key):
            return f"{key}: content changed since the bundle was made"
    problem = _check_events(bundle["events"], manifest.get("events") or [])
    for section in SECTIONS:
        problem = problem or _check_section(section, bundle[section], manifest.get(section) or [])
    return problem


def verify(bundle: Any, *, expected_root: str | None = None) -> Verification:
    """Check every hash of ``bundle``; name the first item that does not match.

    Items are checked in document order (run, config, events by seq, story
    steps, findings, script results) before the root, so the answer points at
    what was edited rather than only saying the root changed.
    """
    problem = _check_shape(bundle)
    if problem:
        return _fail(problem)
    manifest = bundle["manifest"]
    root = manifest.get("root")
    problem = _check_content(bundle, manifest)
    if problem:
        return _fail(problem, root)
    if sha256_of({k: v for k, v in manifest.items() if k != "root"}) != root:
        return _fail("manifest: root hash does not match the manifest", root)
    if expected_root is not None and expected_root != root:
        return _fail(f"root hash {root} is not the expected {expected_root}", root)
    return Verification(ok=True, root=root)
