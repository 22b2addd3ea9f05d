"""The gate's promise, checked on the pure core: scenarios, then random interleavings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    Contact,
    ContentEvent,
    ContentFinding,
    DeliveryReceipt,
    ManualRelease,
    ReleaseOrder,
    Tick,
)
from services.gate.machine import decide
from services.gate.state import (
    AWAITING_INTERNAL_LEAD,
    AWAITING_INTERNAL_NOTICE,
    AWAITING_PUBLISH_AT,
    Accepted,
    Effects,
    GatePolicy,
    ItemState,
    Receipt,
)
from tests.conftest import content_event, internal_notice
from tests.properties import examples

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
POLICY = GatePolicy(
    organization="Lerums kommun",
    logo_url="https://www.lerum.se/logo.svg",
    website="https://www.lerum.se",
    contact=Contact(name="Kommunikationsenheten"),
    internal_lead=timedelta(minutes=10),
    escalate_after=timedelta(hours=1),
    crisis_lane=True,
)


#: The clock moved on; the gate reads the time from ``now``, not from the tick.
TICK = Tick(tenant="lerum", item_id="news-2026-001", at=T0)


def _event(internal: bool = False, **overrides: object) -> ContentEvent:
    overrides.setdefault("publish_at", T0.isoformat())
    raw = internal_notice(**overrides) if internal else content_event(**overrides)
    return ContentEvent.model_validate(raw)


def _receipts(order: ReleaseOrder, at: datetime) -> list[Receipt]:
    return [
        Receipt(
            DeliveryReceipt(
                decision_id=order.decision_id,
                tenant=order.tenant,
                item_id=order.item_id,
                version=order.version,
                action=order.action,
                audience=order.audience,
                channel=c,
                delivered_at=at,
            )
        )
        for c in order.channels
    ]


class OneItem:
    """One item's state, fed like the service feeds it (through JSON, as after a restart)."""

    def __init__(self, policy: GatePolicy = POLICY) -> None:
        self.state = ItemState(tenant="lerum", item_id="news-2026-001")
        self.policy = policy
        self.effects: list[Effects] = []

    def feed(self, inp: object, now: datetime) -> Effects:
        state, effects = decide(self.state, inp, now, self.policy)  # type: ignore[arg-type]
        self.state = ItemState.model_validate_json(state.model_dump_json())
        self.effects.append(effects)
        return effects

    def kinds(self) -> list[tuple[str, str | None]]:
        return [(d.kind, d.audience) for e in self.effects for d in e.decisions]


def test_external_first_is_held_then_released_after_the_receipt_and_lead() -> None:
    gate = OneItem()
    held = gate.feed(Accepted("e1", _event()), T0)
    assert held.releases == ()
    assert [d.kind for d in held.decisions] == ["held"]
    assert held.decisions[0].reason == AWAITING_INTERNAL_NOTICE
    assert held.decisions[0].rule == "internal_before_external"

    notice = gate.feed(Accepted("i1", _event(internal=True)), T0)
    assert [o.audience for o in notice.releases] == ["internal"]
    # The gate's own forward is not enough: only the receipt counts.
    assert gate.state.held["external"].reasons == (AWAITING_INTERNAL_NOTICE,)

    after_receipt = gate.feed(
        _receipts(notice.releases[0], T0 + timedelta(seconds=1))[0], T0 + timedelta(seconds=1)
    )
    assert after_receipt.releases == ()
    assert gate.state.held["external"].reasons == (AWAITING_INTERNAL_LEAD,)
    assert gate.state.wake_at == T0 + timedelta(minutes=10, seconds=1)

    early = gate.feed(TICK, T0 + timedelta(minutes=10))
    assert early.releases == ()
    released = gate.feed(TICK, T0 + timedelta(minutes=10, seconds=1))
    order = released.releases[0]
    assert (order.audience, order.channels, order.version) == ("external", ["web"], 1)
    assert order.event_id == "e1"
    assert order.sender.organization == "Lerums kommun"
    assert order.sender.unit == "Sektor Lärande"
    assert order.sender.contact.name == "Kommunikationsenheten"
    assert not gate.state.is_held()


def test_publish_at_holds_both_notices() -> None:
    gate = OneItem(POLICY.__class__(**{**POLICY.__dict__, "internal_lead": timedelta(0)}))
    later = T0 + timedelta(hours=2)
    notice = gate.feed(Accepted("i1", _event(internal=True, publish_at=later.isoformat())), T0)
    assert notice.releases == ()
    assert gate.state.held["internal"].reasons == (AWAITING_PUBLISH_AT,)
    assert gate.state.wake_at == later
    due = gate.feed(TICK, later)
    assert [o.audience for o in due.releases] == ["internal"]


