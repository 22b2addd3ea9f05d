"""The ID token's checks, with tokens minted here: a wrong signature, audience, issuer,
expiry or nonce (a token replayed from another login) is refused; so is "none"."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from services.gate.oidc import LoginRefused, verify_id_token

ISSUER, CLIENT, NONCE = "https://login.example", "gatekeeper-console", "n-123"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256"})
IMPOSTOR = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256"})
KEYS = KeySet.import_key_set({"keys": [KEY.as_dict(private=False)]})


def _token(key: RSAKey = KEY, **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "sara",
        "email": "sara.svensson@lerum.se",
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
        **changes,
    }
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)


def _verify(token: str, nonce: str = NONCE) -> dict[str, Any]:
    return verify_id_token(
        token, KEYS, issuer=ISSUER, client_id=CLIENT, nonce=nonce, now=time.time()
    )


def test_a_sound_token_gives_its_claims() -> None:
    assert _verify(_token())["email"] == "sara.svensson@lerum.se"


@pytest.mark.parametrize(
    ("token", "nonce"),
    [
        pytest.param(lambda: _token(IMPOSTOR), NONCE, id="signed by another key, same kid"),
        pytest.param(lambda: _token(aud="someone-else"), NONCE, id="another audience"),
        pytest.param(lambda: _token(iss="https://evil.example"), NONCE, id="another issuer"),
        pytest.param(lambda: _token(exp=int(time.time()) - 3600), NONCE, id="expired"),
        pytest.param(lambda: _token(), "the-nonce-of-this-login", id="replayed from a login"),
        pytest.param(lambda: _token(nonce=None), NONCE, id="no nonce"),
        pytest.param(lambda: _token() + "x", NONCE, id="altered"),
    ],
)
def test_a_tampered_token_is_refused(token: Any, nonce: str) -> None:
    with pytest.raises(LoginRefused):
        _verify(token(), nonce)


def test_an_unsigned_token_is_refused() -> None:
    header = "eyJhbGciOiJub25lIn0"  # {"alg":"none"}
    body = _token().split(".")[1]
    with pytest.raises(LoginRefused):
        _verify(f"{header}.{body}.")
