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
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import Annotated, Literal

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from services.runtime.settings import Settings

__all__ = [
    "ALL_TENANTS",
    "Identity",
    "OperatorDirectory",
    "OperatorsFileError",
    "Role",
    "key_digest",
    "load_operators",
    "operators_from",
]

Role = Literal["viewer", "publisher"]
#: The tenants of the shared operator token: every one.
ALL_TENANTS: Literal["*"] = "*"
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

log = structlog.get_logger("gatekeeper.operators")


class OperatorsFileError(Exception):
    """The operators file is unusable; the message names the file, the entry and the problem."""


class _Operator(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    email: str = Field(min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    tenants: tuple[str, ...] = Field(min_length=1)
    role: Role
    #: None: the person logs in only through single sign-on.
    token_sha256: Sha256 | None = None


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
    return key_digest(token).encode()


def key_digest(token: str) -> str:
    """The SHA-256 of a key, as the operators file keeps it (hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


#: How often, at most, the operators file is looked at for a change.
RELOAD_EVERY_S = 1.0


class OperatorDirectory:
    """Finds the person behind a bearer token, an e-mail a provider or a trusted proxy
    vouches for; re-reads its file when the file changes."""

    def __init__(
        self,
        operators: Sequence[tuple[Identity, str | None]] = (),
        *,
        shared_token: str | None = None,
        proxy_header: str | None = None,
        proxy_networks: Sequence[IPv4Network | IPv6Network] = (),
        path: Path | None = None,
    ) -> None:
        self._shared = (
            (Identity("operator", None, ALL_TENANTS, "publisher"), _digest(shared_token))
            if shared_token
            else None
        )
        self._use(operators)
        self.proxy_header = proxy_header
        self._proxy_networks = tuple(proxy_networks)
        self._path = path
        self._stamp = _stamp(path)
        self._checked = time.monotonic()

    def _use(self, operators: Sequence[tuple[Identity, str | None]]) -> None:
        by_digest = [(i, d.encode()) for i, d in operators if d is not None]
        self._by_digest = by_digest + ([self._shared] if self._shared else [])
        self._by_email = {i.email.lower(): i for i, _ in operators if i.email}

    def _fresh(self) -> None:
        """Re-read the file if it changed (a Kubernetes Secret updated in place); a
        broken file keeps the operators known before and says why in the log."""
        if self._path is None or time.monotonic() - self._checked < RELOAD_EVERY_S:
            return
        self._checked = time.monotonic()
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            operators = _read(self._path)
        except OperatorsFileError as exc:
            log.error("operators.reload_failed", problem=str(exc))
            return
        self._use(operators)
        log.info("operators.reloaded", operators=len(operators))

    def by_token(self, token: str) -> Identity | None:
        """Compared in constant time against every entry, whichever matches."""
        return self.by_digest(_digest(token).decode())

    def by_digest(self, digest: str) -> Identity | None:
        """The person whose key has this SHA-256 (hex), compared in constant time."""
        self._fresh()
        found: Identity | None = None
        for identity, expected in self._by_digest:
            if hmac.compare_digest(digest.encode(), expected) and found is None:
                found = identity
        return found

    def by_email(self, email: str) -> Identity | None:
        """The person of the file with this e-mail, whatever its case."""
        self._fresh()
        return self._by_email.get(email.strip().lower())

    def by_authorization(self, authorization: str | None) -> Identity | None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return None
        return self.by_token(given.strip())

    def by_proxy(self, headers: Mapping[str, str], peer: str | None) -> Identity | None:
        """The person a trusted proxy vouches for by e-mail, when a header is configured
        and the request comes from one of the proxy's addresses (*peer*); anyone else
        who sends the header is not believed."""
        email = self.proxied_email(headers, peer)
        return self.by_email(email) if email else None

    def proxied_email(self, headers: Mapping[str, str], peer: str | None) -> str | None:
        """The e-mail a trusted proxy names (known here or not); None from anyone else."""
        if self.proxy_header is None or not self._trusted(peer):
            return None
        return headers.get(self.proxy_header, "").strip().casefold() or None

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
    return OperatorDirectory(
        _read(path) if path is not None else [],
        shared_token=shared_token,
        proxy_header=proxy_header,
        proxy_networks=proxy_networks,
        path=path,
    )


def _stamp(path: Path | None) -> tuple[int, int] | None:
    try:
        found = path.stat() if path is not None else None
    except OSError:
        return None
    return (found.st_mtime_ns, found.st_size) if found is not None else None


def _read(path: Path) -> list[tuple[Identity, str | None]]:
    entries: list[tuple[Identity, str | None]] = []
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
    return entries


def operators_from(settings: Settings) -> OperatorDirectory:
    """The operators the environment names: its file, shared token and proxy header."""
    token = settings.operator_token.get_secret_value() if settings.operator_token else None
    return load_operators(
        settings.operators_file,
        shared_token=token,
        proxy_header=settings.trusted_proxy_header,
        proxy_networks=settings.trusted_proxy_networks(),
    )