def test_contact_from_the_event_wins_over_the_tenants_default() -> None:
    gate = OneItem()
    effects = gate.feed(
        Accepted("i1", _event(internal=True, contact={"name": "Anna Andersson"})), T0
    )
    assert effects.releases[0].sender.contact.name == "Anna Andersson"


def test_held_items_escalate_once_and_stay_held() -> None:
    gate = OneItem()
    gate.feed(Accepted("e1", _event()), T0)
    assert gate.state.wake_at == T0 + timedelta(hours=1)
    escalated = gate.feed(TICK, T0 + timedelta(hours=1))
    assert [d.kind for d in escalated.decisions] == ["escalated"]
    assert escalated.decisions[0].rule == "escalate_after"
    assert gate.state.held["external"].escalated
    assert gate.feed(TICK, T0 + timedelta(hours=5)).decisions == ()
    assert gate.state.is_held()


def test_a_notice_scheduled_for_later_does_not_escalate_early() -> None:
    gate = OneItem()
    later = T0 + timedelta(days=3)
    gate.feed(Accepted("e1", _event(publish_at=later.isoformat())), T0)
    assert gate.feed(TICK, T0 + timedelta(hours=2)).decisions == ()
    assert [d.kind for d in gate.feed(TICK, later + timedelta(hours=1)).decisions] == ["escalated"]


def test_a_hold_waiting_on_a_person_is_told_once_and_again_at_escalation() -> None:
    policy = POLICY.__class__(**{**POLICY.__dict__, "notify_after": timedelta(minutes=30)})
    gate = OneItem(policy)
    gate.feed(Accepted("e1", _event()), T0)
    assert gate.state.wake_at == T0 + timedelta(minutes=30), "the gate wakes for the e-mail"
    assert gate.feed(TICK, T0 + timedelta(minutes=29)).notifications == ()
    due = gate.feed(TICK, T0 + timedelta(minutes=30))
    [notify] = due.notifications
    assert (notify.kind, notify.audience) == ("held", "external")
    assert [(d.kind, d.rule) for d in due.decisions] == [("notified", "notify_after")]
    assert gate.feed(TICK, T0 + timedelta(minutes=45)).notifications == ()
    escalation = gate.feed(TICK, T0 + timedelta(hours=1))
    assert [n.kind for n in escalation.notifications] == ["escalated"]
    assert [d.kind for d in escalation.decisions] == ["escalated", "notified"]
    assert notify.notification_id != escalation.notifications[0].notification_id
    assert gate.feed(TICK, T0 + timedelta(hours=3)).notifications == ()


def test_an_item_waiting_only_for_its_publication_time_is_not_notified() -> None:
    policy = POLICY.__class__(**{**POLICY.__dict__, "notify_after": timedelta(minutes=30)})
    gate = OneItem(policy)
    later = T0 + timedelta(days=2)
    gate.feed(Accepted("i1", _event(internal=True, publish_at=later.isoformat())), T0)
    assert gate.feed(TICK, T0 + timedelta(hours=5)).notifications == ()
    assert gate.state.held["internal"].reasons == (AWAITING_PUBLISH_AT,)


def test_stale_and_duplicate_events() -> None:
    gate = OneItem()
    gate.feed(Accepted("e2", _event(version=2)), T0)
    stale = gate.feed(Accepted("e1", _event(version=1)), T0)
    assert [d.kind for d in stale.decisions] == ["stale"]
    assert gate.state.held["external"].event.version == 2
    assert gate.feed(Accepted("e2", _event(version=2)), T0) == Effects()


def test_a_newer_version_supersedes_the_held_one() -> None:
    gate = OneItem()
    gate.feed(Accepted("e1", _event(version=1)), T0)
    newer = gate.feed(Accepted("e2", _event(version=2, title="Rättad rubrik")), T0)
    assert ("stale", "external") in [(d.kind, d.audience) for d in newer.decisions]
    assert gate.state.held["external"].event.title == "Rättad rubrik"


