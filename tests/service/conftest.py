"""One service's handlers, built with in-memory ports: no broker, no processes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from services.gate.sessions import MemoryRevocations, Sessions, fernet_key
from services.runtime.config import DEFAULT_CONFIG_PATH, Deployment, load_deployment
from tests.conftest import SECRETS_ENV, with_outbound_secrets


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def deployment() -> Deployment:
    return load_deployment(DEFAULT_CONFIG_PATH, SECRETS_ENV)


@pytest.fixture
def webhook_deployment(tmp_path: Path) -> Callable[[str], Deployment]:
    """The shipped deployment with Lerum's web channel sent to a webhook at *url*."""

    def make(url: str) -> Deployment:
        raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
        for channel in raw["tenants"]["lerum"]["channels"]:
            if channel["name"] == "web":
                channel["transport"] = {
                    "kind": "webhook",
                    "url": url,
                    "retries": {"schedule": [0, 0.001]},
                }
        path = tmp_path / "gatekeeper.yaml"
        path.write_text(yaml.safe_dump(with_outbound_secrets(raw), allow_unicode=True))
        return load_deployment(path, SECRETS_ENV)

    return make


def memory_sessions(key: str = "a-session-key-for-tests-only-0123456789") -> Sessions:
    """Console sessions with a fixed key and this process's revocations."""
    return Sessions(fernet_key(key), MemoryRevocations())
