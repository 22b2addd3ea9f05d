"""The monthly follow-up e-mail: due on the first working day, to the communications
desk through publish's SMTP path, received once by a real SMTP server, also when the
gate restarts that day and asks again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import holidays

from schemas.events import Decision
from services.gate.followup import FollowUp
from services.gate.monthly import MonthlyReports
from services.publish.transports import transports_of
from services.runtime import topics
from services.runtime.config import Deployment, Notifications
from services.runtime.memory import MemoryOutbox
from services.runtime.ports import InboundRecord, OutboundRecord
from tests.e2e.receivers import SmtpReceiver
from tests.service.conftest import FakeClock
from tests.service.test_publish import Publish


def _history() -> FollowUp:
    at = datetime(2026, 10, 12, 8, 0, tzinfo=UTC)
    base = {
        "rule": "r",
        "tenant": "lerum",
        "item_id": "i1",
        "version": 1,
        "audience": "external",
        "unit": "Sektor Lärande",
    }
    return FollowUp().add_all(
        [
            Decision(
                decision_id="d1",
                kind="held",
                reason="awaiting_internal_notice",
                decided_at=at,
                **base,
            ),
            Decision(
                decision_id="d2",
                kind="released",
                reason="ok",
                decided_at=at + timedelta(hours=3),
                held_since=at,
                internal_lead_s=7200.0,
                **base,
            ),
        ]
    )


async def test_the_report_is_mailed_once_to_the_desk_across_a_restart(
    deployment: Deployment,
) -> None:
    smtp = SmtpReceiver().start()
    try:
        notify = Notifications.model_validate(
            {
                "desk": ["kommunikation@lerum.se"],
                "smtp": {
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "from": "gatekeeper@lerum.se",
                    "tls": "none",
                },
            }
        )
        lerum = deployment.tenants["lerum"].model_copy(update={"notifications": notify})
        deployment = deployment.model_copy(
            update={"tenants": {**deployment.tenants, "lerum": lerum}}
        )
        clock = FakeClock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))  # Sunday 1 November
        publish = Publish(deployment, clock, transports=transports_of(deployment, clock))

        async def to_publish(records: Sequence[OutboundRecord]) -> None:
            for r in records:
                await publish.handler.handle(
                    InboundRecord(r.topic, 0, 0, r.key, r.value, tuple(r.headers))
                )

        followup = _history()

        def gate() -> MonthlyReports:
            return MonthlyReports(
                tenants=["lerum"],
                followup=followup,
                ready=lambda: True,
                outbox=MemoryOutbox(on_send=to_publish),
                clock=clock,
                console_url="https://publicering.lerum.se/console",
                holidays=holidays.country_holidays("SE"),
            )

        first = gate()
        await first.tick()
        assert smtp.messages == [], "not before the month's first working day"
        clock.now = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)  # Monday 2 November
        await first.tick()
        await first.tick()
        await publish.attempts.wait()
        restarted = gate()  # a new process asks again the same day
        await restarted.tick()
        await publish.attempts.wait()

        [mail] = smtp.messages
        assert mail["To"] == "kommunikation@lerum.se"
        assert mail["Subject"] == "Uppföljning av kommunikationspolicyn, oktober 2026"
        payload = mail.get_payload(decode=True)
        assert isinstance(payload, bytes)
        text = payload.decode()
        assert "Sektor Lärande:" in text
        assert "Externt publicerade: 1" in text
        assert "Intern framförhållning (median): 2,0 timmar" in text
        assert "https://publicering.lerum.se/console/uppfoljning?tenant=lerum&month=2026-10" in text
        assert topics.RECEIPTS not in {r.topic for r in publish.outbox.sent}
    finally:
        smtp.stop()
