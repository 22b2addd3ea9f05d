"""Fixtures shared by every tier: events, secrets and the shipped configuration."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from schemas import Contact, Sender
from tests import properties  # noqa: F401  (loads the example counts for every tier)

LERUM_SECRET = "whsec_" + base64.b64encode(b"lerum-test-secret-0123456789abcd").decode()
ALE_SECRET = "whsec_" + base64.b64encode(b"ale-test-secret-0123456789abcdef").decode()
#: What gatekeeper signs its outbound webhooks with: never the CMS's secret.
LERUM_OUTBOUND = "whsec_" + base64.b64encode(b"lerum-outbound-secret-0123456789").decode()
ALE_OUTBOUND = "whsec_" + base64.b64encode(b"ale-outbound-secret-0123456789ab").decode()
OPERATOR_TOKEN = "test-operator-token"
#: People in the operators file the end-to-end pipeline runs with: token by name.
OPERATOR_TOKENS = {
    "Anna Andersson": "anna-lerum-publisher",
    "Viktor Viewer": "viktor-lerum-viewer",
    "Alva Ale": "alva-ale-publisher",
}
_DIGESTS = [hashlib.sha256(t.encode()).hexdigest() for t in OPERATOR_TOKENS.values()]
OPERATORS_YAML = f"""
operators:
  - {{name: Anna Andersson, email: anna.andersson@lerum.se, tenants: [lerum], role: publisher,
     token_sha256: {_DIGESTS[0]}}}
  - {{name: Viktor Viewer, email: viktor.viewer@lerum.se, tenants: [lerum], role: viewer,
     token_sha256: {_DIGESTS[1]}}}
  - {{name: Alva Ale, email: alva@ale.se, tenants: [ale], role: publisher,
     token_sha256: {_DIGESTS[2]}}}
"""
OPERATOR_AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
SECRETS_ENV = {
    "GATEKEEPER_SECRET_LERUM": LERUM_SECRET,
    "GATEKEEPER_SECRET_ALE": ALE_SECRET,
    "GATEKEEPER_OPERATOR_TOKEN": OPERATOR_TOKEN,
    "GATEKEEPER_OUTBOUND_LERUM": LERUM_OUTBOUND,
    "GATEKEEPER_OUTBOUND_ALE": ALE_OUTBOUND,
}


def with_outbound_secrets(raw: dict[str, Any]) -> dict[str, Any]:
    """A deployment file's tenants given the outbound secrets their webhooks sign with."""
    for name in ("lerum", "ale"):
        if name in raw["tenants"]:
            raw["tenants"][name]["outbound_secret_env"] = f"GATEKEEPER_OUTBOUND_{name.upper()}"
    return raw


#: Lerum as the sender of its release orders.
LERUM_SENDER = Sender(
    organization="Lerums kommun",
    unit="Sektor Lärande",
    contact=Contact(name="Kommunikationsenheten"),
    logo_url="https://www.lerum.se/logo.svg",
    website="https://www.lerum.se",
)


def content_event(**overrides: Any) -> dict[str, Any]:
    """A valid ContentEvent v1 as a CMS would send it, for Lerum's web channel."""
    event: dict[str, Any] = {
        "schema_version": 1,
        "tenant": "lerum",
        "item_id": "news-2026-001",
        "version": 1,
        "action": "publish",
        "audience": "external",
        "channels": ["web"],
        "title": "Ny förskola i Gråbo",
        "body": "Lerums kommun öppnar en ny förskola i Gråbo i augusti.",
        "summary": "Ny förskola öppnar i augusti.",
        "recipients": "Invånare i Lerum",
        "publish_at": "2026-01-01T08:00:00+01:00",
        "unit": "Sektor Lärande",
    }
    event.update(overrides)
    return event


def internal_notice(**overrides: Any) -> dict[str, Any]:
    return content_event(
        **{
            "audience": "internal",
            "channels": ["intranet"],
            "recipients": "Alla medarbetare",
            **overrides,
        }
    )


@pytest.fixture
def make_event() -> Callable[..., dict[str, Any]]:
    return content_event


#: Each tier's marker, by the folder its tests live in; a few files are also slow
#: (whole fault rounds, restarts past a session timeout) or drive a real browser.
_TIERS = {"unit": "unit", "service": "service", "fuzz": "fuzz", "e2e": "e2e", "image": "image"}
_TIERS["ops"] = "ops"
_SLOW = {
    "test_faults.py",
    "test_restarts.py",
    "test_outage.py",
    "test_separate_broker.py",
    "test_replicas.py",
}
_BROWSER = {"test_console.py", "test_sso.py", "test_followup.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path
        tier = _TIERS.get(path.parent.name)
        if tier:
            item.add_marker(tier)
        if path.name in _SLOW:
            item.add_marker("slow")
        if path.name in _BROWSER:
            item.add_marker("browser")
