"""Who a provider's ID token makes a person, as a pure function.

The verified ``email`` claim, matched without regard to case against the
operators file, gives name, tenants and role. Without a file entry, the
optional roles claim (Entra ID app roles) may grant access: each value
``gatekeeper.<tenant>.<role>`` for a tenant of this deployment. A person the
provider vouches for but neither knows gets nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from services.runtime.operators import Identity, Role

__all__ = ["email_of", "identity_of"]


def email_of(claims: Mapping[str, Any]) -> str | None:
    """The claimed e-mail, unless the provider says it is not verified."""
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email or claims.get("email_verified") is False:
        return None
    return email.strip()


def _granted(values: Any, tenants: Collection[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values if isinstance(values, list) else [values]:
        if not isinstance(value, str):
            continue
        prefix, _, rest = value.partition(".")
        tenant, _, role = rest.rpartition(".")
        known = prefix == "gatekeeper" and tenant in tenants and role in ("viewer", "publisher")
        if known and found.get(tenant) != "publisher":  # publisher wins within a tenant
            found[tenant] = role
    return found


def identity_of(
    claims: Mapping[str, Any],
    by_email: Callable[[str], Identity | None],
    tenants: Collection[str],
    roles_claim: str | None = None,
) -> Identity | None:
    """The person of *claims*: from the operators file (*by_email*), else from the roles
    claim; None when neither knows them. Roles that differ between tenants give the
    lesser one for all (a person is one role here)."""
    email = email_of(claims)
    if email is None:
        return None
    known = by_email(email)
    if known is not None:
        return known
    if roles_claim is None:
        return None
    granted = _granted(claims.get(roles_claim), tenants)
    if not granted:
        return None
    role: Role = "publisher" if set(granted.values()) == {"publisher"} else "viewer"
    name = claims.get("name")
    return Identity(
        name if isinstance(name, str) and name.strip() else email,
        email,
        frozenset(granted),
        role,
    )
