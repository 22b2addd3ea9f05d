"""The gate's handler: load an item's state, decide, write the effects, save.

It talks only through ports (``ModelTable``, ``Outbox``, a clock and a
readiness check), so a test constructs it with in-memory fakes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from schemas.events import (
    AcceptedEvent,
    ContentFinding,
    Decision,
    DeliveryReceipt,
    GateCommand,
    ManualReject,
    ManualRelease,
    Recorded,
    Tick,
)
from services.gate import content
from services.gate.board import HeldBoard, record_value, rows_of
from services.gate.history import History
from services.gate.index import Entry, HoldIndex
from services.gate.machine import decide
from services.gate.ports import Board, GateMetrics, Holds
from services.gate.state import (
    Accepted,
    Effects,
    GatePolicy,
    Held,
    Input,
    ItemState,
    Receipt,
)
from services.gate.written import Written
from services.runtime import topics
from services.runtime.audit import acceptance
from services.runtime.keys import ItemKey
from services.runtime.operators import Identity
from services.runtime.ports import Clock, InboundRecord, ModelTable, OutboundRecord, Outbox
from services.runtime.stamps import Stamps, stamp_header

__all__ = ["GateHandler"]

#: ticks written together, each write one wait for the broker's acknowledgement
_TICKS_PER_WRITE = 500


#: items added to the index at a time while it is built
_INDEX_CHUNK = 2000


def _nothing(_: int) -> None:
    pass


async def _all(*waits: Awaitable[None]) -> None:
    await asyncio.gather(*waits)


def _entry(key: bytes, state: ItemState) -> Entry:
    """What the hold index keeps of an item's state."""
    holds = tuple((h.reasons, h.held_since) for h in state.held.values())
    escalated = sum(h.escalated for h in state.held.values())
    return (key, state.tenant, state.wake_at, holds, escalated)


@dataclass
class _Batch:
    """What a batch of inputs changes: each item's state and history (with the input
    that left them), the records to write, and what was decided."""

    states: dict[bytes, tuple[int, ItemState]] = field(default_factory=dict)
    #: What each item held before the batch: a change goes to the held list.
    held_before: dict[bytes, dict[str, Held]] = field(default_factory=dict)
    histories: dict[bytes, tuple[int, History]] = field(default_factory=dict)
    outbound: list[OutboundRecord] = field(default_factory=list)
    decided: list[tuple[ItemState, Effects]] = field(default_factory=list)


_COMMAND: TypeAdapter[Tick | ManualRelease | ManualReject | Recorded] = TypeAdapter(GateCommand)


