"""A tenant's policy as the deployment file says it: the sender it is known by, its
content rules, its spokespeople, its lead and escalation times.

Part of the deployment file's models (:mod:`services.runtime.config`), each
validated once at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from services.runtime.transport_config import (
    ConfigModel,
)

__all__ = [
    "ContactConfig",
    "ContentCheck",
    "ContentRuleName",
    "Policy",
    "SenderIdentity",
    "SpokespersonConfig",
]


class ContactConfig(ConfigModel):
    name: str = Field(min_length=1)
    email: str | None = None
    phone: str | None = None


class SenderIdentity(ConfigModel):
    """How the municipality must appear as sender (avsändare)."""

    organization: str = Field(min_length=1)
    logo_url: str = Field(min_length=1)
    website: str = Field(min_length=1)
    contact: ContactConfig


ContentRuleName = Literal[
    "plain_language",
    "link_text",
    "alt_text",
    "personal_identity_number",
    "heading_levels",
    "social_limits",
    "press_spokesperson",
    "forbidden_words",
    "max_title_length",
    "summary_required",
]


class ContentCheck(ConfigModel):
    """One content rule, where it applies and what a match does: ``block`` holds the
    item with the rule as reason, ``warn`` releases it with the finding on the decision.

    ``channels`` and ``audience`` narrow where the rule applies (default: every
    channel of both audiences); the other keys are the rule's parameters.
    """

    rule: ContentRuleName
    action: Literal["block", "warn"]
    channels: tuple[str, ...] = ()
    audience: Literal["internal", "external"] | None = None
    #: plain_language: highest LIX, words in one sentence, words in the text
    lix_max: float | None = Field(default=None, gt=0)
    sentence_words_max: int | None = Field(default=None, ge=1)
    words_max: int | None = Field(default=None, ge=1)
    #: alt_text: longest alt text a screen reader reads well
    alt_max_length: int = Field(default=150, ge=1)
    #: social_limits: characters, links and hashtags; max_title_length: characters
    max_length: int | None = Field(default=None, ge=1)
    max_links: int | None = Field(default=None, ge=0)
    max_hashtags: int | None = Field(default=None, ge=0)
    #: forbidden_words: word -> what to write instead ("" to just strike it)
    replacements: Mapping[str, str] = Field(default_factory=dict)
    #: forbidden_words (older form): words to avoid, with no suggestion
    words: tuple[str, ...] = ()
    #: max_title_length (older form of max_length)
    limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _parameters(self) -> ContentCheck:
        if self.rule == "forbidden_words" and not (self.words or self.replacements):
            raise ValueError("forbidden_words needs 'replacements' (word: suggestion) or 'words'")
        if self.rule == "max_title_length" and self.limit is None and self.max_length is None:
            raise ValueError("max_title_length needs 'max_length'")
        if self.rule == "plain_language" and not (
            self.lix_max or self.sentence_words_max or self.words_max
        ):
            raise ValueError("plain_language needs lix_max, sentence_words_max or words_max")
        if self.rule == "social_limits" and not (
            self.max_length or self.max_links is not None or self.max_hashtags is not None
        ):
            raise ValueError("social_limits needs max_length, max_links or max_hashtags")
        return self


class SpokespersonConfig(ConfigModel):
    name: str = Field(min_length=1)
    email: str | None = None


class Policy(ConfigModel):
    internal_lead: timedelta = timedelta(0)
    escalate_after: timedelta = timedelta(hours=4)
    crisis_lane: bool = False
    content_checks: tuple[ContentCheck, ...] = ()

    @field_validator("internal_lead", "escalate_after")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value