def test_retract_cancels_what_is_held_and_is_forwarded_to_channels_that_published() -> None:
    gate = OneItem(POLICY.__class__(**{**POLICY.__dict__, "internal_lead": timedelta(0)}))
    notice = gate.feed(Accepted("i1", _event(internal=True)), T0)
    for receipt in _receipts(notice.releases[0], T0):
        gate.feed(receipt, T0)
    gate.feed(Accepted("e1", _event(version=1)), T0)
    gate.feed(Accepted("e2", _event(version=2, channels=["web", "social"])), T0)
    retract = gate.feed(Accepted("r1", _event(version=2, action="retract", channels=[])), T0)
    assert [d.kind for d in retract.decisions] == ["retracted"]
    # version 1 reached web (released at once); intranet had the notice
    web_order = next(o for e in gate.effects for o in e.releases if o.audience == "external")
    assert web_order.version == 1
    # only receipts make a channel "published"; none came back for web yet
    assert [o.channels for o in retract.releases] == [["intranet"]]
    assert retract.releases[0].action == "retract"


def test_manual_release_overrides_and_is_audited() -> None:
    gate = OneItem()
    gate.feed(Accepted("e1", _event()), T0)
    effects = gate.feed(
        ManualRelease(
            tenant="lerum",
            item_id="news-2026-001",
            reason="Rektor har informerat personalen muntligt",
            at=T0,
            request_id="req-1",
        ),
        T0,
    )
    assert [d.kind for d in effects.decisions] == ["overridden"]
    assert effects.decisions[0].operator_reason == "Rektor har informerat personalen muntligt"
    assert effects.decisions[0].rule == "manual_release"
    assert [o.audience for o in effects.releases] == ["external"]


def test_crisis_lane_sends_internal_and_external_together() -> None:
    gate = OneItem()
    effects = gate.feed(
        Accepted("c1", _event(crisis=True, publish_at=(T0 + timedelta(hours=1)).isoformat())), T0
    )
    assert [o.audience for o in effects.releases] == ["internal", "external"]
    assert {d.rule for d in effects.decisions if d.kind == "released"} == {"crisis_lane"}
    assert effects.releases[0].channels == ["intranet"]


def test_crisis_lane_off_holds_as_usual() -> None:
    gate = OneItem(POLICY.__class__(**{**POLICY.__dict__, "crisis_lane": False}))
    effects = gate.feed(Accepted("c1", _event(crisis=True)), T0)
    assert effects.releases == ()
    assert gate.state.held["external"].reasons == (AWAITING_INTERNAL_NOTICE,)


def test_blocking_content_check_holds_even_after_the_notice() -> None:
    gate = OneItem(POLICY.__class__(**{**POLICY.__dict__, "internal_lead": timedelta(0)}))
    notice = gate.feed(Accepted("i1", _event(internal=True)), T0)
    gate.feed(_receipts(notice.releases[0], T0)[0], T0)
    finding = ContentFinding(
        rule="personal_identity_number",
        action="block",
        message="Det finns ett personnummer i brödtexten.",
        fix="Ta bort numret.",
    )
    effects = gate.feed(Accepted("e1", _event(), findings=(finding,)), T0)
    assert effects.releases == ()
    assert gate.state.held["external"].reasons == ("content_check:personal_identity_number",)
    [held] = [d for d in effects.decisions if d.kind == "held"]
    assert held.findings == [finding], "the decision says what to fix"


def test_warning_content_check_releases_with_the_warning() -> None:
    gate = OneItem(POLICY.__class__(**{**POLICY.__dict__, "internal_lead": timedelta(0)}))
    notice = gate.feed(Accepted("i1", _event(internal=True)), T0)
    gate.feed(_receipts(notice.releases[0], T0)[0], T0)
    finding = ContentFinding(
        rule="summary_required", action="warn", message="Ingressen saknas.", fix="Skriv en."
    )
    effects = gate.feed(Accepted("e1", _event(), findings=(finding,)), T0)
    released = [d for d in effects.decisions if d.kind == "released"]
    assert released[0].warnings == ["content_check:summary_required"]
    assert released[0].findings == [finding]


def test_decision_ids_are_deterministic_so_replays_match() -> None:
    one, two = OneItem(), OneItem()
    assert one.feed(Accepted("e1", _event()), T0) == two.feed(Accepted("e1", _event()), T0)


# ---- properties over random interleavings -------------------------------------------


