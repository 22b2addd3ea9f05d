"""The content rules on a corpus of municipal texts, LIX by hand, and identity numbers
found wherever they hide, never where they are not."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import ContentEvent
from services.gate.content import ContentRule, check, lix
from services.gate.tenants import content_rules_of
from services.runtime.config import DEFAULT_CONFIG_PATH, load_deployment
from tests.conftest import SECRETS_ENV, content_event
from tests.properties import examples

CORPUS = yaml.safe_load(
    (Path(__file__).parents[1] / "fixtures" / "content_corpus.yaml").read_text()
)
RULES = content_rules_of(load_deployment(DEFAULT_CONFIG_PATH, SECRETS_ENV))


def _event(tenant: str, **fields: Any) -> ContentEvent:
    return ContentEvent.model_validate(
        content_event(tenant=tenant, item_id="corpus", **{"recipients": "Invånare", **fields})
    )


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_the_shipped_rules_find_what_the_corpus_expects(case: dict[str, Any]) -> None:
    event = _event(case["tenant"], **case["event"])
    found = {(f.rule, f.action) for f in check(event, RULES[case["tenant"]])}
    assert found == {tuple(e) for e in case["expected"]}


def test_every_finding_explains_and_tells_how_to_fix_in_swedish() -> None:
    for case in CORPUS:
        for finding in check(_event(case["tenant"], **case["event"]), RULES[case["tenant"]]):
            assert finding.message
            assert finding.fix
            assert "9876" not in finding.message + finding.fix


def test_lix_is_words_per_sentence_plus_the_percentage_of_long_words() -> None:
    text = "Kommunen bygger en ny förskola. Den öppnar i augusti och har plats för nittio barn."
    # 15 words, 2 sentences; over six letters: Kommunen, förskola, augusti.
    assert lix(text) == pytest.approx(15 / 2 + 100 * 3 / 15)


def test_the_plain_language_finding_names_the_longest_sentence_and_long_words() -> None:
    rule = ContentRule("plain_language", "warn", lix_max=30)
    body = (
        "Kommunstyrelsen beslutade igår om omfattande förändringar avseende "
        "förskoleverksamhetens organisation. Barnen märker inget."
    )
    [finding] = check(_event("lerum", body=body, summary=None), [rule])
    assert "Kommunstyrelsen beslutade igår" in finding.message
    assert "förskoleverksamhetens" in finding.message


@pytest.mark.parametrize(
    ("links", "body", "found"),
    [
        ([{"url": "https://x.se/a", "text": "Läs mer"}], "Text.", True),
        ([{"url": "https://x.se/a", "text": "Click here"}], "Text.", True),
        ([{"url": "https://x.se/a", "text": "https://x.se/a"}], "Text.", True),
        ([], '<p><a href="https://x.se/b">Mer information</a></p>', True),
        ([{"url": "https://x.se/a", "text": "Ansök om bygglov"}], "Text.", False),
    ],
)
def test_link_texts_must_say_where_they_lead(
    links: list[dict[str, str]], body: str, found: bool
) -> None:
    rule = ContentRule("link_text", "block")
    assert bool(check(_event("lerum", links=links, body=body), [rule])) is found


@pytest.mark.parametrize(
    ("image", "found"),
    [
        ({"url": "https://x.se/IMG_1.jpg", "alt": "IMG_1.jpg"}, True),
        ({"url": "https://x.se/a.png", "alt": "Bild"}, True),
        ({"url": "https://x.se/a.png", "alt": "Ny förskola i Gråbo"}, True),  # the title
        ({"url": "https://x.se/a.png", "alt": "x" * 200}, True),
        ({"url": "https://x.se/a.png", "alt": "Pynt", "decorative": True}, True),
        ({"url": "https://x.se/a.png", "alt": "", "decorative": True}, False),
        ({"url": "https://x.se/a.png", "alt": "Barn som leker i sandlådan."}, False),
    ],
)
def test_alt_texts_describe_the_picture(image: dict[str, Any], found: bool) -> None:
    rule = ContentRule("alt_text", "block")
    assert bool(check(_event("lerum", images=[image]), [rule])) is found


def test_an_image_in_the_body_is_checked_like_the_images_field() -> None:
    rule = ContentRule("alt_text", "block")
    assert check(_event("lerum", body='<p><img src="a.jpg" alt="foto"></p>'), [rule])
    assert check(_event("lerum", body='<p><img src="a.jpg"></p>'), [rule])


def test_skipped_heading_levels_are_found_and_a_sound_outline_is_not() -> None:
    rule = ContentRule("heading_levels", "warn")
    assert check(_event("lerum", body="<h2>A</h2><p>x</p><h4>B</h4>"), [rule])
    assert not check(_event("lerum", body="<h2>A</h2><h3>B</h3><h2>C</h2>"), [rule])


def test_a_rule_applies_only_to_its_channels_and_audience() -> None:
    social = ContentRule("social_limits", "block", channels=("social",), max_hashtags=0)
    web = _event("lerum", body="Hej #lerum")
    assert not check(web, [social])
    assert check(_event("lerum", channels=["social"], body="Hej #lerum"), [social])
    internal = ContentRule("link_text", "block", audience="internal")
    assert not check(_event("lerum", links=[{"url": "https://x", "text": "här"}]), [internal])


def _luhn_digit(nine: str) -> int:
    total = 0
    for i, ch in enumerate(nine):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10


@st.composite
def identity_numbers(draw: st.DrawFn) -> str:
    """A valid personnummer or samordningsnummer, in any of the written forms."""
    born = draw(st.dates(min_value=date(1920, 1, 1), max_value=date(2020, 12, 31)))
    coordination = draw(st.booleans())
    day = born.day + (60 if coordination else 0)
    serial = draw(st.integers(1, 999))  # 000 is never issued
    nine = f"{born:%y%m}{day:02d}{serial:03d}"
    number = nine + str(_luhn_digit(nine))
    century = draw(st.booleans())
    separator = draw(st.sampled_from(["", "-", " "])) if born > date(1926, 1, 1) else "+"
    head = (f"{born:%Y}"[:2] if century else "") + number[:6]
    return head + separator + number[6:]


FIELDS = (
    "title", "body", "summary", "recipients", "unit", "contact_name", "contact_phone",
    "alt", "image_url", "link_text", "link_url", "html_body",
)  # fmt: skip


def _with(field: str, text: str) -> ContentEvent:
    fields: dict[str, Any] = {}
    if field in ("title", "body", "summary", "recipients", "unit"):
        fields[field] = f"Kontakt {text} i dag"
    elif field.startswith("contact_"):
        fields["contact"] = {"name": "Anna", field.removeprefix("contact_"): f"tel {text}"}
        if field == "contact_name":
            fields["contact"] = {"name": f"Anna {text}"}
    elif field in ("alt", "image_url"):
        image = {"url": "https://x.se/a.jpg", "alt": "Barn i skolan"}
        image["url" if field == "image_url" else "alt"] = (
            f"https://x.se/{text}.jpg" if field == "image_url" else f"Barn {text}"
        )
        fields["images"] = [image]
    elif field in ("link_text", "link_url"):
        link = {"url": "https://x.se/a", "text": "Ansök om plats"}
        link["url" if field == "link_url" else "text"] = (
            f"https://x.se/?pnr={text}" if field == "link_url" else f"Ärende {text}"
        )
        fields["links"] = [link]
    else:
        fields["body"] = f"<p>Hej <b>{text}</b></p>"
    return _event("lerum", **fields)


PNR = ContentRule("personal_identity_number", "block")


@settings(max_examples=examples(300), deadline=None)
@given(identity_numbers(), st.sampled_from(FIELDS))
def test_a_valid_identity_number_is_found_in_any_field(number: str, field: str) -> None:
    found = check(_with(field, number), [PNR])
    assert [f.rule for f in found] == ["personal_identity_number"]
    assert number not in found[0].message, "the finding says where, never what"
    assert number[-4:] not in found[0].message


ordinary_numbers = st.one_of(
    st.builds(lambda a, b, c: f"0302-{a:02d} {b:02d} {c:02d}", *[st.integers(0, 99)] * 3),
    st.builds(lambda a, b: f"070-{a:03d} {b:02d} {b:02d}", st.integers(0, 999), st.integers(0, 99)),
    st.builds(lambda a, b: f"{a:03d} {b:02d}", st.integers(100, 999), st.integers(0, 99)),
    st.dates().map(lambda d: d.isoformat()),
    st.integers(0, 10**7).map(lambda n: f"{n:,} kr".replace(",", " ")),
    st.integers(0, 10**8).map(str),
)


@settings(max_examples=examples(300), deadline=None)
@given(ordinary_numbers, st.sampled_from(FIELDS))
def test_phone_numbers_postcodes_dates_and_amounts_are_not_identity_numbers(
    text: str, field: str
) -> None:
    assert check(_with(field, text), [PNR]) == ()


@settings(max_examples=examples(200), deadline=None)
@given(identity_numbers())
def test_a_number_with_a_wrong_check_digit_is_not_an_identity_number(number: str) -> None:
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert check(_with("body", wrong), [PNR]) == ()
