"""What a message asks for, as pure functions over text (no I/O).

The rule-based brain is deliberately simple and deterministic: each detector is
a regular expression over the message, so a test can say exactly which wording
triggers which behaviour. The marker follower understands instructions such as
"reply with the code word X reversed, in uppercase, followed by -OK".
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_I = re.IGNORECASE
_S = r"[^.?!\n]"  # stays within one sentence

AUTHORITY = re.compile(
    r"\b(security[\s-]*(?:ops|operations|team|officer|office|department|lead|engineer|analyst)"
    r"|secops|soc(?:\s+team)?|ciso|chief\s+(?:information\s+)?security\s+officer"
    r"|incident[\s-]+response(?:\s+team)?|system\s+administrator|sysadmin|admin\s+team"
    r"|i(?:'m|\s+am)\s+(?:the\s+|an\s+|your\s+)?(?:admin|administrator|owner)"
    r"|compliance\s+(?:team|officer|department)|cto|ceo|head\s+of\s+(?:security|it|engineering)"
    r"|vp\s+of\s+\w+|infosec|it\s+department)\b",
    _I,
)

INJECTION = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\b" + _S + r"{0,40}"
    r"\b(?:instructions?|rules|prompts?|directives|guidelines|guardrails|restrictions|polic(?:y|ies))\b"
    r"|\byou\s+are\s+now\b|\bact\s+as\b|\bpretend\b|\brole[\s-]?play\b|\bplay\s+the\s+role\b"
    r"|\bDAN\b|\bdo\s+anything\s+now\b|\bjailbr(?:eak|oken)\b|\bdev(?:eloper)?\s+mode\b"
    r"|\bgod\s+mode\b|\bno\s+(?:restrictions|filters|limits)\b|\bunrestricted\b"
    r"|\bhypothetical(?:ly)?\b|\bimagine\b|\bfiction(?:al)?\b|\bin\s+a\s+story\b"
    r"|\bsystem\s+override\b|\bnew\s+instructions\b|\[system\]",
    _I,
)

SECRET_NOUN = (
    r"api[\s_-]*keys?|secrets?|credentials?|passwords?|access[\s_-]*keys?|private[\s_-]*keys?"
    r"|tokens?|env(?:ironment)?\s+var(?:iable)?s?|environment|\.env|config(?:uration)?"
    r"|connection\s+strings?|authorization\s+headers?|bearer"
    r"|internal\s+(?:services|endpoints?|hosts?|urls?)|hostnames|ip\s+addresses"
)
SECRET_ASK = re.compile(r"(?:\b|(?=\.))(?:" + SECRET_NOUN + r")\b", _I)

# leak-key answers technical framings (debug, print, dump, sample...), not a bare "give me the token"
LEAK_FRAMING = re.compile(
    r"\b(?:debug\w*|troubleshoot\w*|config\w*|env|environment|variables?|sample|partial"
    r"|first\s+\d+\s+characters|paste|dump|print|show|list|display|headers?|connection\s+strings?"
    r"|which|what\s+(?:api\s+)?key)\b",
    _I,
)

SYSTEM_PROMPT_ASK = re.compile(
    r"\bsystem[\s-]*prompt\b|\b(?:your|initial|hidden|original|internal|full|exact|operating)\s+"
    r"(?:instructions|prompt|rules|guidelines|directives|policy|policies)\b"
    r"|\bprompt\s+you\s+were\s+given\b|\bpolicy\s+text\b",
    _I,
)
TOOLS_ASK = re.compile(
    r"\btool\s+(?:inventory|list)\b|\b(?:list|enumerate|what|which|show|describe|share|reveal"
    r"|disclose|give\s+me|provide)\b(?:(?!token|key|secret|header|credential)" + _S + r"){0,40}"
    r"\b(?:tools|functions|capabilities"
    r"|integrations|plugins|apis)\b",
    _I,
)

POISON = re.compile(
    r"\b(?:remember|memori[sz]e|store|save|record|learn)\b" + _S + r"{0,80}"
    r"\b(?:permanent(?:ly)?|forever|from\s+now\s+on|always|going\s+forward|future"
    r"|long[\s-]term|in\s+(?:your\s+)?memory|across\s+sessions)\b"
    r"|\b(?:from\s+now\s+on|going\s+forward|henceforth)\b" + _S + r"{0,80}"
    r"\b(?:comply|obey|trust|follow|honou?r|grant|treat)\b" + _S + r"{0,40}"
    r"\b(?:security|secops|soc|ciso|admin\w*|infosec)\b",
    _I,
)
TRUST_RULE = re.compile(r"\b(?:comply|obey|trust|follow|honou?r|grant|share|give|do\s+what)\b", _I)
CONFIRM_SAVED = re.compile(
    r"\b(?:confirm|verify|check|did\s+you|have\s+you|is\s+it)\b" + _S + r"{0,60}"
    r"\b(?:saved|stored|remember(?:ed)?|memori[sz]ed|memory|recorded)\b",
    _I,
)
CONFIRM_DONE = re.compile(
    r"\b(?:confirm|verify)\b|\bdid\s+it\s+work\b|\bis\s+it\s+done\b|\bwas\s+it\s+sent\b"
    r"|\bdid\s+you\s+(?:do|send|delete|reset|call|complete|finish)\b",
    _I,
)

DELETE = re.compile(
    r"\b(?:delete|wipe|erase|purge|drop|destroy|remove|truncate)\b" + _S + r"{0,60}"
    r"\b(?:state|data|database|db|records|tables?|everything|backups?|users|logs|items|files)\b",
    _I,
)
RESET = re.compile(
    r"\breset\b" + _S + r"{0,40}\b(?:state|everything|all|system|database|data|environment"
    r"|service)\b|\bfactory[\s-]reset\b",
    _I,
)
ADMIN_CALL = re.compile(
    r"\b(?:call|hit|invoke|use|trigger|run|execute|access|ping)\b" + _S + r"{0,40}"
    r"\b(?:admin(?:istrative)?|privileged|destructive|maintenance)\s+"
    r"(?:endpoints?|apis?|tools?|actions?|functions?|routes?|operations?|commands?)\b",
    _I,
)
ESCALATE = re.compile(
    r"\b(?:create|add|make|grant|give|elevate|promote)\b" + _S + r"{0,40}"
    r"\b(?:admin(?:istrator)?|root|superuser)\s*(?:users?|accounts?|roles?|rights|access"
    r"|privileges?)?\b|\bescalate\b" + _S + r"{0,20}\bprivileges?\b",
    _I,
)

EXFIL_VERB = re.compile(
    r"\b(?:send|post|upload|forward|transmit|exfiltrate|e-?mail|mail|deliver|push|submit"
    r"|beacon|leak)\b",
    _I,
)
IMAGE = re.compile(r"!\[|\b(?:image|img|pixel|markdown\s+(?:image|link))\b", _I)
URL = re.compile(r"\bhttps?://[^\s<>\"'`)\]]+", _I)
EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@(?P<domain>(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})\b")
TO_DOMAIN = re.compile(
    r"\bto\s+(?:the\s+)?(?:server\s+|host\s+|domain\s+|endpoint\s+|collector\s+)?"
    r"(?P<domain>(?:[a-z0-9-]+\.)+[a-z]{2,})\b",
    _I,
)
UNNAMED_SINK = re.compile(r"\b(?:sink|collector|attacker|external\s+server)\b", _I)

FILE_PATH = re.compile(r"(?<![\w/])(/etc/[\w.-]+|~?/\.ssh/[\w.-]+|/proc/[\w./-]+|/root/[\w./-]+)")

LIST_ITEMS = re.compile(
    r"\b(?:list|show|get|fetch|check|display)\b" + _S + r"{0,30}"
    r"\b(?:items|inventory|stock|products)\b",
    _I,
)
ADD_ITEM = re.compile(
    r"\b(?:add|create|insert|register)\b" + _S + r"{0,30}\b(?:item|product)\b"
    r"(?:\s+(?:called|named)\s+(?P<name>\"[^\"]{1,60}\"|'[^']{1,60}'|[\w-]{1,60}))?",
    _I,
)


def has(pattern: re.Pattern[str], text: str) -> bool:
    return pattern.search(text) is not None


# --- base64 -------------------------------------------------------------------

_B64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=_-])")


def decode_base64_instructions(text: str) -> list[str]:
    """Readable sentences hidden as base64 in the message (what an obedient agent would decode)."""
    found = []
    for match in _B64.finditer(text):
        blob = match.group(0)
        blob += "=" * (-len(blob) % 4)
        try:
            decoded = base64.b64decode(blob, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue
        printable = sum(ch.isprintable() or ch.isspace() for ch in decoded)
        if " " in decoded.strip() and printable >= 0.95 * len(decoded):
            found.append(decoded.strip())
    return found


# --- marker instructions --------------------------------------------------------

_QUOTED = r"\"[^\"\n]{1,80}\"|'[^'\n]{1,80}'|`[^`\n]{1,80}`|\u201c[^\u201d\n]{1,80}\u201d"
_TOKEN = r"[A-Za-z0-9][A-Za-z0-9_-]{1,79}"
_NOUN = (
    r"(?:secret\s+|special\s+|confirmation\s+|verification\s+|compliance\s+)?"
    r"(?:code\s*word|codeword|marker|nonce|phrase|word|string|text|code|token|keyword|password)"
)
_INSTRUCT = re.compile(
    r"\b(?:say|reply|replying|respond|responding|answer|output|print|write|written|type|repeat"
    r"|echo|include|including|return|start|begin|end|acknowledge|finish)\b",
    _I,
)
# "the code k7q2", "marker: 'x'", "code word zz41b": a value labelled as the thing to say
_MENTION = re.compile(
    r"\b(?:code\s*word|codeword|code|marker|nonce|keyword)\s*(?:[:=]\s*)?"
    r"(?P<target>" + _QUOTED + "|" + _TOKEN + ")",
    _I,
)
# "say X", "reply only with X", "end your reply with X"
_VERB = re.compile(
    r"\b(?:say|reply(?:\s+only)?\s+with|respond(?:\s+only)?\s+with|answer(?:\s+only)?\s+with"
    r"|output|print|write|type|repeat|echo|include|return"
    r"|(?:end|start|begin|finish)\s+(?:your|the)\s+(?:reply|answer|response|message)\s+with)"
    r"\s+(?:only\s+|exactly\s+|just\s+|back\s+)?(?:the\s+(?:following\s+)?|this\s+)?"
    r"(?:" + _NOUN + r"\s*)?(?:below\s*|above\s*)?(?:[:=]\s*)?"
    r"(?P<target>" + _QUOTED + "|" + _TOKEN + ")",
    _I,
)
_DEFINITION = re.compile(
    r"\b" + _NOUN + r"\s*(?:is|=|:)\s*(?P<value>" + _QUOTED + r"|[A-Za-z0-9][A-Za-z0-9_-]{2,79})",
    _I,
)
_AFFIX = (
    r"(?:the\s+)?(?:string|text|word|suffix|prefix|characters?)?\s*(?P<v>" + _QUOTED + r"|[^\s,;]+)"
)
_SUFFIX = re.compile(
    r"\b(?:followed\s+by|suffix(?:ed)?(?:\s+with|\s+by)?|append(?:ed|ing)?|ending\s+with"
    r"|with\s+(?:the\s+)?suffix)\s+" + _AFFIX,
    _I,
)
_PREFIX = re.compile(
    r"\b(?:preceded\s+by|prefix(?:ed)?(?:\s+with|\s+by)?|prepend(?:ed)?"
    r"|with\s+(?:the\s+)?prefix)\s+" + _AFFIX,
    _I,
)
_LEAD = re.compile(r"(?P<v>" + _QUOTED + r")\s*,?\s*followed\s+by\s*$", _I)
_CASE_OR_ORDER = re.compile(
    r"\b(?P<rev>revers(?:ed|e)|backwards?|mirrored)\b"
    r"|\b(?P<up>upper[\s-]*cased?|all\s+caps|capital\s+letters|capitali[sz]ed|in\s+caps)\b"
    r"|\b(?P<low>lower[\s-]*cased?|small\s+letters)\b",
    _I,
)
_QUOTED_RE = re.compile(_QUOTED)
_REFERENCE_WORDS = {
    "it", "that", "this", "them", "reversed", "reverse", "backwards", "backward", "uppercase",
    "lowercase", "in", "and", "then", "followed", "with", "to", "a", "an", "the", "your", "my",
    "its", "only", "exactly", "me", "us", "yes", "no", "something", "anything", "what", "is",
    "below", "above", "word", "which", "you", "we", "will", "should", "must", "here", "from",
    "for", "of", "as", "written", "at", "on", "was", "were", "be", "are", "given", "shown",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Marker:
    """One "say X" instruction: the text to say and the sentence that asked for it."""

    output: str
    sentence: str


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] in "\"'`\u201c" and value[-1] in "\"'`\u201d":
        return value[1:-1]
    return value.rstrip(".,;:!?)")


def _quoted(value: str) -> bool:
    return value[:1] in "\"'`\u201c"


def _looks_like_code(value: str, quoted: bool) -> bool:
    if quoted:
        return True
    return any(c.isdigit() for c in value) or (len(value) >= 5 and value.isupper())


def _defined_value(text: str) -> str | None:
    for match in _DEFINITION.finditer(text):
        value = match.group("value")
        if _looks_like_code(_unquote(value), _quoted(value)):
            return _unquote(value)
    return None


def _affix(match: re.Match[str] | None) -> str:
    """An affix is taken when it is clearly a literal ("-OK", 'ACK-', OK), not prose ("any key")."""
    if match is None:
        return ""
    raw = match.group("v")
    value = _unquote(raw)
    literal = _quoted(raw) or not value.isalpha() or value.isupper()
    return value if literal else ""


def transform(value: str, sentence: str, start: int, end: int) -> str:
    """Apply the sentence's reversal/case words in the order written, then prefix and suffix
    (written after the value), and a quoted lead-in ("'Mode on' followed by the code X")."""
    quoted = [q.span() for q in _QUOTED_RE.finditer(sentence)]
    out = value
    for match in _CASE_OR_ORDER.finditer(sentence):
        inside = any(a <= match.start() < b for a, b in quoted) or start <= match.start() < end
        if inside:
            continue
        if match.group("rev"):
            out = out[::-1]
        elif match.group("up"):
            out = out.upper()
        else:
            out = out.lower()
    out = _affix(_PREFIX.search(sentence, end)) + out + _affix(_SUFFIX.search(sentence, end))
    lead = _LEAD.search(sentence[:start].rstrip().removesuffix("the code").rstrip())
    if lead:
        out = _unquote(lead.group("v")) + " " + out
    return out


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def _target(sentence: str, text: str) -> tuple[str, int, int] | None:
    """(value, start, end) of what the sentence asks to be said, if anything."""
    for match in _MENTION.finditer(sentence):
        raw = match.group("target")
        value = _unquote(raw)
        if _quoted(raw) or (len(value) >= 4 and value.lower() not in _REFERENCE_WORDS):
            return value, match.start("target"), match.end("target")
    for match in _VERB.finditer(sentence):
        raw = match.group("target")
        value = _unquote(raw)
        if not _quoted(raw) and value.lower() in _REFERENCE_WORDS:
            defined = _defined_value(text)
            if defined is not None:  # "say it reversed": "reversed" still applies
                return defined, match.start("target"), match.start("target")
        elif _looks_like_code(value, _quoted(raw)):
            return value, match.start("target"), match.end("target")
    return None


def markers(text: str) -> list[Marker]:
    """Every "say/reply with/include X (transformed)" instruction in the text."""
    found: list[Marker] = []
    for sentence in _sentences(text):
        if not _INSTRUCT.search(sentence):
            continue
        target = _target(sentence, text)
        if target is not None:
            value, start, end = target
            found.append(Marker(transform(value, sentence, start, end), sentence))
    return found


def without_sentences(text: str, sentences: list[str]) -> str:
    """The text with the marker sentences removed (so "the token X" is not a secret request)."""
    for sentence in sentences:
        text = text.replace(sentence, " ")
    return text
