"""Reading a text as the content rules do: an HTML body as text with its links, images
and headings (lexbor, through selectolax), its words and sentences, and its LIX
(läsbarhetsindex, from textstat). Pure, and cached per text: a rule per channel
asks again.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import textstat
from selectolax.lexbor import LexborHTMLParser

__all__ = ["Body", "Measure", "lix", "measure", "read_body", "sentences", "words"]

textstat.set_lang("sv")

_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n{2,}")


@dataclass(frozen=True)
class Body:
    text: str
    links: tuple[tuple[str, str], ...]  # (href, text)
    images: tuple[tuple[str, str | None], ...]  # (src, alt)
    headings: tuple[int, ...]


def read_body(body: str) -> Body:
    """The body as text, with the links, images and heading levels in it."""
    tree = LexborHTMLParser(body)
    root = tree.body
    if root is None:
        return Body(body, (), (), ())
    for block in root.css("p, li, h1, h2, h3, h4, h5, h6, br, div, tr"):
        block.insert_after("\n\n" if block.tag != "br" else "\n")
    links = tuple(
        ((a.attributes.get("href") or "").strip(), " ".join(a.text().split()))
        for a in root.css("a")
    )
    images = tuple(
        ((i.attributes.get("src") or "").strip(), i.attributes.get("alt")) for i in root.css("img")
    )
    headings = tuple(int((h.tag or "h1")[1]) for h in root.css("h1, h2, h3, h4, h5, h6"))
    text = root.text(separator=" ")
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\s*\n\s*\n\s*", "\n\n", text).strip()
    return Body(text, links, images, headings)


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if words(s)]


def lix(text: str) -> float:
    """Läsbarhetsindex: words per sentence plus the share of words over six letters, in %."""
    return measure(text).lix


@dataclass(frozen=True)
class Measure:
    words: tuple[str, ...]
    lix: float
    sentences: tuple[tuple[str, int], ...]  # (sentence, its word count)


@functools.lru_cache(maxsize=32)
def measure(text: str) -> Measure:
    """A text's words, LIX and sentences, once per text: a rule per channel asks again."""
    found = tuple(words(text))
    counted = tuple((s, len(words(s))) for s in sentences(text))
    return Measure(found, float(textstat.lix(text)) if found else 0.0, counted)
