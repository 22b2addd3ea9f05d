"""``gatekeeper send FILE --tenant T``: sign an event as the tenant's CMS would and post it.

For trying the pipeline and for CMS integrators checking their payloads: the
answer is printed as ingest gave it, problem+json included.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks import Webhook

from services.runtime.config import Deployment

__all__ = ["send_event"]


def send_event(path: Path, tenant: str, base_url: str, deployment: Deployment) -> int:
    """Post *path* to ingest for *tenant*; 0 when it was accepted or a duplicate."""
    if tenant not in deployment.tenants:
        print(
            f"gatekeeper: no tenant {tenant!r}; known: {', '.join(deployment.tenants)}",
            file=sys.stderr,
        )
        return 2
    try:
        body = path.read_bytes()
    except OSError as exc:
        print(f"gatekeeper: {path}: {exc.strerror}", file=sys.stderr)
        return 2
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    signature = Webhook(deployment.secret(tenant)).sign(msg_id, now, body.decode("utf-8"))
    request = urllib.request.Request(  # noqa: S310  (the scheme is checked by the caller)
        f"{base_url.rstrip('/')}/v1/tenants/{tenant}/events",
        data=body,
        method="POST",
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            status, text = int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    except urllib.error.URLError as exc:
        print(f"gatekeeper: ingest at {base_url} is not reachable: {exc.reason}", file=sys.stderr)
        return 1
    print(f"{status} {json.dumps(json.loads(text), ensure_ascii=False, indent=2)}")
    return 0 if status in (200, 202) else 1
