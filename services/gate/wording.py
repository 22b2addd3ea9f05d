"""What a hold's reasons and findings mean, in plain Swedish, for communicators."""

from __future__ import annotations

from dataclasses import dataclass

from services.gate.state import (
    AWAITING_INTERNAL_LEAD,
    AWAITING_INTERNAL_NOTICE,
    AWAITING_PUBLISH_AT,
    INTERNAL_NOTICE_RETRACTED,
    Held,
)

__all__ = ["Finding", "decision_kind", "findings", "reason_text"]

_REASONS = {
    AWAITING_INTERNAL_NOTICE: "Väntar på intern information",
    AWAITING_INTERNAL_LEAD: "Väntar på att personalen hunnit ta del av den interna informationen",
    AWAITING_PUBLISH_AT: "Väntar på publiceringstid",
    INTERNAL_NOTICE_RETRACTED: (
        "Den interna informationen har dragits tillbaka: väntar på ny intern information"
    ),
}

#: rule -> (what is wrong, how to fix it)
_RULES = {
    "personal_identity_number": (
        "Texten innehåller ett personnummer eller samordningsnummer.",
        "Ta bort numret ur texten i CMS:et och publicera en ny version.",
    ),
    "forbidden_words": (
        "Texten innehåller ord som kommunen har bestämt att undvika.",
        "Byt ut orden i CMS:et och publicera en ny version.",
    ),
    "max_title_length": (
        "Rubriken är längre än vad kanalen tillåter.",
        "Korta rubriken i CMS:et och publicera en ny version.",
    ),
    "summary_required": (
        "Ingressen saknas.",
        "Skriv en kort ingress i CMS:et och publicera en ny version.",
    ),
}


#: rule -> what the hold waits for, in the list's few words
_RULE_NAMES = {
    "plain_language": "Texten behöver bli enklare",
    "link_text": "En länktext behöver rättas",
    "alt_text": "En alt-text behöver rättas",
    "personal_identity_number": "Texten innehåller ett personnummer",
    "heading_levels": "Rubriknivåerna behöver rättas",
    "social_limits": "Inlägget är för långt eller har för många länkar eller hashtaggar",
    "press_spokesperson": "Pressmeddelandet behöver en talesperson och en ingress",
    "forbidden_words": "Texten innehåller ord som ska undvikas",
    "max_title_length": "Rubriken är för lång",
    "summary_required": "Ingressen saknas",
}


@dataclass(frozen=True)
class Finding:
    rule: str
    action: str  # "block" holds the item, "warn" lets it out with the finding
    message: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "action": self.action, "message": self.message, "fix": self.fix}


def _rule(reason: str) -> str:
    return reason.removeprefix("content_check:")


def _finding(reason: str, action: str) -> Finding:
    rule = _rule(reason)
    message, fix = _RULES.get(
        rule,
        (f"Innehållskontrollen {rule} slog till.", "Rätta texten och publicera en ny version."),
    )
    return Finding(rule, action, message, fix)


def reason_text(reason: str) -> str:
    """One reason of a hold in plain words."""
    if reason.startswith("content_check:"):
        return _RULE_NAMES.get(_rule(reason), f"Innehållskontrollen {_rule(reason)} slog till")
    return _REASONS.get(reason, reason)


def findings(held: Held) -> list[Finding]:
    """The content checks that matched a held version: blocking first, then warnings."""
    if held.findings:
        ordered = sorted(held.findings, key=lambda f: f.action != "block")
        return [Finding(f.rule, f.action, f.message, f.fix) for f in ordered]
    blocking = [_finding(r, "block") for r in held.reasons if r.startswith("content_check:")]
    return blocking + [_finding(w, "warn") for w in held.warnings]


_DECISION_KINDS = {
    "accepted": "Mottagen",
    "held": "Hålls kvar",
    "released": "Släppt",
    "rejected": "Avvisad: följer inte formatet",
    "escalated": "Eskalerad",
    "overridden": "Släppt av en person",
    "retracted": "Tillbakadragen",
    "stale": "Inaktuell version",
    "rejected_by_operator": "Stoppad av en person",
}


def decision_kind(kind: str) -> str:
    """A decision's kind as the item's history in the console names it."""
    return _DECISION_KINDS.get(kind, kind)
