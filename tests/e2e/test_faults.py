"""Short fault rounds, as CI runs them: a service SIGKILLed at a random moment, a slow
and a failing receiver, and the promise checked from the topics and the receivers;
once as ``gatekeeper up`` runs the services, and on the deployed path as the chart
runs them (without the embedded flag), on both of the gate's stores, and once with
Kafka cut off for 15 s instead of a kill.
``python -m bench.faults --rounds 10 --items 1000`` is the large run."""

from __future__ import annotations

import pytest

from bench import faults


@pytest.mark.parametrize(
    ("rounds", "flags"),
    [
        (1, []),
        (1, ["--mode", "separate", "--store", "rocksdb", "--kill", "gate"]),
        (1, ["--mode", "separate", "--kafka-outage", "15"]),
    ],
    ids=["embedded", "separate-rocksdb-gate", "separate-kafka-outage"],
)
def test_fault_rounds_of_a_hundred_items_break_no_promise(
    capsys: pytest.CaptureFixture[str], rounds: int, flags: list[str]
) -> None:
    code = faults.main(["--rounds", str(rounds), "--items", "100", *flags])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"0 of {rounds} round(s) with violations" in printed
