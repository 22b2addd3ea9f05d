"""Every performance figure beside its target, in one run.

    python -m bench.perf [--rounds 3] [--held 1000000]

Runs ``bench.gate_bench`` (release latency at 1,000 inputs/s, CPU per gate
input, throughput beside a bare faust passthrough and one writing the gate's
records per input), ``bench.up_bench`` (``gatekeeper up`` to all three ready),
``bench.recovery_bench`` (HELD items on RocksDB: restart to ready and resident
memory), ``bench.path_bench`` (an internal notice's POST to its external
release's receipt at 10, 100 and 500 items/s beside a bare chain as long),
``bench.door_bench`` (the CMS's door at 1, 10 and 50 clients beside a bare
door) and ``bench.publish_bench`` (webhook deliveries per second beside a bare
client loop), printing every round as it goes and then one table: each figure,
its target and whether it is met. Exits 1 if any target is not met.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench import door_bench, gate_bench, path_bench, publish_bench, recovery_bench, up_bench


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

    path = path_bench.measure(args.rounds, [10.0, 100.0, 500.0])
    door = door_bench.measure(args.rounds, [1, 10, 50])
    publish = publish_bench.measure(args.rounds)

    rows = [
        *gate["targets"],
        ("gatekeeper up to all three ready, median", f"{up:.1f} s", "<= 5 s",
         up <= up_bench.TARGET_S),
        *recovery_bench.targets(held),
        *path,
        *door,
        *publish,
    ]  # fmt: skip
    print()
    gate_bench.print_targets(rows)
    raise SystemExit(0 if all(met for *_, met in rows) else 1)


if __name__ == "__main__":
    main()
