"""Pure validation of a raw CMS event: bytes in, a ContentEvent or every problem out.

No I/O, no clock, no logging: the HTTP handler and the Kafka agent both call
:func:`check_event`, so an event refused on one path is refused on the other
for the same reasons.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from schemas.events import PRESS_CHANNEL, ContentEvent, Decision, ItemId
from services.runtime.audit import AUDIT_NAMESPACE

__all__ = [
    "FieldError",
    "Invalid",
    "TenantChannels",
    "check_event",
    "rejection",
]

#: tenant name -> channel name -> "internal" | "external"
TenantChannels = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class FieldError:
    field: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        pointer = "#/" + self.field.replace(".", "/").replace("[", "/").replace("]", "")
        return {"field": self.field, "pointer": pointer, "detail": self.problem}


@dataclass(frozen=True)
class Invalid:
    """Why an event was refused: 400 when it is not JSON, 422 when it breaks the schema."""

    status: Literal[400, 422]
    reason: str
    errors: tuple[FieldError, ...] = ()


def _field(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"


def _problem(message: str) -> str:
    return message.removeprefix("Value error, ")


def _context_errors(
    raw: Mapping[str, Any], tenant: str, item_id: str | None, channels: Mapping[str, str]
) -> list[FieldError]:
    errors: list[FieldError] = []
    if isinstance(raw.get("tenant"), str) and raw["tenant"] != tenant:
        errors.append(FieldError("tenant", f"must equal the tenant it is sent for ({tenant!r})"))
    if item_id is not None and isinstance(raw.get("item_id"), str) and raw["item_id"] != item_id:
        errors.append(FieldError("item_id", f"must equal the record key's item ({item_id!r})"))
    audience = raw.get("audience")
    named = raw.get("channels")
    if isinstance(named, list):
        for i, name in enumerate(named):
            if not isinstance(name, str):
                continue
            known = channels.get(name)
            if known is None:
                choices = ", ".join(sorted(channels))
                errors.append(
                    FieldError(f"channels[{i}]", f"unknown channel {name!r}; known: {choices}")
                )
            elif audience in ("internal", "external") and known != audience:
                errors.append(
                    FieldError(
                        f"channels[{i}]",
                        f"channel {name!r} is {known}, but the event's audience is {audience}",
                    )
                )
        if raw.get("action") == "publish" and not named:
            errors.append(FieldError("channels", "name at least one channel to publish to"))
        if PRESS_CHANNEL in named and raw.get("contact") is None:
            errors.append(FieldError("contact", "required when the press channel is named"))
    return errors


_ITEM_ID: TypeAdapter[str] = TypeAdapter(ItemId)


def _is_item_id(value: object) -> bool:
    try:
        _ITEM_ID.validate_python(value, strict=True)
    except ValidationError:
        return False
    return True


def rejection(
    body: bytes,
    invalid: Invalid,
    *,
    tenant: str,
    item_id: str | None,
    event_id: str,
    now: datetime,
) -> Decision:
    """The audit record of a refused event, with whatever of it could be read."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raw = None
    fields: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    item = item_id or fields.get("item_id")
    version = fields.get("version")
    audience = fields.get("audience")
    problems = "; ".join(f"{e.field}: {e.problem}" for e in invalid.errors)
    return Decision(
        decision_id=str(uuid.uuid5(AUDIT_NAMESPACE, f"{tenant}:{event_id}:rejected")),
        kind="rejected",
        reason=(f"{invalid.reason}: {problems}" if problems else invalid.reason)[:2000],
        rule="contract_v1",
        tenant=tenant,
        item_id=item if _is_item_id(item) else "unknown",
        version=version if isinstance(version, int) and version >= 0 else 0,
        audience=audience if audience in ("internal", "external") else None,
        event_id=event_id,
        decided_at=now,
    )


def check_event(
    body: bytes,
    tenants: TenantChannels,
    *,
    tenant: str | None,
    item_id: str | None = None,
) -> ContentEvent | Invalid:
    """Parse and validate one event.

    *tenant* is who the event is sent for (the URL's tenant, or the Kafka key's);
    None means "take the body's word", as for a keyless Kafka record. *item_id*
    is the Kafka key's item, checked against the body's.
    """
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Invalid(400, f"body is not JSON: {exc}")
    except RecursionError:
        return Invalid(400, "body is not JSON an event can be: it is nested too deeply")
    if not isinstance(raw, dict):
        return Invalid(422, "schema violation", (FieldError("(body)", "must be a JSON object"),))

    errors: list[FieldError] = []
    event: ContentEvent | None = None
    try:
        event = ContentEvent.model_validate(raw)
    except ValidationError as exc:
        errors.extend(
            FieldError(_field(tuple(e["loc"])), _problem(e["msg"]))
            for e in exc.errors(include_url=False)
        )

    who = tenant if tenant is not None else raw.get("tenant")
    if isinstance(who, str) and who in tenants:
        errors.extend(_context_errors(raw, who, item_id, tenants[who]))
    elif not any(e.field == "tenant" for e in errors):
        errors.append(FieldError("tenant", f"unknown tenant {who!r}"))

    if errors or event is None:
        return Invalid(422, "schema violation", tuple(dict.fromkeys(errors)))
    return event
