"""Swedish words both the console and the e-mails need."""

from __future__ import annotations

__all__ = ["month_name"]

_MONTHS = [
    "januari", "februari", "mars", "april", "maj", "juni",
    "juli", "augusti", "september", "oktober", "november", "december",
]  # fmt: skip


def month_name(month: str) -> str:
    """ "2026-09" as a communicator says it: "september 2026"."""
    year, number = month.split("-")
    return f"{_MONTHS[int(number) - 1]} {year}"
