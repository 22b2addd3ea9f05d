"""Single sign-on with OpenID Connect: the console as a confidential client.

Authorization code flow with PKCE (S256), ``state`` and ``nonce``; the
provider's endpoints from its discovery document; the ID token's signature
checked against the provider's JWKS (fetched again when a token names a key
not seen yet, so a key rotation needs no restart), and its issuer, audience,
expiry and nonce checked by joserfc. Logout at the provider when it offers
``end_session_endpoint`` (RP-initiated logout).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

import aiohttp
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

__all__ = ["LoginRefused", "LoginStart", "OidcClient", "OidcConfig", "verify_id_token"]

#: The algorithms an ID token may be signed with (never "none", never HMAC).
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
#: Clock difference allowed between the provider and the gate.
LEEWAY_S = 60
#: A key set is fetched again for an unknown key at most this often. ID tokens come
#: from the provider's token endpoint, never from the browser, so this guards only
#: against a provider that keeps naming a key it does not list.
JWKS_REFRESH_S = 1.0


class LoginRefused(Exception):
    """The login cannot be trusted; the message says why (for the log, not the page)."""


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    #: {GATEKEEPER_CONSOLE_URL}/oidc/callback
    redirect_uri: str
    #: {GATEKEEPER_CONSOLE_URL}/login
    post_logout_uri: str
    provider_name: str = "kommunens konto"
    roles_claim: str | None = None


@dataclass(frozen=True)
class LoginStart:
    """What the state cookie keeps between the redirect and the callback."""

    state: str
    nonce: str
    verifier: str
    started: float


def verify_id_token(
    token: str, keys: KeySet, *, issuer: str, client_id: str, nonce: str, now: float
) -> dict[str, Any]:
    """The ID token's claims, once its signature, issuer, audience, expiry and nonce
    hold; :class:`LoginRefused` otherwise (``InvalidKeyIdError`` passes through, so
    the caller can fetch the keys again)."""
    try:
        decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
    except InvalidKeyIdError:
        raise
    except (JoseError, ValueError) as exc:
        raise LoginRefused(f"the ID token does not verify: {exc}") from None
    claims = dict(decoded.claims)
    registry = jwt.JWTClaimsRegistry(
        now=int(now),
        leeway=LEEWAY_S,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        exp={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise LoginRefused(f"the ID token's claims do not hold: {exc}") from None
    azp = claims.get("azp")
    if isinstance(claims.get("aud"), list) and len(claims["aud"]) > 1 and azp != client_id:
        raise LoginRefused("the ID token is for several audiences and not authorized for us")
    return claims


class OidcClient:
    """The provider as the console sees it: discovery, keys, code exchange, logout."""

    def __init__(self, config: OidcConfig, timeout_s: float = 10.0) -> None:
        self.config = config
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    async def _get(self, url: str) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession(timeout=self._timeout) as http,
            http.get(url, allow_redirects=False) as response,
        ):
            if response.status != 200:
                raise LoginRefused(f"{url} answered {response.status}")
            found: dict[str, Any] = await response.json(content_type=None)
            return found

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            found = await self._get(url)
            if found.get("issuer") != self.config.issuer:
                raise LoginRefused(f"the discovery document names issuer {found.get('issuer')!r}")
            self._metadata = found
        return self._metadata

    async def _key_set(self, refresh: bool = False) -> KeySet:
        stale = time.monotonic() - self._keys_at >= JWKS_REFRESH_S
        if self._keys is None or (refresh and stale):
            found = await self._get((await self.metadata())["jwks_uri"])
            self._keys = KeySet.import_key_set(cast(Any, found))
            self._keys_at = time.monotonic()
        return self._keys

    async def start(self) -> tuple[str, LoginStart]:
        """Where to send the browser, and what to keep until it comes back."""
        meta = await self.metadata()
        login = LoginStart(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),
            started=time.time(),
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.config.client_id,
                "redirect_uri": self.config.redirect_uri,
                "scope": "openid email profile",
                "state": login.state,
                "nonce": login.nonce,
                "code_challenge": str(create_s256_code_challenge(login.verifier)),  # type: ignore[no-untyped-call]
                "code_challenge_method": "S256",
            }
        )
        return f"{meta['authorization_endpoint']}?{query}", login

    async def finish(self, code: str, login: LoginStart) -> tuple[dict[str, Any], str]:
        """Exchange the code, verify the ID token; its claims and the token itself."""
        meta = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.config.redirect_uri,
            "code_verifier": login.verifier,
        }
        auth = aiohttp.BasicAuth(self.config.client_id, self.config.client_secret)
        methods = meta.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
        if "client_secret_basic" not in methods:
            form |= {"client_id": self.config.client_id, "client_secret": self.config.client_secret}
        async with (
            aiohttp.ClientSession(timeout=self._timeout) as http,
            http.post(
                meta["token_endpoint"],
                data=form,
                auth=auth if "client_secret_basic" in methods else None,
                allow_redirects=False,
            ) as response,
        ):
            answer: dict[str, Any] = await response.json(content_type=None)
            if response.status != 200 or "id_token" not in answer:
                raise LoginRefused(
                    f"the token endpoint answered {response.status}: {answer.get('error')}"
                )
        id_token = str(answer["id_token"])
        return await self.verify(id_token, login.nonce), id_token

    async def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        check = {
            "issuer": self.config.issuer,
            "client_id": self.config.client_id,
            "nonce": nonce,
        }
        try:
            return verify_id_token(id_token, await self._key_set(), now=time.time(), **check)
        except InvalidKeyIdError:
            keys = await self._key_set(refresh=True)  # a rotated key: fetch the set again
            try:
                return verify_id_token(id_token, keys, now=time.time(), **check)
            except InvalidKeyIdError:
                why = "the ID token is signed with a key the provider does not list"
                raise LoginRefused(why) from None

    async def logout_url(self, id_token: str | None) -> str | None:
        """The provider's logout, returning to the console's login; None without one."""
        try:
            meta = await self.metadata()
        except (LoginRefused, aiohttp.ClientError, TimeoutError):
            return None
        end = meta.get("end_session_endpoint")
        if not end:
            return None
        params = {
            "client_id": self.config.client_id,
            "post_logout_redirect_uri": self.config.post_logout_uri,
        }
        if id_token:
            params["id_token_hint"] = id_token
        return f"{end}?{urlencode(params)}"
