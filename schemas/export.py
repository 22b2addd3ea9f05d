"""Write the JSON Schemas of the contract models into ``schemas/json``.

``python -m schemas.export`` rewrites the files; ``--check`` exits 1 and names
every file that differs from the models, so drift fails CI instead of reaching
an integrator.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import BaseModel, TypeAdapter

from schemas import events

__all__ = ["SCHEMA_DIR", "main", "rendered"]

SCHEMA_DIR = Path(__file__).parent / "json"

_MODELS: dict[str, type[BaseModel]] = {
    "content-event": events.ContentEvent,
    "accepted-event": events.AcceptedEvent,
    "release-order": events.ReleaseOrder,
    "published-notice": events.PublishedNotice,
    "delivery-receipt": events.DeliveryReceipt,
    "decision": events.Decision,
    "dead-letter": events.DeadLetter,
    "notification": events.Notification,
    "item-status": events.ItemStatus,
    "follow-up-report": events.FollowUpReport,
}


def rendered() -> dict[str, str]:
    """File name to file text for every exported schema."""
    out = {
        f"{name}.schema.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True)
        + "\n"
        for name, model in _MODELS.items()
    }
    command = TypeAdapter(events.GateCommand).json_schema()
    out["gate-command.schema.json"] = json.dumps(command, indent=2, sort_keys=True) + "\n"
    # The deployment file: for an editor that completes and checks YAML against it.
    from services.runtime.config import Deployment

    deployment = Deployment.model_json_schema(mode="validation")
    for resolved in (
        "secrets",
        "outbound_secrets",
        "channel_secrets",
        "smtp_logins",
        "webhook_urls",
    ):
        deployment["properties"].pop(resolved, None)  # resolved from the environment
    out["deployment.schema.json"] = json.dumps(deployment, indent=2, sort_keys=True) + "\n"
    return out


ASYNCAPI = Path(__file__).parent / "asyncapi.yaml"


def rendered_asyncapi() -> str:
    import importlib.metadata

    import yaml

    from schemas.asyncapi import document

    version = importlib.metadata.version("gatekeeper")
    head = "# Made by python -m schemas.export from the models; do not edit by hand.\n"
    return head + yaml.safe_dump(document(version), sort_keys=False, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when files differ")
    args = parser.parse_args(argv)
    wanted = rendered()
    if args.check:
        stale = [
            name
            for name, text in wanted.items()
            if not (SCHEMA_DIR / name).is_file() or (SCHEMA_DIR / name).read_text() != text
        ]
        extra = sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json") if p.name not in wanted)
        for name in [*stale, *extra]:
            print(f"schemas/json/{name} differs from the models; run python -m schemas.export")
        topics_stale = not ASYNCAPI.is_file() or ASYNCAPI.read_text() != rendered_asyncapi()
        if topics_stale:
            print("schemas/asyncapi.yaml differs from the models; run python -m schemas.export")
        return 1 if stale or extra or topics_stale else 0
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, text in wanted.items():
        (SCHEMA_DIR / name).write_text(text)
    ASYNCAPI.write_text(rendered_asyncapi())
    return 0


if __name__ == "__main__":
    sys.exit(main())