@dataclass
class World:
    """The gate plus a publish that delivers orders when told to, at most once per channel."""

    gate: OneItem = field(default_factory=OneItem)
    now: datetime = T0
    outbox: list[ReleaseOrder] = field(default_factory=list)
    delivered: set[tuple[int, str, str]] = field(default_factory=set)
    #: when staff were told: the first delivered internal notice newer than every
    #: internal version retracted (a retract makes the item untold again)
    internal_delivered_at: datetime | None = None
    #: the newest internal version sent to staff
    internal_sent: int = 0
    internal_retracted: int = 0
    accepted: list[Accepted] = field(default_factory=list)
    releases: list[tuple[ReleaseOrder, datetime | None]] = field(default_factory=list)
    overridden: bool = False

    def feed(self, inp: object) -> None:
        effects = self.gate.feed(inp, self.now)
        for order in effects.releases:
            self.releases.append((order, self.internal_delivered_at))
            if order.audience == "internal" and order.action == "publish":
                self.internal_sent = max(self.internal_sent, order.version)
        self.outbox.extend(effects.releases)

    def deliver_one(self, duplicate: bool) -> None:
        if not self.outbox:
            return
        order = self.outbox.pop(0)
        for receipt in _receipts(order, self.now):
            key = (order.version, receipt.receipt.channel, order.action)
            if key in self.delivered and not duplicate:
                continue
            self.delivered.add(key)
            told = order.version > self.internal_retracted
            if order.audience == "internal" and order.action == "publish" and told:
                self.internal_delivered_at = self.internal_delivered_at or self.now
            self.feed(receipt)


ops = st.one_of(
    st.tuples(st.just("external"), st.integers(1, 4), st.integers(-30, 90), st.booleans()),
    st.tuples(st.just("internal"), st.integers(1, 4), st.integers(-30, 90), st.just(False)),
    st.tuples(st.just("retract"), st.integers(1, 4), st.just(0), st.booleans()),
    st.tuples(st.just("deliver"), st.just(0), st.just(0), st.booleans()),
    st.tuples(st.just("advance"), st.integers(1, 120), st.just(0), st.just(False)),
    st.tuples(st.just("redeliver"), st.integers(0, 20), st.just(0), st.just(False)),
)


def _run(steps: list[tuple[str, int, int, bool]], crisis_lane: bool) -> World:
    policy = POLICY.__class__(**{**POLICY.__dict__, "crisis_lane": crisis_lane})
    world = World(gate=OneItem(policy))
    for n, (op, a, b, flag) in enumerate(steps):
        if op in {"external", "internal"}:
            event = _event(
                internal=op == "internal",
                version=a,
                crisis=flag and op == "external",
                publish_at=(world.now + timedelta(minutes=b)).isoformat(),
            )
            accepted = Accepted(f"ev{n}", event)
            world.accepted.append(accepted)
            world.feed(accepted)
        elif op == "retract":
            event = _event(internal=flag, version=a, action="retract", channels=[])
            if flag:
                # Staff are told it is withdrawn (CONTRACT 3.7): this version and every
                # one they were sent no longer count; only a newer one tells them again.
                world.internal_retracted = max(world.internal_retracted, a, world.internal_sent)
                world.internal_delivered_at = None
            world.feed(Accepted(f"ev{n}", event))
        elif op == "deliver":
            world.deliver_one(duplicate=flag)
        elif op == "advance":
            world.now += timedelta(minutes=a)
            world.feed(TICK)
        elif op == "redeliver" and world.accepted:
            world.feed(world.accepted[a % len(world.accepted)])
    return world


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(ops, max_size=40))
def test_no_external_release_before_the_delivered_notice_plus_lead_and_publish_at(
    steps: list[tuple[str, int, int, bool]],
) -> None:
    world = _run(steps, crisis_lane=False)
    event_of = {d.decision_id: d.event_id for e in world.gate.effects for d in e.decisions}
    accepted = {a.event_id: a.event for a in world.accepted}
    for order, delivered_at in world.releases:
        if order.audience != "external" or order.action != "publish":
            continue
        assert delivered_at is not None, "external release before any internal notice was delivered"
        assert order.released_at >= delivered_at + POLICY.internal_lead
        event_id = event_of[order.decision_id]
        assert event_id is not None
        assert order.released_at >= accepted[event_id].publish_at


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(ops, max_size=40), st.booleans())
def test_nothing_is_released_twice(steps: list[tuple[str, int, int, bool]], crisis: bool) -> None:
    world = _run(steps, crisis_lane=crisis)
    published = [(o.audience, o.version) for o, _ in world.releases if o.action == "publish"]
    assert len(published) == len(set(published))


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(ops, max_size=40))
def test_every_external_request_goes_out_once_its_notice_is_delivered_and_nothing_without(
    steps: list[tuple[str, int, int, bool]],
) -> None:
    world = _run(steps, crisis_lane=False)
    # Let publish deliver everything and let time pass far beyond every publish_at.
    for _ in range(20):
        while world.outbox:
            world.deliver_one(duplicate=False)
        world.now += timedelta(days=1)
        world.feed(TICK)
    state = world.gate.state
    assert (state.internal_delivered_at is None) == (world.internal_delivered_at is None)
    if state.internal_delivered_at is not None:
        assert "external" not in state.held, state.held["external"].reasons
    else:
        told = [d for o, d in world.releases if o.audience == "external" and o.action == "publish"]
        assert all(d is not None for d in told), "released only while staff were told"
    # What is held is visible with its reasons, never silently gone.
    for held in state.held.values():
        assert held.reasons


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(ops, max_size=30))
def test_every_decision_is_audited_with_its_rule(steps: list[tuple[str, int, int, bool]]) -> None:
    world = _run(steps, crisis_lane=True)
    for effects in world.gate.effects:
        decided = {d.decision_id for d in effects.decisions}
        assert all(o.decision_id in decided for o in effects.releases)
        for decision in effects.decisions:
            assert decision.rule
            assert decision.reason
            assert (decision.tenant, decision.item_id) == ("lerum", "news-2026-001")


