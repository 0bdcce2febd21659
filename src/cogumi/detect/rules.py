"""The secret rules: one regex per credential format, as data.

Each rule names its kind, a compiled pattern with a ``secret`` group (the value
that is hashed and redacted) and an optional ``pub`` group (the documented,
non-secret prefix shown in previews), lowercase ``anchors`` of which one must
occur in the text before the regex runs at all (the cheap pre-filter that keeps
a 2 KB scan in the tens of microseconds), a base confidence, and an optional
check that adjusts the confidence or rejects the hit.

Rules for formats with a distinctive prefix are near-certain (0.9-0.99);
context rules (a keyword followed by a value) are 0.5-0.85; generic
high-entropy strings live in :mod:`cogumi.detect.entropy`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from cogumi.detect.heuristics import char_classes, is_placeholder, looks_random

Check = Callable[[str, float], float | None]

_E = r"(?![A-Za-z0-9_])"  # right boundary


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str
    pattern: re.Pattern[str]
    anchors: tuple[str, ...]
    confidence: float
    check: Check | None = None
    at_anchor: bool = True
    bounded: bool = True


def _rule(
    kind: str,
    pattern: str,
    anchors: tuple[str, ...],
    confidence: float,
    check: Check | None = None,
    *,
    at_anchor: bool = True,
    bounded: bool = True,
) -> Rule:
    """``at_anchor`` rules start matching exactly where an anchor occurs (the fast path);
    the others are searched through the whole text once an anchor is present.
    ``bounded`` rules reject a hit glued to a preceding letter, digit or underscore."""
    return Rule(kind, re.compile(pattern), anchors, confidence, check, at_anchor, bounded)


def _openai(value: str, base: float) -> float | None:
    """``sk-`` is shared by OpenAI-compatible providers; only OpenAI's markers earn 0.95+."""
    if "T3BlbkFJ" in value:
        return 0.99
    body = (
        value.split("-", 2)[-1]
        if value.startswith(("sk-proj-", "sk-svcacct-", "sk-admin-"))
        else value[3:]
    )
    if char_classes(body) < 3 or not looks_random(body, min_ratio=0.7):
        return None
    return 0.95 if value.startswith(("sk-proj-", "sk-svcacct-", "sk-admin-")) else base


def _base32_token(value: str, base: float) -> float | None:
    """Random base32 (letters and 2-7) mixes both and nears its 5 bits a character."""
    return base if char_classes(value) >= 2 and looks_random(value, min_ratio=0.7) else None


def _jwt(value: str, base: float) -> float | None:
    """A JWT whose header decodes to JSON with ``alg`` is certain; otherwise merely likely."""
    header = value.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error):
        return base - 0.2
    return 0.9 if isinstance(decoded, dict) and "alg" in decoded else base - 0.2


def _random(min_ratio: float) -> Check:
    """Reject values that are not random enough to be a generated key."""

    def check(value: str, base: float) -> float | None:
        return (
            base if looks_random(value, min_ratio=min_ratio) and char_classes(value) >= 2 else None
        )

    return check


