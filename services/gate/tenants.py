"""The gate's view of the deployment file: each tenant's policy and content rules."""

from __future__ import annotations

from schemas.events import Contact
from services.gate import checks
from services.gate.machine import GatePolicy
from services.runtime.config import Deployment, Tenant

__all__ = ["policies_of", "rules_of"]


def _policy(tenant: Tenant) -> GatePolicy:
    sender = tenant.sender
    return GatePolicy(
        organization=sender.organization,
        logo_url=sender.logo_url,
        website=sender.website,
        contact=Contact(
            name=sender.contact.name, email=sender.contact.email, phone=sender.contact.phone
        ),
        internal_lead=tenant.policy.internal_lead,
        escalate_after=tenant.policy.escalate_after,
        crisis_lane=tenant.policy.crisis_lane,
        internal_channels=tuple(c.name for c in tenant.channels if c.audience == "internal"),
        notify_after=tenant.notifications.notify_after if tenant.notifications else None,
    )


def policies_of(deployment: Deployment) -> dict[str, GatePolicy]:
    return {name: _policy(t) for name, t in deployment.tenants.items()}


def rules_of(deployment: Deployment) -> dict[str, tuple[checks.Rule, ...]]:
    return {
        name: tuple((c.rule, c.action, c.words, c.limit) for c in t.policy.content_checks)
        for name, t in deployment.tenants.items()
    }
