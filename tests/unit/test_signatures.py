"""Standard Webhooks verification as a CMS integrator meets it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from services.ingest.signatures import NotText, SignatureRefused, verify
from tests.conftest import ALE_SECRET, LERUM_SECRET

BODY = b'{"title": "Ny f\xc3\xb6rskola"}'


def _headers(
    body: bytes = BODY, at: datetime | None = None, secret: str = LERUM_SECRET
) -> dict[str, str]:
    at = at or datetime.now(UTC)
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_1", at, body.decode()),
    }


def test_a_valid_signature_returns_the_webhook_id() -> None:
    assert verify(Webhook(LERUM_SECRET), BODY, _headers()) == "msg_1"


def test_header_names_are_case_insensitive() -> None:
    headers = {k.upper(): v for k, v in _headers().items()}
    assert verify(Webhook(LERUM_SECRET), BODY, headers) == "msg_1"


def test_one_of_several_signatures_may_match() -> None:
    headers = _headers()
    headers["webhook-signature"] = "v1,AAAA " + headers["webhook-signature"]
    assert verify(Webhook(LERUM_SECRET), BODY, headers) == "msg_1"


def test_a_changed_body_is_refused() -> None:
    with pytest.raises(SignatureRefused, match="no signature"):
        verify(Webhook(LERUM_SECRET), BODY + b" ", _headers())


def test_another_tenants_secret_is_refused() -> None:
    with pytest.raises(SignatureRefused):
        verify(Webhook(LERUM_SECRET), BODY, _headers(secret=ALE_SECRET))


@pytest.mark.parametrize("minutes", [-6, 6])
def test_timestamps_beyond_five_minutes_are_refused(minutes: int) -> None:
    headers = _headers(at=datetime.now(UTC) + timedelta(minutes=minutes))
    with pytest.raises(SignatureRefused, match="5 minutes"):
        verify(Webhook(LERUM_SECRET), BODY, headers)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers_are_named(header: str) -> None:
    headers = _headers()
    del headers[header]
    with pytest.raises(SignatureRefused, match=header):
        verify(Webhook(LERUM_SECRET), BODY, headers)


@pytest.mark.parametrize("value", ["nonsense", "v1,%%%", "v1,a,b"])
def test_garbled_signatures_are_refused(value: str) -> None:
    headers = {**_headers(), "webhook-signature": value}
    with pytest.raises(SignatureRefused):
        verify(Webhook(LERUM_SECRET), BODY, headers)


def test_garbled_timestamp_is_refused() -> None:
    with pytest.raises(SignatureRefused, match="timestamp"):
        verify(Webhook(LERUM_SECRET), BODY, {**_headers(), "webhook-timestamp": "soon"})


def test_a_body_that_is_not_utf8_is_not_text() -> None:
    with pytest.raises(NotText):
        verify(Webhook(LERUM_SECRET), b"\xff", _headers(body=b"x"))
