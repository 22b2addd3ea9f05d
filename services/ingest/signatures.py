"""Standard Webhooks verification of a CMS request, with a reason a CMS integrator can act on."""

from __future__ import annotations

import binascii
from collections.abc import Mapping

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

__all__ = ["NotText", "SignatureRefused", "verify"]

_REQUIRED = ("webhook-id", "webhook-timestamp", "webhook-signature")


class SignatureRefused(Exception):
    """The request is not provably from the tenant's CMS."""


class NotText(Exception):
    """The body is not UTF-8, so it can be neither signed text nor JSON."""


def verify(webhook: Webhook, body: bytes, headers: Mapping[str, str]) -> str:
    """Check the signature and the 5-minute timestamp window; return the ``webhook-id``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    missing = [h for h in _REQUIRED if not lowered.get(h)]
    if missing:
        raise SignatureRefused(f"missing header(s): {', '.join(missing)}")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotText(str(exc)) from None
    try:
        webhook.verify(body, lowered, json_parse=False)
    except WebhookVerificationError as exc:
        text = str(exc)
        if "timestamp" in text.lower() or "Invalid Signature Headers" in text:
            raise SignatureRefused(
                f"webhook-timestamp is not within 5 minutes of now ({text})"
            ) from None
        raise SignatureRefused("no signature in webhook-signature matches the body") from None
    except (ValueError, binascii.Error):
        raise SignatureRefused("webhook-signature is not of the form v1,<base64>") from None
    return lowered["webhook-id"]
