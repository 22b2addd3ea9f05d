"""The gate's view of the deployment file: each tenant's policy and content rules."""

from __future__ import annotations

from schemas.events import Contact
from services.gate.content import ContentRule, Spokesperson
from services.gate.state import GatePolicy
from services.runtime.config import ContentCheck, Deployment, Tenant

__all__ = ["content_rules_of", "policies_of"]


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


def _rule(check: ContentCheck, tenant: Tenant) -> ContentRule:
    replacements = {**dict.fromkeys(check.words, ""), **check.replacements}
    return ContentRule(
        rule=check.rule,
        action=check.action,
        channels=check.channels,
        audience=check.audience,
        lix_max=check.lix_max,
        sentence_words_max=check.sentence_words_max,
        words_max=check.words_max,
        alt_max_length=check.alt_max_length,
        max_length=check.max_length or check.limit,
        max_links=check.max_links,
        max_hashtags=check.max_hashtags,
        replacements=tuple(replacements.items()),
        spokespersons=tuple(Spokesperson(s.name, s.email) for s in tenant.spokespersons),
    )


def content_rules_of(deployment: Deployment) -> dict[str, tuple[ContentRule, ...]]:
    """Each tenant's content rules, as the checks take them."""
    return {
        name: tuple(_rule(c, t) for c in t.policy.content_checks)
        for name, t in deployment.tenants.items()
    }
