"""A webhook receiver as a process of its own, for the benches.

    python -m bench.receiver PORT SECRET [--delay SECONDS]

Verifies each request's Standard Webhooks signature with SECRET, as a receiver
does, notes the ``item_id`` of the JSON body and the time it came (epoch
seconds), waits DELAY and answers 200. ``GET /count`` answers how many came.
On SIGTERM it prints one JSON line, ``[[item_id, time], ...]``, and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time

import httpx
from aiohttp import web
from standardwebhooks import Webhook


async def serve(port: int, secret: str, delay: float) -> None:
    webhook = Webhook(secret)
    came: list[tuple[str, float]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        at = time.time()
        webhook.verify(body, dict(request.headers))
        came.append((json.loads(body)["item_id"], at))
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=200)

    async def count(_: web.Request) -> web.Response:
        return web.json_response({"count": len(came)})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    print("listening", flush=True)
    await stopped.wait()
    await runner.cleanup()
    print(json.dumps(came), flush=True)


class Receiver:
    """:mod:`bench.receiver` started as a process on *port*."""

    def __init__(self, port: int, secret: str, delay: float = 0.0) -> None:
        self.port = port
        argv = [sys.executable, "-m", "bench.receiver", str(port), secret]
        self._proc = subprocess.Popen(
            [*argv, "--delay", str(delay)], stdout=subprocess.PIPE, text=True
        )
        if self._proc.stdout is None or self._proc.stdout.readline().strip() != "listening":
            raise SystemExit(f"the receiver on port {port} did not start")

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def has(self, count: int) -> bool:
        """Whether at least *count* requests came."""
        try:
            answer = httpx.get(f"http://127.0.0.1:{self.port}/count", timeout=2)
        except httpx.HTTPError:
            return False
        return int(answer.json()["count"]) >= count

    def stop(self) -> dict[str, float]:
        """Stop it; each item's first arrival (epoch seconds)."""
        self._proc.send_signal(signal.SIGTERM)
        out, _ = self._proc.communicate(timeout=30)
        first: dict[str, float] = {}
        for item, at in json.loads(out.strip().splitlines()[-1]):
            first.setdefault(item, at)
        return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("secret")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.secret, args.delay))


if __name__ == "__main__":
    main()