class GateHandler:
    """Decides each input for its item, ticks items whose time has come, lists holds."""

    def __init__(
        self,
        *,
        policies: Mapping[str, GatePolicy],
        rules: Mapping[str, tuple[content.ContentRule, ...]],
        items: ModelTable[ItemState],
        history: ModelTable[History],
        outbox: Outbox,
        telemetry: GateMetrics,
        clock: Clock,
        ready: Callable[[], bool],
        console_url: str = "http://127.0.0.1:8081/console",
        index: Holds | None = None,
        board: Board | None = None,
        status_tenants: frozenset[str] = frozenset(),
    ) -> None:
        self._written = Written(console_url, status_tenants)
        #: The tenants whose CMS is told each item's status (``status_webhook``).
        self._policies = policies
        self._rules = rules
        self._items = items
        self._history = history
        self._outbox = outbox
        self._telemetry = telemetry
        self._clock = clock
        self._ready = ready
        self._index = index or HoldIndex()
        self._indexed = False
        #: Every item held, whichever process owns it (``gate.held``).
        self._board = board or HeldBoard()
        self._stamps = Stamps()

    # -- inputs -----------------------------------------------------------------------

    def _input(self, record: InboundRecord) -> tuple[Input | None, tuple[Decision, ...]]:
        """The input to decide (None if there is nothing to decide) and the decisions
        made before the gate that it brings for the item's history."""
        topic, value = record.topic, record.value or b""
        kind, marker = topics.RECORDED_HEADER
        if topic == topics.ACCEPTED and record.header(kind) == marker.decode():
            return None, (Recorded.model_validate_json(value).decision,)
        if topic == topics.ACCEPTED:
            accepted = AcceptedEvent.model_validate_json(value)
            found = content.check(accepted.event, self._rules.get(accepted.tenant, ()))
            findings = tuple(
                ContentFinding(rule=f.rule, action=f.action, message=f.message, fix=f.fix)
                for f in found
            )
            event = accepted.event
            readability = content.lix(event.body) if event.audience == "external" else None
            return Accepted(accepted.event_id, event, findings, readability), (
                acceptance(accepted),
            )
        if topic == topics.RECEIPTS:
            return Receipt(DeliveryReceipt.model_validate_json(value)), ()
        command = _COMMAND.validate_json(value)
        if isinstance(command, Recorded):
            return None, (command.decision,)
        return command, ()

    async def handle(self, record: InboundRecord) -> None:
        """Decide one input (a batch of one)."""
        await self.handle_batch([record])

    async def handle_batch(
        self, records: Sequence[InboundRecord], enter: Callable[[int], None] = _nothing
    ) -> None:
        """Decide inputs in their order, write every effect and save what changed."""
        await (await self.decide_batch(records, enter))

    async def decide_batch(
        self, records: Sequence[InboundRecord], enter: Callable[[int], None] = _nothing
    ) -> Awaitable[None]:
        """Decide inputs in their order and write every effect; put what changed in the
        tables and answer what waits until that is saved.

        Effects are written before the states are saved: a crash between them
        replays the inputs, and a repeated release is caught downstream, while a
        lost one could not be. The inputs count as handled only once the answer
        is awaited; the next batch may be decided meanwhile, as it reads the
        tables, which already hold what this one put. Each item's state and
        history are put once per batch; *enter(i)* is called before what input
        *i* left is put (the runner makes that input current there).
        """
        now = self._clock()
        batch = _Batch()
        for i, record in enumerate(records):
            read = self._read(record)
            if read is None:
                continue
            key, inp, noted = read
            raw_key = key.encode()
            if inp is not None:
                if raw_key in batch.states:
                    before: ItemState | None = batch.states[raw_key][1]
                else:
                    before = self._items.get(raw_key)
                    batch.held_before[raw_key] = before.held if before else {}
                state = before or ItemState(tenant=key.tenant, item_id=key.item_id)
                state, effects = decide(state, inp, now, self._policies[key.tenant])
                batch.outbound.extend(self._written.outbound(raw_key, state, effects, now))
                batch.decided.append((state, effects))
                batch.states[raw_key] = (i, state)
                noted = (*noted, *effects.decisions)
            self._add_history(batch, raw_key, i, noted)
        stamp, boarded = self._board_records(batch, now)
        await self._outbox.send_all([*batch.outbound, *(out for _, _, out in boarded)])
        self._board.put_many((raw_key, stamp, rows) for raw_key, rows, _ in boarded)
        self._count(batch.decided, now)
        # Saved even when unchanged: an input replayed after a crash finds the state
        # it made already in a local store, decides nothing new, and this write is
        # what puts that state on the changelog, if the crash kept it off.
        for raw_key, (i, state) in batch.states.items():
            enter(i)
            self._items.put(raw_key, state)
        self._index.update_many([_entry(k, s) for k, (_, s) in batch.states.items()])
        for raw_key, (i, history) in batch.histories.items():
            enter(i)
            self._history.put(raw_key, history)
        # Both taken now, before anything else can put.
        return _all(self._items.saved(), self._history.saved())

    def _board_records(
        self, batch: _Batch, now: datetime
    ) -> tuple[float, list[tuple[bytes, list[dict[str, Any]], OutboundRecord]]]:
        """The held list's record of every item whose holds the batch changed, and the
        time they carry (later than any this process gave before)."""
        stamp = self._stamps.next(now)
        out = []
        for raw_key, (_, state) in batch.states.items():
            if state.held == batch.held_before.get(raw_key, {}):
                continue
            rows = rows_of(state, self._policies.get(state.tenant))
            record = OutboundRecord(topics.HELD, raw_key, record_value(rows), [stamp_header(stamp)])
            out.append((raw_key, rows, record))
        return stamp, out

    def _read(
        self, record: InboundRecord
    ) -> tuple[ItemKey, Input | None, tuple[Decision, ...]] | None:
        """The item an input is for, the input and the decisions it brings; None (and
        counted) if it cannot be decided."""
        key = ItemKey.parse(record.key)
        if key is None or record.value is None:
            self._telemetry.unkeyed_input(record)
            return None
        try:
            inp, noted = self._input(record)
        except ValidationError as exc:
            self._telemetry.undecodable_input(record, exc.error_count())
            return None
        if key.tenant not in self._policies:
            self._telemetry.unknown_tenant(record, key.tenant, key.item_id)
            return None
        return key, inp, noted

    def _add_history(
        self, batch: _Batch, raw_key: bytes, i: int, decisions: Sequence[Decision]
    ) -> None:
        if not decisions:
            return
        if raw_key in batch.histories:
            before = batch.histories[raw_key][1]
        else:
            before = self._history.get(raw_key) or History()
        after = before
        for decision in decisions:
            after = after.add(decision)  # a replayed decision is not added twice
        if after is not before:
            batch.histories[raw_key] = (i, after)

    def _count(self, decided: Sequence[tuple[ItemState, Effects]], now: datetime) -> None:
        for state, effects in decided:
            for order in effects.releases:
                latency = None
                if (
                    order.audience == "external"
                    and order.action == "publish"
                    and state.internal_delivered_at is not None
                ):
                    latency = (now - state.internal_delivered_at).total_seconds()
                self._telemetry.released(order, latency)
            for decision in effects.decisions:
                self._telemetry.decided(decision)

    # -- time -------------------------------------------------------------------------

    def _index_once(self) -> bool:
        """Build the index from the recovered table, once the service is ready.

        In one go, so no write interleaves with the walk: with a million items
        held this takes seconds, during which the gate is not yet ready.
        """
        if not self._indexed and self._ready():
            entries: list[Entry] = []
            held: list[tuple[bytes, float, list[dict[str, Any]]]] = []
            for key, state in self._items.items():
                entries.append(_entry(key, state))
                if state.is_held():  # known before any gate.held record names it
                    held.append((key, 0.0, rows_of(state, self._policies.get(state.tenant))))
                if len(entries) == _INDEX_CHUNK:
                    self._index.update_many(entries)
                    self._board.put_many(held)
                    entries.clear()
                    held.clear()
            self._index.update_many(entries)
            self._board.put_many(held)
            self._indexed = True
        return self._indexed

    def ready(self) -> bool:
        """Recovered and indexed (built here, once recovered, if the timer has not
        yet): the timers and the held list answer truthfully."""
        return self._index_once() and self._ready()

    async def tick_due(self) -> None:
        """Send a tick to every item whose wake time has come; refresh the hold gauges."""
        if not self.ready():
            return
        now = self._clock()
        ticks = []
        for raw_key, _ in self._index.due(now):
            key = ItemKey.parse(raw_key)
            if key is None:
                continue
            tick = Tick(tenant=key.tenant, item_id=key.item_id, at=now)
            ticks.append(
                OutboundRecord(topics.GATE_COMMANDS, raw_key, tick.model_dump_json().encode())
            )
        for start in range(0, len(ticks), _TICKS_PER_WRITE):
            await self._outbox.send_all(ticks[start : start + _TICKS_PER_WRITE])
        index = self._index
        self._telemetry.holds(
            index.counts(),
            {
                tenant: (index.items(tenant), index.escalated(tenant), index.oldest(tenant))
                for tenant in self._policies
            },
            now,
        )

    # -- operators --------------------------------------------------------------------

    @property
    def board(self) -> Board:
        """The held list of every item, whichever process owns it."""
        return self._board

    def held(self) -> list[ItemState]:
        """Every item that holds something now."""
        states: Iterable[ItemState | None]
        if self._index_once():
            states = (self._items.get(key) for key in self._index.held())
        else:  # still recovering: what the table has so far
            states = list(self._items.values())
        return [s for s in states if s is not None and s.is_held()]

    def state(self, key: ItemKey) -> ItemState | None:
        return self._items.get(key.encode())

    def policy(self, tenant: str) -> GatePolicy | None:
        return self._policies.get(tenant)

    def history(self, key: ItemKey) -> History:
        return self._history.get(key.encode()) or History()

    async def request(
        self, key: ItemKey, reason: str, person: Identity, *, release: bool, wait_s: float = 5.0
    ) -> tuple[str, str | None]:
        """A person asks to release what *key* holds (a manual release, decision
        ``overridden``) or to stop it (decision ``rejected_by_operator``), and waits up
        to *wait_s* for the owning gate process to decide it. ``(status, request id)``:
        "released"/"rejected" once decided, "requested" while not yet, "not_held" (id
        None) when nothing is held."""
        request_id = await self._request(key, reason, person.name, person.email, release=release)
        if request_id is None:
            return "not_held", None
        done = "released" if release else "rejected"
        return (done if await self._left_held(key, wait_s) else "requested"), request_id

    async def _left_held(self, key: ItemKey, wait_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while self._board.get(key.encode()):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _request(
        self, key: ItemKey, reason: str, operator: str, email: str | None, *, release: bool
    ) -> str | None:
        # Held here or on another gate process: the owner decides it in the item's order.
        if key.tenant not in self._policies or not self._board.get(key.encode()):
            return None
        request_id = str(uuid.uuid4())
        fields = {
            "tenant": key.tenant,
            "item_id": key.item_id,
            "reason": reason,
            "at": self._clock(),
            "request_id": request_id,
            "operator": operator,
            "operator_email": email,
        }
        command = ManualRelease(**fields) if release else ManualReject(**fields)
        await self._outbox.send_all(
            [OutboundRecord(topics.GATE_COMMANDS, key.encode(), command.model_dump_json().encode())]
        )
        self._telemetry.operator_requested(command)
        return request_id