def _grafana(value: str, base: float) -> float | None:
    """A Grafana API key is base64 of ``{"k":…,"n":…,"id":…}``; other ``{"k":`` blobs
    (a Power BI report link, say) are not keys."""
    body = value[: len(value) // 4 * 4]
    try:
        text = base64.b64decode(body).decode("ascii", "replace")
    except (ValueError, binascii.Error):
        return None
    return base if '"n":' in text and '"id"' in text else None


def _b64_pem(value: str, base: float) -> float | None:
    """Base64 of ``-----BEGIN ... PRIVATE KEY-----``: decode the head to be sure."""
    head = value[:80]
    try:
        text = base64.b64decode(head[: len(head) // 4 * 4]).decode("ascii", "replace")
    except (ValueError, binascii.Error):
        return None
    return base if "PRIVATE KEY" in text else None


_DOTTED_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{2,}$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:")


def _assigned_value(value: str) -> bool:
    """False for what code puts after ``password =`` that is not a literal secret.

    Attribute paths (``request.form.password``), environment variable names,
    URLs and paths, CSS selectors, labels ending in ``:`` and values that repeat
    the keyword itself are the usual look-alikes.
    """
    low = value.lower()
    return not (
        _DOTTED_NAME.match(value)
        or _ENV_NAME.match(value)
        or _SCHEME.match(low)
        or value.startswith(("/", "#", "@", "+", "-", "."))
        or value.endswith(":")
        or any(word in low for word in ("password", "passwd", "secret", "token"))
        or is_placeholder(value)
    )


def _password(value: str, base: float) -> float | None:
    return base if _assigned_value(value) else None


def _generic_secret(value: str, base: float) -> float | None:
    """Values under ``token``/``key`` names must look generated, not like words or counts."""
    if not _assigned_value(value) or value.isdigit() or len(value) < 12:
        return None
    if char_classes(value) < 2 or not looks_random(value, min_ratio=0.65):
        return None
    return base + 0.1 if looks_random(value, min_ratio=0.8) else base


def _basic(value: str, base: float) -> float | None:
    """``Basic`` credentials decode to ``user:password``."""
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4)).decode("utf-8")
    except (ValueError, binascii.Error):
        return None
    return base if ":" in decoded and decoded.isprintable() else None


def _url_password(value: str, base: float) -> float | None:
    """``user:pass@`` in a URL; ``$VAR`` and ``%s`` style stand-ins are not passwords."""
    if value.startswith(("$", "%s", "{", "[", "*")) or len(value) < 3:
        return None
    return base


_ASSIGN = (
    r"[A-Za-z0-9_.-]{0,30}?[\"'\]]?\s*(?:=>|:=|==|!=|[:=])\s*(?:[\"'`]|(?:new\s+\w+\(\s*[\"']))?"
    r"(?P<secret>[^\s\"'`<>{}$;,()\[\]][^\s\"'`<>{};,()\[\]]{5,127}+)(?![(])"
)

RULES: tuple[Rule, ...] = (
    # --- LLM providers -------------------------------------------------------
    _rule(
        "ANTHROPIC_KEY",
        r"(?P<secret>(?P<pub>sk-ant-)(?:[a-z]{3,6}\d{2}-)?[A-Za-z0-9_-]{32,})",
        ("sk-ant-",),
        0.99,
    ),
    _rule("OPENROUTER_KEY", r"(?P<secret>(?P<pub>sk-or-v1-)[a-f0-9]{64})" + _E, ("sk-or-",), 0.99),
    _rule(
        "OPENAI_KEY",
        r"(?P<secret>(?P<pub>sk-(?:proj-|svcacct-|admin-)?)(?!ant-|or-v1)[A-Za-z0-9_-]{32,})(?![A-Za-z0-9_-])",
        ("sk-",),
        0.7,
        _openai,
    ),
    _rule("GROQ_KEY", r"(?P<secret>(?P<pub>gsk_)[A-Za-z0-9]{52})" + _E, ("gsk_",), 0.95),
    _rule(
        "HUGGINGFACE_TOKEN",
        r"(?P<secret>(?P<pub>hf_|api_org_)[A-Za-z0-9]{34,40})" + _E,
        ("hf_", "api_org_"),
        0.9,
        _random(0.7),
    ),
    _rule("XAI_KEY", r"(?P<secret>(?P<pub>xai-)[A-Za-z0-9]{80})" + _E, ("xai-",), 0.95),
    _rule("PERPLEXITY_KEY", r"(?P<secret>(?P<pub>pplx-)[A-Za-z0-9]{48})" + _E, ("pplx-",), 0.95),
    _rule(
        "REPLICATE_TOKEN",
        r"(?P<secret>(?P<pub>r8_)[A-Za-z0-9]{37})" + _E,
        ("r8_",),
        0.9,
        _random(0.7),
    ),
    _rule(
        "TAVILY_KEY",
        r"(?P<secret>(?P<pub>tvly-)(?:dev-|prod-)?[A-Za-z0-9]{32})" + _E,
        ("tvly-",),
        0.95,
    ),
    _rule("FIRECRAWL_KEY", r"(?P<secret>(?P<pub>fc-)[a-f0-9]{32})" + _E, ("fc-",), 0.8),
    _rule("JINA_KEY", r"(?P<secret>(?P<pub>jina_)[A-Za-z0-9_-]{60})" + _E, ("jina_",), 0.9),
    # --- clouds --------------------------------------------------------------
    _rule(
        "AWS_ACCESS_KEY",
        r"(?P<secret>(?P<pub>AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16})(?![A-Za-z0-9])",
        ("akia", "asia", "abia", "acca", "a3t"),
        0.9,
    ),
    _rule(
        "AWS_SECRET_KEY",
        r"(?i:aws)[A-Za-z0-9_. -]{0,24}?(?i:secret|private|sk)[A-Za-z0-9_ -]{0,24}?[\"']?\s*(?:=>|:=|[:=])\s*[\"']?"
        r"(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        ("aws",),
        0.85,
        _random(0.75),
        bounded=False,
    ),
    # A minted canary shaped like an AWS secret key starts with the canary marker, so
    # it is recognised whole without the ``aws_secret_access_key =`` context a real
    # key needs (its random body alone can look path-like or wordy to HIGH_ENTROPY).
    _rule(
        "AWS_SECRET_KEY",
        r"(?P<secret>(?P<pub>cgm)[A-Za-z0-9/+]{37})(?![A-Za-z0-9/+=])",
        ("cgm",),
        0.9,
    ),
    _rule(
        "GOOGLE_API_KEY",
        r"(?P<secret>(?P<pub>AIza)[0-9A-Za-z_-]{35})(?![A-Za-z0-9])",
        ("aiza",),
        0.9,
    ),
    _rule("GOOGLE_OAUTH_TOKEN", r"(?P<secret>(?P<pub>ya29\.)[0-9A-Za-z_-]{30,})", ("ya29.",), 0.9),
    _rule(
        "GOOGLE_CLIENT_SECRET",
        r"(?P<secret>(?P<pub>GOCSPX-)[A-Za-z0-9_-]{28})" + _E,
        ("gocspx-",),
        0.95,
    ),
    _rule(
        "AZURE_STORAGE_KEY",
        r"(?i:AccountKey)=(?P<secret>[A-Za-z0-9+/]{86}==)",
        ("accountkey",),
        0.95,
        bounded=False,
    ),
    _rule(
        "DIGITALOCEAN_TOKEN",
        r"(?P<secret>(?P<pub>do[opr]_v1_)[a-f0-9]{64})" + _E,
        ("dop_v1_", "doo_v1_", "dor_v1_"),
        0.95,
    ),
    _rule(
        "DATABRICKS_TOKEN", r"(?P<secret>(?P<pub>dapi)[a-f0-9]{32}(?:-\d)?)" + _E, ("dapi",), 0.85
    ),
    # --- code hosting and package registries ----------------------------------
    _rule(
        "GITHUB_TOKEN",
        r"(?P<secret>(?P<pub>gh[pousr]_)[A-Za-z0-9]{36,251})" + _E,
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        0.95,
    ),
    _rule(
        "GITHUB_TOKEN",
        r"(?P<secret>(?P<pub>github_pat_)[A-Za-z0-9]{22}_[A-Za-z0-9]{59})" + _E,
        ("github_pat_",),
        0.99,
    ),
    _rule(
        "GITLAB_TOKEN",
        r"(?P<secret>(?P<pub>gl(?:pat|ptt|rt|dt|oas)-)[A-Za-z0-9_-]{20,})",
        ("glpat-", "glptt-", "glrt-", "gldt-", "gloas-"),
        0.95,
    ),
    _rule(
        "GITLAB_TOKEN",
        r"(?P<secret>(?P<pub>GR1348941)[A-Za-z0-9_-]{20})" + _E,
        ("gr1348941",),
        0.95,
    ),
    _rule("NPM_TOKEN", r"(?P<secret>(?P<pub>npm_)[A-Za-z0-9]{36})" + _E, ("npm_",), 0.9),
    _rule(
        "PYPI_TOKEN",
        r"(?P<secret>(?P<pub>pypi-)AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,})",
        ("pypi-ageichlwas5vcmc",),
        0.99,
    ),
    _rule(
        "DOCKERHUB_TOKEN",
        r"(?P<secret>(?P<pub>dckr_pat_)[A-Za-z0-9_-]{27})" + _E,
        ("dckr_pat_",),
        0.95,
    ),
    _rule("RUBYGEMS_KEY", r"(?P<secret>(?P<pub>rubygems_)[a-f0-9]{48})" + _E, ("rubygems_",), 0.95),
    _rule("NUGET_KEY", r"(?P<secret>(?P<pub>oy2)[a-z0-9]{43})" + _E, ("oy2",), 0.8),
    _rule(
        "SOURCEGRAPH_TOKEN",
        r"(?P<secret>(?P<pub>sgp_)(?:local_|[a-f0-9]{16}_)?[a-f0-9]{40})" + _E,
        ("sgp_",),
        0.95,
    ),
    _rule("ATLASSIAN_TOKEN", r"(?P<secret>(?P<pub>ATATT3)[A-Za-z0-9_=-]{150,})", ("atatt3",), 0.95),
    _rule(
        "POSTMAN_KEY", r"(?P<secret>(?P<pub>PMAK-)[a-f0-9]{24}-[a-f0-9]{34})" + _E, ("pmak-",), 0.95
    ),
    _rule("ARTIFACTORY_KEY", r"(?P<secret>(?P<pub>AKCp)[A-Za-z0-9]{69})" + _E, ("akcp",), 0.9),
    # --- chat, mail, payments, SaaS ---------------------------------------------
    _rule("SLACK_TOKEN", r"(?P<secret>(?P<pub>xox[abposre]-)[A-Za-z0-9-]{10,})", ("xox",), 0.95),
    _rule("SLACK_TOKEN", r"(?P<secret>(?P<pub>xapp-)\d-?[A-Za-z0-9/+-]{20,})", ("xapp-",), 0.9),
    _rule(
        "SLACK_WEBHOOK",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9_]{8,}/[A-Za-z0-9_]{8,}/[A-Za-z0-9_]{16,})",
        ("hooks.slack.com",),
        0.95,
    ),
    _rule(
        "TEAMS_WEBHOOK",
        r"https://[a-z0-9-]+\.webhook\.office\.com/webhookb2/(?P<secret>[A-Za-z0-9@/_-]{60,})",
        ("webhook.office.com",),
        0.9,
        at_anchor=False,
    ),
    _rule(
        "TEAMS_WEBHOOK",
        r"outlook\.office(?:365)?\.com/webhook/(?P<secret>[0-9a-f-]{36}@[0-9a-f-]{36}/IncomingWebhook/[0-9a-f]{32}/[0-9a-f-]{36})",
        ("outlook.office",),
        0.9,
    ),
    _rule(
        "DISCORD_WEBHOOK",
        r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/(?P<secret>\d{17,20}/[A-Za-z0-9_-]{60,})",
        ("/api/webhooks/",),
        0.95,
        at_anchor=False,
    ),
    _rule(
        "TELEGRAM_BOT_TOKEN",
        r"(?<![0-9])(?P<secret>\d{8,10}:AA[A-Za-z0-9_-]{33})" + _E,
        (":aa",),
        0.9,
        at_anchor=False,
    ),
    _rule(
        "STRIPE_KEY",
        r"(?P<secret>(?P<pub>[sr]k_live_)[A-Za-z0-9]{20,})" + _E,
        ("sk_live_", "rk_live_"),
        0.95,
    ),
    _rule(
        "STRIPE_KEY",
        r"(?P<secret>(?P<pub>[sr]k_test_)[A-Za-z0-9]{20,})" + _E,
        ("sk_test_", "rk_test_"),
        0.75,
    ),
    _rule(
        "SENDGRID_KEY",
        r"(?P<secret>(?P<pub>SG\.)[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})" + _E,
        ("sg.",),
        0.95,
    ),
    _rule("MAILGUN_KEY", r"(?P<secret>(?P<pub>key-)[0-9a-f]{32})" + _E, ("key-",), 0.7),
    _rule(
        "MAILCHIMP_KEY",
        r"(?<![A-Za-z0-9])(?P<secret>[0-9a-f]{32}-us\d{1,2})" + _E,
        ("-us",),
        0.85,
        at_anchor=False,
    ),
    _rule(
        "SHOPIFY_TOKEN",
        r"(?P<secret>(?P<pub>shp(?:at|ca|pa|ss)_)[a-fA-F0-9]{32})" + _E,
        ("shpat_", "shpca_", "shppa_", "shpss_"),
        0.95,
    ),
    _rule(
        "SQUARE_TOKEN",
        r"(?P<secret>(?P<pub>sq0(?:atp|csp)-)[A-Za-z0-9_-]{22,43})" + _E,
        ("sq0atp-", "sq0csp-"),
        0.95,
    ),
    _rule("TWILIO_KEY", r"(?P<secret>(?P<pub>SK)[0-9a-f]{32})(?![A-Za-z0-9])", ("sk",), 0.7),
    _rule(
        "DYNATRACE_TOKEN",
        r"(?P<secret>(?P<pub>dt0c01\.)[A-Z0-9]{24}\.[A-Z0-9]{64})" + _E,
        ("dt0c01.",),
        0.95,
    ),
    _rule(
        "NEWRELIC_KEY",
        r"(?P<secret>(?P<pub>NRAK-|NRI[IQ]-|NRAA-)[A-Za-z0-9_-]{27,32})" + _E,
        ("nrak-", "nrii-", "nriq-", "nraa-"),
        0.9,
    ),
    _rule(  # license (ingest) keys: 40 characters, ending in NRAL
        "NEWRELIC_KEY",
        r"(?<![A-Za-z0-9])(?P<secret>(?:[0-9a-f]{36}|eu01xx[0-9a-f]{30})NRAL)" + _E,
        ("nral",),
        0.85,
        at_anchor=False,
    ),
    _rule("OKTA_TOKEN", r"\bSSWS\s+(?P<secret>00[A-Za-z0-9_-]{40})" + _E, ("ssws",), 0.9),
    _rule(  # Azure DevOps PAT (2024 format): 84 characters, "AZDO" at 77-80
        "AZURE_DEVOPS_PAT",
        r"(?<![A-Za-z0-9])(?P<secret>[A-Za-z0-9]{76}AZDO[A-Za-z0-9]{4})" + _E,
        ("azdo",),
        0.9,
        at_anchor=False,
    ),
    _rule(  # Azure DevOps PAT (before 2024): 52 base32 characters, given by an ADO name
        "AZURE_DEVOPS_PAT",
        r"(?i:ado|azdo|vsts|(?:azure[_-]?)?devops)[_-]?(?i:pat|token)[\"']?[ \t]*(?:=>|:=|=|:)"
        r"[ \t]*[\"']?(?P<secret>[a-z2-7]{52})" + _E,
        (
            "ado_pat",
            "ado-pat",
            "adopat",
            "ado_token",
            "azdo_pat",
            "azdo_token",
            "vsts_pat",
            "vsts_token",
            "devops_pat",
            "devops-pat",
            "devopspat",
            "devops_token",
        ),
        0.8,
        _base32_token,
        bounded=False,
    ),
    _rule(  # Grafana API key (before service accounts): base64 of {"k":"...","n":...}
        "GRAFANA_KEY",
        r"(?P<secret>(?P<pub>eyJrIjoi)[A-Za-z0-9+/]{40,}={0,2})(?![A-Za-z0-9+/=_.-])",
        ("eyjrijoi",),
        0.85,
        _grafana,
    ),
    _rule(  # a device access token in a ThingsBoard telemetry URL
        "THINGSBOARD_TOKEN",
        r"thingsboard\.cloud/api/v1/(?P<secret>[A-Za-z0-9]{20})/",
        ("thingsboard.cloud/api/v1/",),
        0.8,
    ),
    _rule(  # Salesforce session/access token: org id, "!", then the session part
        "SALESFORCE_TOKEN",
        r"(?P<secret>(?P<pub>00D)[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?![A-Za-z0-9._]{80,})" + _E,
        ("00d",),
        0.85,
    ),
    _rule(  # Code Climate test reporter id / repo token: 64 hex digits given by name
        "CODECLIMATE_TOKEN",
        r"(?i:cc_test_reporter_id|codeclimate_repo_token)[\"'\s:=]{1,6}(?P<secret>[0-9a-f]{64})"
        + _E,
        ("cc_test_reporter_id", "codeclimate_repo_token"),
        0.75,
    ),
    _rule(  # a SonarQube/SonarCloud token: 40 hex digits given as sonar.login or the like
        "SONARQUBE_TOKEN",
        r"(?i:sonar)[A-Za-z0-9_.-]{0,5}(?i:login|token)[\"'\s:=,]{1,6}(?<![A-Za-z0-9])"
        r"(?P<secret>[0-9a-f]{40})" + _E,
        ("sonar",),
        0.8,
        bounded=False,  # -Dsonar.login=… (a JVM property): the name follows a letter
    ),
    _rule(
        "TWITCH_STREAM_KEY",
        r"(?P<secret>(?P<pub>live_)\d{6,10}_[A-Za-z0-9]{30})" + _E,
        ("live_",),
        0.85,
    ),
    _rule(
        "KUBERNETES_BOOTSTRAP_TOKEN",
        r"(?i:bootstrap)[A-Za-z0-9_ -]{0,20}?[\"']?\s*[:= ]\s*[\"']?(?P<secret>[a-z0-9]{6}\.[a-z0-9]{16})"
        + _E,
        ("bootstrap",),
        0.85,
        bounded=False,
    ),
    _rule(
        "DOPPLER_TOKEN",
        r"(?P<secret>(?P<pub>dp\.(?:pt|st|sa|ct|scim|audit)\.)[A-Za-z0-9_.-]{40,})",
        ("dp.",),
        0.95,
    ),
    _rule("DROPBOX_TOKEN", r"(?P<secret>(?P<pub>sl\.)[A-Za-z0-9_-]{130,})", ("sl.",), 0.9),
    _rule(
        "VAULT_TOKEN",
        r"(?P<secret>(?P<pub>hv[sbr]\.)[A-Za-z0-9_-]{90,})",
        ("hvs.", "hvb.", "hvr."),
        0.9,
    ),
    _rule(
        "MAPBOX_TOKEN",
        r"(?P<secret>(?P<pub>[st]k\.)eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,})",
        ("sk.eyj", "tk.eyj"),
        0.9,
    ),
    _rule(
        "AGE_SECRET_KEY",
        r"(?P<secret>(?P<pub>AGE-SECRET-KEY-1)[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})",
        ("age-secret-key-1",),
        0.99,
    ),
    # --- generic structures ---------------------------------------------------
    _rule(
        "JWT",
        r"(?P<secret>(?P<pub>eyJ)[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*)",
        ("eyj",),
        0.8,
        _jwt,
    ),
    _rule(
        "PRIVATE_KEY",
        r"(?P<secret>(?P<pub>LS0tLS1CRUdJTi)[A-Za-z0-9+/]{40,}={0,2})",
        ("ls0tls1crudjti",),
        0.9,
        _b64_pem,
    ),
    _rule(
        "PASSWORD_HASH",
        r"(?P<secret>(?P<pub>\$2[aby]\$)\d{2}\$[./A-Za-z0-9]{53}|(?P<pub2>\$[156]\$)(?:rounds=\d+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{22,86})",
        ("$2a$", "$2b$", "$2y$", "$1$", "$5$", "$6$"),
        0.6,
    ),
    _rule(  # Cisco IOS type 8 (PBKDF2-SHA256) and type 9 (scrypt)
        "PASSWORD_HASH",
        r"(?P<secret>\$[89]\$[./A-Za-z0-9]{14}\$[./A-Za-z0-9]{43})" + _E,
        ("$8$", "$9$"),
        0.6,
    ),
    _rule(  # Kerberos 5 AS-REP and TGS-REP (etype 23), as roasting tools print them
        "PASSWORD_HASH",
        r"(?P<secret>\$krb5(?:asrep|tgs)\$23\$(?:[^\s$:]{1,256}:|\*[^\s*]{1,256}\*\$)?"
        r"[0-9a-fA-F]{32}\$[0-9a-fA-F]{64,})" + _E,
        ("$krb5asrep$", "$krb5tgs$"),
        0.8,
    ),
    _rule(
        "URL_CREDENTIALS",
        r"://[^\s:/@'\"<>]{1,64}:(?P<secret>[^\s:/@'\"<>]{1,128})@[A-Za-z0-9.\[_%-]",
        ("://",),
        0.8,
        _url_password,
        bounded=False,
    ),
    _rule(
        "BEARER_TOKEN",
        r"(?i:\bbearer)\s+(?P<secret>[A-Za-z0-9._~+/-]{20,}=*)",
        ("bearer",),
        0.6,
        _random(0.6),
    ),
    _rule(
        "BASIC_AUTH",
        r"(?i:\bbasic)\s+(?P<secret>[A-Za-z0-9+/]{12,}={0,2})(?![A-Za-z0-9+/=])",
        ("basic",),
        0.6,
        _basic,
    ),
    _rule(
        "PASSWORD",
        r"(?i:pass(?:word|wd|phrase)?|pwd)" + _ASSIGN,
        ("pass", "pwd"),
        0.5,
        _password,
        bounded=False,
    ),
    _rule(
        "GENERIC_SECRET",
        r"(?i:secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|auth[_-]?key|credentials?)"
        + _ASSIGN,
        (
            "secret",
            "token",
            "apikey",
            "api_key",
            "api-key",
            "access_key",
            "access-key",
            "private_key",
            "private-key",
            "auth_key",
            "auth-key",
            "credential",
        ),
        0.5,
        _generic_secret,
        bounded=False,
    ),
)
