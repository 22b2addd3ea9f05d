"""Pure content checks from the tenant's policy: which rules an event's text trips."""

from __future__ import annotations

from collections.abc import Iterable

from schemas.events import ContentEvent
from services.runtime.identity_numbers import contains_identity_number

__all__ = ["Rule", "findings"]

#: (rule, action, words, limit) as configured for the tenant
Rule = tuple[str, str, tuple[str, ...], int | None]


def _texts(event: ContentEvent) -> Iterable[str]:
    yield event.title
    yield event.body
    if event.summary:
        yield event.summary


def findings(event: ContentEvent, rules: Iterable[Rule]) -> tuple[tuple[str, str], ...]:
    """``(rule, action)`` for every configured rule the event breaks."""
    hits: list[tuple[str, str]] = []
    for rule, action, words, limit in rules:
        matched = False
        if rule == "personal_identity_number":
            matched = any(contains_identity_number(t) for t in _texts(event))
        elif rule == "forbidden_words":
            lowered = " ".join(_texts(event)).lower()
            matched = any(w.lower() in lowered for w in words)
        elif rule == "max_title_length":
            matched = limit is not None and len(event.title) > limit
        elif rule == "summary_required":
            matched = not (event.summary or "").strip()
        if matched:
            hits.append((rule, action))
    return tuple(hits)
