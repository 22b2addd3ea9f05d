"""Every performance figure beside its target, in one run.

    python -m bench.perf [--rounds 3] [--held 1000000]

Runs ``bench.gate_bench`` (release latency at 1,000 inputs/s, CPU per gate
input, throughput beside a bare faust passthrough and one writing the gate's
records per input), ``bench.up_bench`` (``gatekeeper up`` to all three ready)
and ``bench.recovery_bench`` (HELD items on RocksDB: restart to ready and
resident memory), printing every round as it goes and then one table: each
figure, its target and whether it is met. Exits 1 if any target is not met.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench import gate_bench, recovery_bench, up_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--held", type=int, default=1_000_000)
    args = parser.parse_args()

    gate_args = gate_bench.arguments(["--rounds", str(args.rounds)])
    rounds = [gate_bench.run_round(gate_args, k + 1) for k in range(args.rounds)]
    gate = gate_bench.summary(rounds)
    gate_bench.print_summary(gate, len(rounds))

    ups = []
    for number in range(1, args.rounds + 1):
        ups.append(up_bench.one_round()["all"])
        print(f"gatekeeper up, round {number}: all three ready after {ups[-1]:.2f} s", flush=True)
    up = statistics.median(ups)

    workdir = Path(tempfile.mkdtemp(prefix="gatekeeper-recovery-"))
    held = {"rocksdb": recovery_bench.measure("rocksdb", args.held, workdir)}

    rows = [
        *gate["targets"],
        ("gatekeeper up to all three ready, median", f"{up:.1f} s", "<= 5 s",
         up <= up_bench.TARGET_S),
        *recovery_bench.targets(held),
    ]  # fmt: skip
    print()
    gate_bench.print_targets(rows)
    raise SystemExit(0 if all(met for *_, met in rows) else 1)


if __name__ == "__main__":
    main()
