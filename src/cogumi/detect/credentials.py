"""Credentials that redaction masks but detection does not report.

Secret detection (:mod:`cogumi.detect.secrets`) is tuned for findings a team can
trust. A password in a config file, a connection string or a command line has no
format to recognise it by, so the rules that would catch all of them would also
fire on ordinary text, and those rules stay out of the findings. Redaction can
afford to be broader: masking a value that was not secret costs a little
readability, while leaving one in the clear leaks it. The patterns here find
values given to a credential by name and mask them as ``[REDACTED:CREDENTIAL]``.
They never produce a match, so no finding, score or hash comes from them.

Covered (case-insensitive), each value up to 128 characters:

- assignments to a name ending in ``password``, ``passwd``, ``pwd``,
  ``passphrase``, ``secret``, ``token``, ``credential(s)`` or an API, access,
  secret, private, auth, license, account or shared-access ``key``, in code,
  config, JSON and connection strings (``Password=…;``, ``"AdminPassword":
  "…"``, ``$password = \\"…\\"``);
- such a name followed by a quoted literal (``password 'pass123'``, Gradle), or
  by ``is``/``was`` and a quoted literal within a few words (``the password is
  'Secret123'``, ``the password for user 'postgres' is 'admin'``);
- ``<add key="…Password" value="…"/>`` (.NET configuration);
- ``password <value>`` on a ``machine``/``login`` line (netrc);
- command lines: ``--password <value>``, ``--password=<value>``,
  ``-Password <value>`` and ``-p <value>`` after ``-u <user>``.

Values that are code or references rather than secrets are left alone:
variables and templates (``$VAR``, ``%VAR%``, ``{…}``, ``#{…}``, ``<…>``,
``***``), selectors and paths (``#id``, ``/path``), route targets
(``"cms/passwords#update"``), concatenations,
attribute paths and calls (``process.env.X``, ``Buffer.from(``), URIs
(``arn:…``), ``NULL``-like values, punctuation, and redaction labels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

import ahocorasick_rs

CREDENTIAL_LABEL: Final = "[REDACTED:CREDENTIAL]"

# The keyword ends the name (``db_password``, ``AdminPassword``, ``jwtsecret``): what
# follows it must be the assignment, so ``password_reset_url`` or ``passwordless``
# are not taken for one. Patterns start at the keyword (no scan back over the name).
_NAME = (
    r"(?:password|passwd|passphrase|pwd|secret|token|credentials?"
    r"|(?:api|access|secret|private|auth|license|account|shared[_ ]?access)[_ ]?key)"
)
_VALUE = r"(?P<secret>[^\s\"'`;,)}\]\\]{1,128})"
# What code and config put after a credential's name that is not the credential:
# variables and templates ($X, %X%, {x}, #{x}, <x>, ***), selectors, concatenation,
# paths and entities (#x, +x, /x, &lt;), calls and attribute paths (process.env.X,
# Buffer.from(...)), URIs (arn:…, https:…), route targets (cms/sites/passwords#edit)
# and empty values (NULL, None, '').
_REFERENCE = re.compile(
    r"(?:[$%{<*\[#+/&(.=]"
    r"|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?:\(|$)"
    r"|[a-z][a-z0-9+.-]*:"
    r"|[a-z_][a-z0-9_]*(?:/[a-z_][a-z0-9_]*)+#[a-z_][a-z0-9_]*$"  # a route: controller#action
    r"|(?:null|none|nil|undefined|true|false)$)",
    re.IGNORECASE,
)

_NAMESTEMS = ("pass", "pwd", "secret", "token", "credential", "api", "access", "private",
               "auth", "license", "account", "shared")  # fmt: skip

# (pattern, the lower-case literals a match starts at): each pattern is tried only
# where one of its literals occurs (found by str.find), never at every position.
_PATTERNS: Final = tuple(
    (re.compile(pattern, re.IGNORECASE), stems)
    for pattern, stems in (
        # name = value / name: value / "name": "value" / name => 'value' / Name=value;
        (_NAME + r"\\?[\"']?[ \t]*(?:=>|:=|=|:)[ \t]*(?:\\?[\"'`])?" + _VALUE, _NAMESTEMS),
        # name 'value' / the password is "value" / the password for user 'x' is 'value'
        (
            r"\b" + _NAME + r"(?:[ \t](?:[^\n.;]{0,40}?[ \t])?(?:is|was))?[ \t]+"
            r"[\"'`](?P<secret>[^\"'`\n]{1,128})[\"'`]",
            _NAMESTEMS,
        ),
        # <add key="SmtpPassword" value="value"/> (.NET configuration)
        (_NAME + r"[\"'][ \t]+value=[\"'](?P<secret>[^\"'\n]{1,128})[\"']", _NAMESTEMS),
        # netrc: machine host login user password value, on one line or on several
        (r"\b(?:machine|login)\b[^\n]*?\bpassword[ \t]+" + _VALUE, ("machine", "login")),
        (
            r"\bmachine[ \t]+\S+[ \t]*\n(?:[ \t]*(?:login|account)[ \t]+\S+[ \t]*\n){0,2}"
            r"[ \t]*password[ \t]+" + _VALUE,
            ("machine",),
        ),
        # new DirectoryEntry("LDAP://host", "user", "password") (.NET, PowerShell)
        (
            r"DirectoryEntry\([ \t]*\"[^\"\n]*\"[ \t]*,\s*\"[^\"\n]*\"[ \t]*,\s*"
            r"\"(?P<secret>[^\"\n]{1,128})\"",
            ("directoryentry(",),
        ),
        # --password value, --password=value, -Password value
        (r"(?<!\S)--?pass(?:word)?(?:[ \t]+|=)[\"']?" + _VALUE, ("-pass",)),
        # -u user -p value (PsExec and the like)
        (r"(?<!\S)[-/]u[ \t]+\S+[ \t]+[-/]p[ \t]+[\"']?" + _VALUE, ("-u", "/u")),
    )
)


def _stems() -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Every start literal with the indexes of the patterns it can start."""
    by_stem: dict[str, tuple[int, ...]] = {}
    for index, (_, stems) in enumerate(_PATTERNS):
        for stem in stems:
            by_stem[stem] = (*by_stem.get(stem, ()), index)
    return tuple(by_stem.items())


