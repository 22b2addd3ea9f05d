"""The event contract of gatekeeper: every record that crosses a process boundary.

This package imports only pydantic, so any service (and any consumer of the
topics) can depend on it without pulling in a stream framework.
"""

from schemas.events import (
    AcceptedEvent,
    Audience,
    Contact,
    ContentEvent,
    ContentFinding,
    DeadLetter,
    Decision,
    DecisionKind,
    DeliveryReceipt,
    GateCommand,
    Image,
    Link,
    ManualReject,
    ManualRelease,
    Notification,
    PublishedNotice,
    ReleaseOrder,
    Sender,
    Tick,
)

__all__ = [
    "AcceptedEvent",
    "Audience",
    "Contact",
    "ContentEvent",
    "ContentFinding",
    "DeadLetter",
    "Decision",
    "DecisionKind",
    "DeliveryReceipt",
    "GateCommand",
    "Image",
    "Link",
    "ManualReject",
    "ManualRelease",
    "Notification",
    "PublishedNotice",
    "ReleaseOrder",
    "Sender",
    "Tick",
]
