"""Invitation mail over SMTP.

smtplib is blocking, so a send runs on a worker thread and never stalls the
event loop. A failed send is an error of its own (502): the caller's
transaction then rolls back, so no invitation exists whose link went nowhere.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage

from cogumi.config import Settings
from cogumi.errors import CogumiError

log = logging.getLogger(__name__)


class MailNotSent(CogumiError):
    """The SMTP server refused the message or could not be reached."""

    status_code = 502
    code = "mail_not_sent"


def invitation_message(
    settings: Settings,
    *,
    to: str,
    org_name: str,
    inviter: str,
    role: str,
    url: str,
    expires_at: datetime,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = f"You are invited to {org_name} on COGUMI AI Protect"
    message.set_content(
        f"{inviter} invited you to join the organisation {org_name!r} "
        f"on COGUMI AI Protect as {role}.\n\n"
        f"Accept the invitation here:\n{url}\n\n"
        f"The link works once and expires at {expires_at:%Y-%m-%d %H:%M} UTC.\n"
        "If you did not expect this, ignore this message.\n"
    )
    return message


def _send_blocking(settings: Settings, message: EmailMessage) -> None:
    assert settings.smtp_host is not None
    with smtplib.SMTP(
        settings.smtp_host, settings.smtp_port, timeout=settings.request_timeout_sec
    ) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            smtp.login(settings.smtp_user, password)
        smtp.send_message(message)


async def send(settings: Settings, message: EmailMessage) -> None:
    """Deliver ``message`` through the configured SMTP server; 502 ``MailNotSent`` on failure."""
    try:
        await asyncio.to_thread(_send_blocking, settings, message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("invitation mail not sent: %s", type(exc).__name__)
        raise MailNotSent("the invitation mail could not be sent; check the SMTP settings") from exc
