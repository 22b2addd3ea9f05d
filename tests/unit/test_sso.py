"""Who an ID token makes a person, and what a session cookie is worth: pure, no provider."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.gate.sessions import MemoryRevocations, Principal, Sessions, fernet_key
from services.gate.sso import identity_of
from services.runtime.operators import Identity

SARA = Identity("Sara Svensson", "sara.svensson@lerum.se", frozenset({"lerum"}), "publisher")
TENANTS = ("lerum", "ale")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _file(email: str) -> Identity | None:
    return SARA if email.lower() == SARA.email else None


def test_the_file_s_person_is_found_by_e_mail_whatever_its_case() -> None:
    claims = {"email": "Sara.Svensson@LERUM.se", "email_verified": True}
    assert identity_of(claims, _file, TENANTS) == SARA


def test_an_unverified_or_missing_e_mail_is_nobody() -> None:
    assert identity_of({"email": SARA.email, "email_verified": False}, _file, TENANTS) is None
    assert identity_of({"sub": "x"}, _file, TENANTS) is None


def test_the_roles_claim_grants_known_tenants_only_and_the_lesser_role() -> None:
    claims = {
        "email": "rut@ale.se",
        "name": "Rut Roll",
        "roles": ["gatekeeper.ale.publisher", "gatekeeper.lerum.viewer", "gatekeeper.x.publisher"],
    }
    found = identity_of(claims, _file, TENANTS, roles_claim="roles")
    assert found == Identity("Rut Roll", "rut@ale.se", frozenset({"ale", "lerum"}), "viewer")
    assert identity_of(claims, _file, TENANTS) is None, "without the setting, no roles"
    publisher = {**claims, "roles": ["gatekeeper.ale.publisher", "gatekeeper.ale.viewer"]}
    granted = identity_of(publisher, _file, TENANTS, roles_claim="roles")
    assert granted is not None
    assert granted.role == "publisher"
    nothing = {**claims, "roles": ["admin", "gatekeeper.ale.owner", "gatekeeper"]}
    assert identity_of(nothing, _file, TENANTS, roles_claim="roles") is None


@given(st.dictionaries(st.text(max_size=12), st.one_of(st.text(), st.lists(st.text()))))
def test_any_claims_give_a_known_person_or_nobody(claims: dict[str, object]) -> None:
    found = identity_of(claims, _file, TENANTS, roles_claim="roles")
    assert (
        found is None
        or found == SARA
        or found.tenants == "*"
        or found.tenants <= frozenset(TENANTS)
    )


def _sessions(key: str = "k" * 32) -> tuple[Sessions, MemoryRevocations]:
    revoked = MemoryRevocations()
    return Sessions(fernet_key(key), revoked), revoked


def test_a_session_lives_in_its_cookie_until_8_hours_or_1_hour_unused() -> None:
    sessions, _ = _sessions()
    session = sessions.start(Principal("email", SARA.email or ""), T0)
    cookie = sessions.cookie(session)
    assert (SARA.email or "") not in cookie, "the cookie is encrypted"
    assert sessions.open(cookie, T0 + timedelta(minutes=59)) == session
    assert sessions.open(cookie, T0 + timedelta(minutes=61)) is None, "an hour unused"
    # used every 50 minutes, it still ends 8 hours after login
    at, current = T0, session
    for _ in range(9):
        at += timedelta(minutes=50)
        opened = sessions.open(sessions.cookie(current), at)
        if opened is None:
            break
        current = sessions.used(opened, at) or opened
    assert at - T0 <= timedelta(hours=8, minutes=50)
    assert at - T0 > timedelta(hours=7)
    assert sessions.open(sessions.cookie(current), T0 + timedelta(hours=8)) is None


def test_a_forged_altered_or_foreign_cookie_or_a_logged_out_session_is_nothing() -> None:
    sessions, revoked = _sessions()
    session = sessions.start(Principal("key", "ab" * 32), T0)
    cookie = sessions.cookie(session)
    assert sessions.open(cookie[:-4] + "AAAA", T0) is None
    assert sessions.open("not a cookie", T0) is None
    other, _ = _sessions("another key of at least 32 characters")
    assert other.open(cookie, T0) is None
    forged = sessions.cookie(replace(session, principal=Principal("key", "cd" * 32)))
    assert sessions.open(forged, T0) is not None, "only the key holder can make one"
    asyncio.run(sessions.end(session))
    assert revoked.ended(session.session_id)
    assert sessions.open(cookie, T0) is None
