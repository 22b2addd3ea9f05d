"""Swedish words both the console and the e-mails need."""

from __future__ import annotations

__all__ = ["duration", "month_name"]

_MONTHS = [
    "januari", "februari", "mars", "april", "maj", "juni",
    "juli", "augusti", "september", "oktober", "november", "december",
]  # fmt: skip


def month_name(month: str) -> str:
    """ "2026-09" as a communicator says it: "september 2026"."""
    year, number = month.split("-")
    return f"{_MONTHS[int(number) - 1]} {year}"


def duration(seconds: float | None) -> str:
    """A duration as a communicator reads it: "2 dygn 3 h", "45 min", a dash for none."""
    if seconds is None:
        return "–"
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} dygn"] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes or not parts else []
    return " ".join(parts)
