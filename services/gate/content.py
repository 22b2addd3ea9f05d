"""The policies' content rules as pure checks: which rules an item's text breaks, why,
and how to fix it, in plain Swedish.

Lerum asks for "enkelt och begripligt", Ale for "tydliga, enkla och kortfattade"
texts and accessible ones (DOS-lagen, WCAG 2.1 AA); GDPR keeps identity numbers
out. Every channel passes through here, so every channel gets the same checks.
HTML bodies are read with a real parser (lexbor, through selectolax): links and
images inside the body are checked like the ``links`` and ``images`` fields. A
finding says where something is wrong, never what a personal number was.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from schemas.events import ContentEvent
from services.gate import reading
from services.gate.reading import lix
from services.runtime.identity_numbers import contains_identity_number, mask_identity_numbers

__all__ = ["ContentRule", "Finding", "Spokesperson", "check", "lix"]


#: Link texts that say nothing out of context (WCAG 2.4.4), Swedish and English.
GENERIC_LINK_TEXTS = frozenset(
    {
        "läs mer", "klicka här", "här", "länk", "mer information", "mer info", "läs här",
        "read more", "click here", "here", "link", "more information", "more info", "more",
    }
)  # fmt: skip
#: Alt texts that say nothing about the picture.
EMPTY_ALT_WORDS = frozenset({"bild", "bilden", "image", "foto", "photo", "picture", "img"})
_FILE_NAME = re.compile(r"^[\w.\-() ]+\.(jpe?g|png|gif|webp|svg|bmp|tiff?|heic)$", re.IGNORECASE)
_URL = re.compile(r"^(https?://|www\.)\S+$", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
_HASHTAG = re.compile(r"(?<!\w)#\w+")
_DIGIT_RUN = re.compile(r"\d{6}[-+]?\d{4}")


@dataclass(frozen=True)
class Spokesperson:
    name: str
    email: str | None = None


@dataclass(frozen=True)
class ContentRule:
    """One configured rule: what it checks (``rule``, as the deployment file and a
    finding name it), ``block`` or ``warn``, where it applies."""

    rule: str
    action: str
    channels: tuple[str, ...] = ()  # empty: every channel
    audience: str | None = None  # None: both
    lix_max: float | None = None
    sentence_words_max: int | None = None
    words_max: int | None = None
    alt_max_length: int = 150
    max_length: int | None = None
    max_links: int | None = None
    max_hashtags: int | None = None
    replacements: tuple[tuple[str, str], ...] = ()
    spokespersons: tuple[Spokesperson, ...] = ()

    def applies_to(self, event: ContentEvent) -> bool:
        if self.audience is not None and event.audience != self.audience:
            return False
        return not self.channels or any(c in self.channels for c in event.channels)


@dataclass(frozen=True)
class Finding:
    """What is wrong (``message``) and how to fix it (``fix``), in Swedish."""

    rule: str
    action: str
    message: str
    fix: str


# -- the rules ---------------------------------------------------------------------------


def _plain_language(
    event: ContentEvent, body: reading.Body, rule: ContentRule
) -> Iterator[Finding]:
    text = "\n\n".join(t for t in (event.summary or "", body.text) if t)
    measure = reading.measure(text)
    words, value = measure.words, measure.lix
    if not (
        (rule.lix_max is not None and value > rule.lix_max)
        or rule.sentence_words_max is not None
        or (rule.words_max is not None and len(words) > rule.words_max)
    ):
        return
    if rule.lix_max is not None and value > rule.lix_max:
        longest = sorted(measure.sentences, key=lambda s: s[1], reverse=True)[:2]
        # a number is no word to replace, and a long one may be an identity number
        long_words = sorted(
            {w for w in words if len(w) > 6 and not any(c.isdigit() for c in w)},
            key=len,
            reverse=True,
        )[:5]
        quoted = " / ".join(f"”{_clip(s)}” ({n} ord)" for s, n in longest)
        yield Finding(
            "plain_language",
            rule.action,
            f"Texten har läsbarhetsindex (LIX) {value:.0f}; kanalen tillåter högst "
            f"{rule.lix_max:.0f}. Längst är: {quoted}. Långa ord: {', '.join(long_words)}.",
            "Dela upp de långa meningarna och byt långa ord mot kortare, vardagliga ord.",
        )
    if rule.sentence_words_max is not None:
        over = [s for s, n in measure.sentences if n > rule.sentence_words_max]
        if over:
            yield Finding(
                "plain_language",
                rule.action,
                f"{len(over)} mening(ar) har fler än {rule.sentence_words_max} ord, till "
                f"exempel ”{_clip(over[0])}”.",
                "Dela upp meningen i två eller flera.",
            )
    count = len(words)
    if rule.words_max is not None and count > rule.words_max:
        yield Finding(
            "plain_language",
            rule.action,
            f"Texten har {count} ord; kanalen tillåter högst {rule.words_max}.",
            "Korta texten: skriv det viktigaste först och länka till resten.",
        )


def _clip(sentence: str, words: int = 12) -> str:
    """The sentence's first *words* words, an identity number in it masked first (so
    that no cut leaves half of one)."""
    parts = mask_identity_numbers(sentence).split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")


def _all_links(event: ContentEvent, body: reading.Body) -> list[tuple[str, str, str]]:
    """(where, href, text) of every link, in the ``links`` field and in the body."""
    found = [(f"länk nr {i + 1}", str(link.url), link.text) for i, link in enumerate(event.links)]
    found += [(f"länk nr {i + 1} i brödtexten", h, t) for i, (h, t) in enumerate(body.links)]
    return found


def _link_text(event: ContentEvent, body: reading.Body, rule: ContentRule) -> Iterator[Finding]:
    for where, href, text in _all_links(event, body):
        bare = text.strip().lower().rstrip(".:!")
        if bare in GENERIC_LINK_TEXTS:
            yield Finding(
                "link_text",
                rule.action,
                f"Länktexten ”{text.strip()}” ({where}) säger inte vart länken leder.",
                "Skriv vart länken går, till exempel ”Ansök om förskoleplats”.",
            )
        elif _URL.match(text.strip()) or (href and text.strip() == href):
            yield Finding(
                "link_text",
                rule.action,
                f"Länktexten ({where}) är en webbadress.",
                "Skriv vad mottagaren hittar där i stället för adressen.",
            )


def _all_images(event: ContentEvent, body: reading.Body) -> list[tuple[str, str, str | None, bool]]:
    """(where, src, alt, decorative) of every image."""
    found: list[tuple[str, str, str | None, bool]] = [
        (f"bild nr {i + 1}", str(img.url), img.alt, img.decorative)
        for i, img in enumerate(event.images)
    ]
    found += [
        (f"bild nr {i + 1} i brödtexten", src, alt, alt == "")
        for i, (src, alt) in enumerate(body.images)
    ]
    return found


def _alt_text(event: ContentEvent, body: reading.Body, rule: ContentRule) -> Iterator[Finding]:
    fix = "Beskriv vad bilden visar och varför den finns där, i en eller två meningar."
    for where, src, alt, decorative in _all_images(event, body):
        text = (alt or "").strip()
        if alt is None:
            yield Finding("alt_text", rule.action, f"{where.capitalize()} saknar alt-text.", fix)
        elif decorative and text:
            yield Finding(
                "alt_text",
                rule.action,
                f"{where.capitalize()} är markerad som dekorativ men har en alt-text.",
                "Lämna alt-texten tom för en dekorativ bild, eller ta bort markeringen.",
            )
        elif decorative:
            continue
        elif _FILE_NAME.match(text) or text == src.rsplit("/", 1)[-1]:
            yield Finding("alt_text", rule.action, f"Alt-texten för {where} är ett filnamn.", fix)
        elif text.lower().rstrip(".") in EMPTY_ALT_WORDS:
            yield Finding(
                "alt_text",
                rule.action,
                f"Alt-texten för {where} är bara ”{text}”.",
                fix,
            )
        elif text.lower() == event.title.strip().lower():
            yield Finding(
                "alt_text",
                rule.action,
                f"Alt-texten för {where} är samma som rubriken.",
                fix,
            )
        elif len(text) > rule.alt_max_length:
            yield Finding(
                "alt_text",
                rule.action,
                f"Alt-texten för {where} har {len(text)} tecken; högst "
                f"{rule.alt_max_length} läses bra av skärmläsare.",
                "Korta alt-texten; längre beskrivningar hör hemma i brödtexten.",
            )


def _text_fields(event: ContentEvent, body: reading.Body) -> Iterator[tuple[str, str]]:
    """(where, text) of every text an identity number could hide in."""
    yield "rubriken", event.title
    yield "brödtexten", body.text
    yield "brödtextens källkod", event.body
    if event.summary:
        yield "ingressen", event.summary
    yield "mottagare", event.recipients
    yield "enheten", event.unit
    if event.contact is not None:
        contact = event.contact
        yield (
            "kontaktuppgifterna",
            " ".join(p for p in (contact.name, contact.email, contact.phone) if p),
        )
    for where, src, alt, _ in _all_images(event, body):
        yield f"bildadressen för {where}", src
        yield f"alt-texten för {where}", alt or ""
    for where, href, text in _all_links(event, body):
        yield f"länktexten för {where}", text
        yield f"länkadressen för {where}", href


def _identity_numbers(
    event: ContentEvent, body: reading.Body, rule: ContentRule
) -> Iterator[Finding]:
    places = list(
        dict.fromkeys(w for w, t in _text_fields(event, body) if contains_identity_number(t))
    )
    if "brödtexten" in places and "brödtextens källkod" in places:
        places.remove("brödtextens källkod")
    if places:
        yield Finding(
            "personal_identity_number",
            rule.action,
            f"Det finns ett personnummer eller samordningsnummer i {', '.join(places)}.",
            "Ta bort numret. Personnummer publiceras aldrig (GDPR).",
        )


def _heading_levels(
    event: ContentEvent, body: reading.Body, rule: ContentRule
) -> Iterator[Finding]:
    previous = 1  # the title is the page's first-level heading
    for level in body.headings:
        if level > previous + 1:
            yield Finding(
                "heading_levels",
                rule.action,
                f"Rubriknivå {level} följer direkt på nivå {previous}; nivå {previous + 1} saknas.",
                f"Använd rubriknivå {previous + 1} här, så att skärmläsare kan följa strukturen.",
            )
            return
        previous = level


def _social_limits(event: ContentEvent, body: reading.Body, rule: ContentRule) -> Iterator[Finding]:
    text = " ".join(t for t in (event.title, body.text) if t)
    if rule.max_length is not None and len(text) > rule.max_length:
        yield Finding(
            "social_limits",
            rule.action,
            f"Inlägget har {len(text)} tecken; kanalen tillåter högst {rule.max_length}.",
            "Korta texten och länka till hela nyheten.",
        )
    links = len(_all_links(event, body)) + len(_URL_IN_TEXT.findall(body.text))
    if rule.max_links is not None and links > rule.max_links:
        yield Finding(
            "social_limits",
            rule.action,
            f"Inlägget har {links} länkar; kanalen tillåter högst {rule.max_links}.",
            "Behåll den viktigaste länken.",
        )
    tags = len(_HASHTAG.findall(text))
    if rule.max_hashtags is not None and tags > rule.max_hashtags:
        yield Finding(
            "social_limits",
            rule.action,
            f"Inlägget har {tags} hashtaggar; kanalen tillåter högst {rule.max_hashtags}.",
            "Behåll de hashtaggar som mottagarna söker på.",
        )


def _press_spokesperson(
    event: ContentEvent, body: reading.Body, rule: ContentRule
) -> Iterator[Finding]:
    contact = event.contact
    known = {(s.email or "").lower() for s in rule.spokespersons if s.email}
    names = {s.name.lower() for s in rule.spokespersons}
    if contact is None or not (
        (contact.email and contact.email.lower() in known) or contact.name.lower() in names
    ):
        who = ", ".join(s.name for s in rule.spokespersons) or "ingen är utsedd"
        yield Finding(
            "press_spokesperson",
            rule.action,
            "Kontaktpersonen för ett pressmeddelande är inte en av kommunens talespersoner.",
            f"Ange en av talespersonerna som kontakt ({who}).",
        )
    if not (event.summary or "").strip():
        yield Finding(
            "press_spokesperson",
            rule.action,
            "Pressmeddelandet saknar ingress.",
            "Skriv en ingress som sammanfattar nyheten i en eller två meningar.",
        )


@lru_cache(maxsize=64)
def _any_of(words: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(w.lower()) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def _forbidden_words(
    event: ContentEvent, body: reading.Body, rule: ContentRule
) -> Iterator[Finding]:
    text = " ".join(t for t in (event.title, event.summary or "", body.text) if t).lower()
    present = set(_any_of(tuple(w for w, _ in rule.replacements)).findall(text))
    for word, replacement in rule.replacements:
        if word.lower() in present:
            fix = f"Skriv ”{replacement}” i stället." if replacement else "Stryk ordet."
            yield Finding("forbidden_words", rule.action, f"Texten innehåller ”{word}”.", fix)


def _title_length(event: ContentEvent, _: reading.Body, rule: ContentRule) -> Iterator[Finding]:
    if rule.max_length is not None and len(event.title) > rule.max_length:
        yield Finding(
            "max_title_length",
            rule.action,
            f"Rubriken har {len(event.title)} tecken; högst {rule.max_length} tillåts.",
            "Korta rubriken.",
        )


def _summary_required(event: ContentEvent, _: reading.Body, rule: ContentRule) -> Iterator[Finding]:
    if not (event.summary or "").strip():
        yield Finding(
            "summary_required", rule.action, "Ingressen saknas.", "Skriv en kort ingress."
        )


_CHECKS = {
    "plain_language": _plain_language,
    "link_text": _link_text,
    "alt_text": _alt_text,
    "personal_identity_number": _identity_numbers,
    "heading_levels": _heading_levels,
    "social_limits": _social_limits,
    "press_spokesperson": _press_spokesperson,
    "forbidden_words": _forbidden_words,
    "max_title_length": _title_length,
    "summary_required": _summary_required,
}


def check(event: ContentEvent, rules: Iterable[ContentRule]) -> tuple[Finding, ...]:
    """Every finding of every rule that applies to the event's channels and audience."""
    applicable = [r for r in rules if r.applies_to(event)]
    if not applicable or event.action == "retract":
        return ()
    body = reading.read_body(event.body)
    findings: list[Finding] = []
    for rule in applicable:
        findings.extend(_CHECKS[rule.rule](event, body, rule))
    return tuple(dict.fromkeys(_masked(f) for f in findings))


def _masked(finding: Finding) -> Finding:
    """A finding quotes the event's text (a sentence, a link text, an alt text); an
    identity number in a quote is masked, whatever rule quoted it."""
    return dataclasses.replace(
        finding,
        message=mask_identity_numbers(finding.message),
        fix=mask_identity_numbers(finding.fix),
    )
