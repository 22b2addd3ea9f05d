"""Operators: people with their own identity, the tenants they act for and their role.

The operators file (``GATEKEEPER_OPERATORS_FILE``) lists per person a name, an
e-mail, tenants, a role (``viewer`` or ``publisher``) and the SHA-256 of their
token, never the token itself. ``GATEKEEPER_OPERATOR_TOKEN``, when set, is one
more publisher for every tenant, named ``operator``. A trusted authenticating
proxy (oauth2-proxy and the like) may instead vouch for a person by e-mail in
a header, when that header is configured.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from services.runtime.settings import Settings

__all__ = [
    "ALL_TENANTS",
    "Identity",
    "OperatorDirectory",
    "OperatorsFileError",
    "Role",
    "load_operators",
    "operators_from",
]

Role = Literal["viewer", "publisher"]
#: The tenants of the shared operator token: every one.
ALL_TENANTS: Literal["*"] = "*"
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class OperatorsFileError(Exception):
    """The operators file is unusable; the message names the file, the entry and the problem."""


class _Operator(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    email: str = Field(min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    tenants: tuple[str, ...] = Field(min_length=1)
    role: Role
    token_sha256: Sha256


class _OperatorsFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    operators: tuple[_Operator, ...] = ()


@dataclass(frozen=True)
class Identity:
    """Who is asking: a person's name and e-mail, the tenants they act for, their role."""

    name: str
    email: str | None
    tenants: frozenset[str] | Literal["*"]
    role: Role

    def acts_for(self, tenant: str) -> bool:
        return self.tenants == ALL_TENANTS or tenant in self.tenants

    def visible(self, tenants: Collection[str]) -> list[str]:
        """Of *tenants*, the ones this person acts for, in order."""
        return [t for t in tenants if self.acts_for(t)]

    @property
    def may_act(self) -> bool:
        return self.role == "publisher"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).hexdigest().encode()


class OperatorDirectory:
    """Finds the person behind a bearer token, or behind a trusted proxy's header."""

    def __init__(
        self,
        operators: Sequence[tuple[Identity, str]] = (),
        *,
        shared_token: str | None = None,
        proxy_header: str | None = None,
        proxy_networks: Sequence[IPv4Network | IPv6Network] = (),
    ) -> None:
        self._by_digest = [(identity, digest.encode()) for identity, digest in operators]
        if shared_token:
            shared = Identity("operator", None, ALL_TENANTS, "publisher")
            self._by_digest.append((shared, _digest(shared_token)))
        self._by_email = {i.email.lower(): i for i, _ in operators if i.email}
        self.proxy_header = proxy_header
        self._proxy_networks = tuple(proxy_networks)

    def by_token(self, token: str) -> Identity | None:
        """Compared in constant time against every entry, whichever matches."""
        digest = _digest(token)
        found: Identity | None = None
        for identity, expected in self._by_digest:
            if hmac.compare_digest(digest, expected) and found is None:
                found = identity
        return found

    def by_authorization(self, authorization: str | None) -> Identity | None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return None
        return self.by_token(given.strip())

    def by_proxy(self, headers: Mapping[str, str], peer: str | None) -> Identity | None:
        """The person a trusted proxy vouches for by e-mail, when a header is configured
        and the request comes from one of the proxy's addresses (*peer*); anyone else
        who sends the header is not believed."""
        if self.proxy_header is None or not self._trusted(peer):
            return None
        email = headers.get(self.proxy_header, "").strip().lower()
        return self._by_email.get(email) if email else None

    def _trusted(self, peer: str | None) -> bool:
        return _within(peer, self._proxy_networks)

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str:
        """The address a request came from: the peer, or, when the peer is the trusted
        proxy, the nearest address in ``X-Forwarded-For`` that is not the proxy's."""
        if not self._trusted(peer) or not forwarded_for:
            return peer or "unknown"
        for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
            if not self._trusted(hop):
                return hop
        return peer or "unknown"


def _within(peer: str | None, networks: Sequence[IPv4Network | IPv6Network]) -> bool:
    try:
        address = ip_address((peer or "").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def load_operators(
    path: Path | None,
    *,
    shared_token: str | None = None,
    proxy_header: str | None = None,
    proxy_networks: Sequence[IPv4Network | IPv6Network] = (),
) -> OperatorDirectory:
    """The operators of *path* (none when None), plus the shared token's publisher."""
    entries: list[tuple[Identity, str]] = []
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise OperatorsFileError(f"{path}: cannot be read ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise OperatorsFileError(f"{path}: not YAML{where}") from None
        try:
            parsed = _OperatorsFile.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise OperatorsFileError(f"{path}: {problems}") from None
        for op in parsed.operators:
            identity = Identity(op.name, op.email, frozenset(op.tenants), op.role)
            entries.append((identity, op.token_sha256))
    return OperatorDirectory(
        entries,
        shared_token=shared_token,
        proxy_header=proxy_header,
        proxy_networks=proxy_networks,
    )


def operators_from(settings: Settings) -> OperatorDirectory:
    """The operators the environment names: its file, shared token and proxy header."""
    token = settings.operator_token.get_secret_value() if settings.operator_token else None
    return load_operators(
        settings.operators_file,
        shared_token=token,
        proxy_header=settings.trusted_proxy_header,
        proxy_networks=settings.trusted_proxy_networks(),
    )
