"""The gate's handler wired to its ports from the deployment: one assembly for the
service (Kafka-backed ports) and for the tests (in-memory ports), so the wiring is
written once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry

from services.gate.board import HeldBoard
from services.gate.content import ContentRule
from services.gate.handler import GateHandler
from services.gate.history import History
from services.gate.index import HoldIndex
from services.gate.ports import GateMetrics
from services.gate.state import ItemState
from services.gate.telemetry import GateTelemetry
from services.gate.tenants import content_rules_of, policies_of
from services.runtime.config import Deployment
from services.runtime.ports import Clock, ModelTable, Outbox

__all__ = ["DEFAULT_CONSOLE_URL", "gate_handler"]

DEFAULT_CONSOLE_URL = "http://127.0.0.1:8081/console"


def gate_handler(
    deployment: Deployment,
    *,
    items: ModelTable[ItemState],
    history: ModelTable[History],
    outbox: Outbox,
    registry: CollectorRegistry,
    clock: Clock,
    ready: Callable[[], bool],
    console_url: str = DEFAULT_CONSOLE_URL,
    index: HoldIndex | None = None,
    board: HeldBoard | None = None,
    rules: Mapping[str, tuple[ContentRule, ...]] | None = None,
    metrics: GateMetrics | None = None,
) -> GateHandler:
    """The deployment's policies and content rules (unless *rules* are given), its
    escalation times for the metrics, and the tenants whose CMS is told each item's
    status."""
    return GateHandler(
        policies=policies_of(deployment),
        rules=content_rules_of(deployment) if rules is None else rules,
        items=items,
        history=history,
        outbox=outbox,
        telemetry=metrics
        or GateTelemetry(
            registry, {name: t.policy.escalate_after for name, t in deployment.tenants.items()}
        ),
        clock=clock,
        ready=ready,
        console_url=console_url,
        index=index,
        board=board,
        status_tenants=frozenset(n for n, t in deployment.tenants.items() if t.status_webhook),
    )
