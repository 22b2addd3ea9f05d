"""How long ``gatekeeper up`` takes from the command to all three services ready.

    python -m bench.up_bench [--rounds 3]

Each round starts ``gatekeeper up`` on a fresh data directory and free ports,
as a person would on a fresh machine, and polls the three ``/readyz`` every
20 ms; the figure is the time from starting the command until the last of the
three answered 200. Then it stops the pipeline with SIGTERM and waits for it
to exit. Every round is printed, then the median beside the target.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tests.harness import start_up

TARGET_S = 5.0
SERVICES = ("INGEST", "GATE", "PUBLISH")


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def one_round() -> dict[str, float]:
    """Seconds from ``gatekeeper up`` to each service's first 200 on ``/readyz``."""
    workdir = Path(tempfile.mkdtemp(prefix="gatekeeper-up-"))
    started = time.monotonic()
    up, ports, out, _ = start_up(workdir)
    pending = {name: f"http://127.0.0.1:{port}/readyz" for name, port in ports.items()}
    ready: dict[str, float] = {}
    try:
        while pending:
            if up.poll() is not None or time.monotonic() - started > 120:
                raise SystemExit(f"gatekeeper up did not come up; see {out}")
            for name, url in list(pending.items()):
                if _ready(url):
                    ready[name] = time.monotonic() - started
                    del pending[name]
            time.sleep(0.02)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)
    ready["all"] = max(ready.values())
    return ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = []
    for number in range(1, args.rounds + 1):
        figures = one_round()
        rounds.append(figures)
        print(
            f"round {number}: all three ready after {figures['all']:.2f} s (ingest"
            f" {figures['ingest']:.2f}, gate {figures['gate']:.2f},"
            f" publish {figures['publish']:.2f})",
            flush=True,
        )
    median = statistics.median(r["all"] for r in rounds)
    met = "yes" if median <= TARGET_S else "NO"
    print(f"gatekeeper up to all three ready, median {median:.2f} s   target <= 5 s   met {met}")
    print(json.dumps({"rounds": rounds, "median_s": median}))


if __name__ == "__main__":
    main()