def test_a_notice_newer_than_the_retract_tells_staff_again_once_delivered() -> None:
    # CONTRACT 3.7: "until a newer internal notice of the item is delivered". Version 2
    # waits for its publication time when the CMS retracts version 1: version 2 is
    # the newer notice, and once delivered the external version may go.
    gate = OneItem(POLICY.__class__(**{**POLICY.__dict__, "internal_lead": timedelta(0)}))
    later = T0 + timedelta(minutes=30)
    gate.feed(Accepted("i2", _event(internal=True, version=2, publish_at=later.isoformat())), T0)
    gate.feed(Accepted("r1", _event(internal=True, version=1, action="retract", channels=[])), T0)
    gate.feed(Accepted("e2", _event(version=2, publish_at=later.isoformat())), T0)
    [notice] = gate.feed(TICK, later).releases
    assert (notice.audience, notice.version) == ("internal", 2)
    released: list[ReleaseOrder] = []
    for receipt in _receipts(notice, later):
        released += gate.feed(receipt, later).releases
    assert [(o.audience, o.version) for o in released] == [("external", 2)]


def _external_reasons(gate: OneItem) -> tuple[str, ...]:
    return gate.state.held["external"].reasons


def test_a_retracted_internal_notice_no_longer_counts_as_told() -> None:
    # CONTRACT 3.7: "känt och förankrat internt" fails once staff are told the
    # information is withdrawn; the external version waits for a newer notice.
    gate = OneItem(POLICY.__class__(**{**POLICY.__dict__, "internal_lead": timedelta(0)}))
    notice = gate.feed(Accepted("i1", _event(internal=True)), T0)
    for receipt in _receipts(notice.releases[0], T0):
        gate.feed(receipt, T0)
    later = T0 + timedelta(hours=1)
    gate.feed(Accepted("e1", _event(publish_at=later.isoformat())), T0)
    assert _external_reasons(gate) == ("awaiting_publish_at",)

    retract = gate.feed(Accepted("r1", _event(internal=True, action="retract", channels=[])), T0)
    assert [(d.kind, d.audience) for d in retract.decisions] == [
        ("retracted", "internal"),
        ("held", "external"),
    ]
    assert [(o.action, o.channels) for o in retract.releases] == [("retract", ["intranet"])]
    assert retract.releases[0].audience == "internal", "the released external is left alone"
    assert _external_reasons(gate) == (
        "internal_notice_retracted",
        "awaiting_publish_at",
    )

    past = later + timedelta(minutes=1)
    assert not gate.feed(TICK, past).releases
    for receipt in _receipts(notice.releases[0], past):  # the old notice's receipt, again
        assert not gate.feed(receipt, past).releases
    assert gate.state.held["external"].reasons == ("internal_notice_retracted",)

    newer = gate.feed(Accepted("i2", _event(internal=True, version=2)), past)
    released = [o for o in newer.releases if o.audience == "internal"]
    assert [o.version for o in released] == [2]
    externals = [
        o
        for receipt in _receipts(released[0], past)
        for o in gate.feed(receipt, past).releases
        if o.audience == "external"
    ]
    assert [(o.version, o.action) for o in externals] == [(1, "publish")]
    assert "external" not in gate.state.held
