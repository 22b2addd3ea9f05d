"""The key every pipeline topic and table uses for an item: ``{tenant}:{item_id}``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["ItemKey", "from_segment", "path_segment"]


@dataclass(frozen=True, order=True)
class ItemKey:
    tenant: str
    item_id: str

    def __str__(self) -> str:
        return f"{self.tenant}:{self.item_id}"

    def encode(self) -> bytes:
        return str(self).encode()

    @classmethod
    def parse(cls, key: bytes | str | None) -> ItemKey | None:
        """``b"lerum:news-1"`` -> ``ItemKey("lerum", "news-1")``; None when not of that form."""
        if not key:
            return None
        if isinstance(key, bytes):
            try:
                key = key.decode("utf-8")
            except UnicodeDecodeError:
                return None
        tenant, sep, item = key.partition(":")
        return cls(tenant, item) if sep and tenant and item else None


#: Marks an id made of dots alone in a URL path. A browser resolves the segments
#: "." and ".." (and their encoded forms) away; "~" is never part of an id.
_DOTS = "~"


def path_segment(value: str) -> str:
    """*value* as one URL path segment: every reserved character encoded, and an id
    of dots alone marked so that no browser resolves it away (see :func:`from_segment`)."""
    if value and set(value) == {"."} and len(value) <= 2:
        return _DOTS + value
    return quote(value, safe="")


def from_segment(segment: str) -> str:
    """The value :func:`path_segment` made *segment* of (already percent-decoded)."""
    return segment[1:] if segment in (_DOTS + ".", _DOTS + "..") else segment
