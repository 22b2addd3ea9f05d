"""The key every pipeline topic and table uses for an item: ``{tenant}:{item_id}``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ItemKey"]


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
