"""Two fault rounds of 100 items, as CI runs them: a random service SIGKILLed at a
random moment, a slow and a failing receiver, and the promise checked from the topics
and the receivers. ``python -m bench.faults --rounds 10 --items 1000`` is the large run."""

from __future__ import annotations

import pytest

from bench import faults


def test_two_fault_rounds_of_a_hundred_items_break_no_promise(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = faults.main(["--rounds", "2", "--items", "100"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "0 of 2 round(s) with violations" in printed