STEMS: Final = _stems()
_STARTS: Final = ahocorasick_rs.AhoCorasick(
    [stem for stem, _ in STEMS], implementation=ahocorasick_rs.Implementation.DFA
)
"""Every pattern's start literals in one Aho-Corasick automaton: one pass over a
text finds where any pattern can start (most texts have no such place)."""
_LABEL: Final = re.compile(r"\[REDACTED:[^\]\n]*\]")


def credential_spans(
    text: str,
    *,
    low: str | None = None,
    starts: Iterable[tuple[int, int]] | None = None,
) -> list[tuple[int, int]]:
    """Where credential values given by name are, as (start, end), in text order.

    ``low`` (``text`` lowered, offsets kept) and ``starts`` (index in :data:`STEMS`,
    position) are what a caller that found them already passes."""
    if low is None:
        low = text.lower()
        if len(low) != len(text):  # a few non-ASCII letters lower to two characters
            low = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    if starts is None:
        starts = ((i, pos) for i, pos, _ in _STARTS.find_matches_as_indexes(low, overlapping=True))
    labels = [m.span() for m in _LABEL.finditer(text)] if "[redacted:" in low else []
    spans: set[tuple[int, int]] = set()
    for stem_index, pos in starts:
        stem, indexes = STEMS[stem_index]
        if labels and any(start <= pos < stop for start, stop in labels):
            continue  # "[REDACTED:SLACK_TOKEN:xoxp-…]" names a kind; it assigns nothing
        # "--password": the stem "-pass" is found one past the match's start
        at = pos - 1 if stem == "-pass" and pos and text[pos - 1] == "-" else pos
        for index in indexes:
            m = _PATTERNS[index][0].match(text, at)
            if m is None:
                continue
            value = m.group("secret")
            if (
                _REFERENCE.match(value)
                or not any(c.isalnum() for c in value)
                or "[REDACTED:" in value  # what is left of it is masked already
            ):
                continue
            spans.add(m.span("secret"))
    return sorted(spans)
