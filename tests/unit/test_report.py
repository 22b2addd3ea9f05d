"""When the monthly follow-up e-mail is due: the first working day of a month in Sweden."""

from __future__ import annotations

from datetime import UTC, date, datetime

import holidays
import pytest

from services.gate.report import due_month, first_working_day

SWEDEN = holidays.country_holidays("SE")


@pytest.mark.parametrize(
    ("year", "month", "first"),
    [
        (2027, 1, date(2027, 1, 4)),  # Friday New Year's Day, then a weekend
        (2026, 5, date(2026, 5, 4)),  # Friday May Day, then a weekend
        (2026, 6, date(2026, 6, 1)),  # a Monday
        (2026, 8, date(2026, 8, 3)),  # Saturday the first
        (2024, 4, date(2024, 4, 2)),  # Easter Monday the first
    ],
)
def test_the_first_working_day_skips_weekends_and_public_holidays(
    year: int, month: int, first: date
) -> None:
    assert first_working_day(year, month, SWEDEN) == first


def test_last_month_is_due_from_the_first_working_day_on_in_stockholm() -> None:
    assert due_month(datetime(2027, 1, 3, 12, 0, tzinfo=UTC), SWEDEN) is None
    # 23:30 UTC on 3 January is already 4 January in Stockholm
    assert due_month(datetime(2027, 1, 3, 23, 30, tzinfo=UTC), SWEDEN) == "2026-12"
    assert due_month(datetime(2027, 1, 20, 9, 0, tzinfo=UTC), SWEDEN) == "2026-12"
