"""Each item's decision history, as ``gate.decisions`` has it, for the console.

Pure: the model and how a decision is added to it. Decisions come from ingest
(accepted, rejected) and the gate (everything else); a replayed record is not
added twice.
"""

from __future__ import annotations

from schemas._base import Immutable
from schemas.events import Decision

__all__ = ["MAX_DECISIONS", "History"]

#: The newest decisions kept per item; older ones stay on gate.decisions.
MAX_DECISIONS = 100


class History(Immutable):
    decisions: tuple[Decision, ...] = ()

    def add(self, decision: Decision) -> History:
        if any(d.decision_id == decision.decision_id for d in self.decisions):
            return self
        ordered = sorted((*self.decisions, decision), key=lambda d: d.decided_at)
        return History(decisions=tuple(ordered[-MAX_DECISIONS:]))
