"""The baselines the gate is measured against, as processes of their own.

``python -m bench.baselines faust IN OUT`` runs a bare faust agent that forwards
every record; ``python -m bench.baselines faust IN OUT OUT2`` forwards every
record to both OUT and OUT2, the number of records the gate writes per input
(its decision and its item's state); ``python -m bench.baselines aiokafka IN
OUT`` a plain aiokafka consume-and-produce loop; ``python -m bench.baselines
door PORT OUT`` a bare door for signed events: aiohttp, the ``standardwebhooks``
verification with Lerum's secret, ``json.loads`` and aiokafka's
``send_and_wait`` to OUT, answered 202; ``python -m bench.baselines chain NAME
PORT:OUT|- IN:OUT...`` one faust app forwarding each IN to its OUT, and with
PORT:OUT also the bare door writing to OUT, as a service that has a door and
agents (``bench.path_bench`` builds a chain of them with as many hops as the
pipeline). All use the same broker settings as the services.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from standardwebhooks import Webhook, WebhookVerificationError

from services.runtime.app import make_app, run_worker
from services.runtime.settings import Settings
from services.runtime.web import WebService


def run_faust(source: str, *sinks: str) -> None:
    settings = Settings()
    app = make_app(f"bench-passthrough-{len(sinks)}", settings)
    inbound = app.topic(source, key_type=bytes, value_type=bytes)
    outbound = [app.topic(sink, key_type=bytes, value_type=bytes) for sink in sinks]

    @app.agent(inbound)
    async def forward(stream: Any) -> None:
        async for event in stream.events():
            for topic in outbound:
                await topic.send(key=event.key, value=event.value)

    run_worker(app, [], "warning")


def _door_app(send: Callable[[bytes, bytes], Awaitable[Any]]) -> web.Application:
    """The bare door: verify, parse, write with *send* (key, value), answer 202."""
    webhook = Webhook(os.environ["GATEKEEPER_SECRET_LERUM"])

    async def post(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            webhook.verify(body, dict(request.headers))
        except WebhookVerificationError:
            return web.json_response({"title": "Bad signature"}, status=401)
        event = json.loads(body)
        await send(f"{request.match_info['tenant']}:{event['item_id']}".encode(), body)
        return web.json_response({"status": "accepted"}, status=202)

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_post("/v1/tenants/{tenant}/events", post)
    app.router.add_get("/readyz", ready)
    return app


def run_chain(name: str, door: str, *pairs: str) -> None:
    settings = Settings()
    app = make_app(f"bench-chain-{name}", settings)
    for pair in pairs:
        source, sink = pair.split(":")
        outbound = app.topic(sink, key_type=bytes, value_type=bytes)

        async def forward(stream: Any, out: Any = outbound) -> None:
            async for event in stream.events():
                await out.send(key=event.key, value=event.value)

        app.agent(app.topic(source, key_type=bytes, value_type=bytes), name=f"hop-{source}")(
            forward
        )
    services = []
    if door != "-":
        port, sink = door.split(":")

        async def send(key: bytes, value: bytes) -> None:
            await app.producer.send_and_wait(sink, key, value, None, None, None)

        services.append(WebService(_door_app(send), "127.0.0.1", int(port)))
    run_worker(app, services, "warning")


async def run_aiokafka(source: str, sink: str) -> None:
    settings = Settings()
    servers = settings.kafka_bootstrap_servers
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=servers,
        group_id="bench-aiokafka",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_interval_ms=10_000,
        rebalance_timeout_ms=3_000,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=1_000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=servers, max_batch_size=1, acks="all")
    await consumer.start()
    await producer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            futures = [
                await producer.send(sink, key=record.key, value=record.value)
                for records in batch.values()
                for record in records
            ]
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


async def run_door(port: int, sink: str) -> None:
    settings = Settings()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()

    async def send(key: bytes, value: bytes) -> None:
        await producer.send_and_wait(sink, key=key, value=value)

    runner = web.AppRunner(_door_app(send), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await producer.stop()


if __name__ == "__main__":
    kind, source, *sinks = sys.argv[1:]
    if kind == "faust":
        run_faust(source, *sinks)
    elif kind == "door":
        asyncio.run(run_door(int(source), sinks[0]))
    elif kind == "chain":
        run_chain(source, *sinks)
    else:
        asyncio.run(run_aiokafka(source, sinks[0]))
