"""OpenAPI 3.1 descriptions of the HTTP APIs, made from the routes and the models.

Each service lists its operations (:class:`Operation`): path, method, parameters
and, per answer, the pydantic model of its body. :func:`document` turns them
into the document ``GET /openapi.json`` serves, with every model's JSON Schema
under ``components``; :func:`undescribed` names a route the app serves that no
operation describes (and one described that it does not serve), so a route
that changes without its description fails the tests.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel

import schemas
from schemas.api import Problem, Readiness

__all__ = [
    "NO_KEY",
    "THROTTLED",
    "Answer",
    "Operation",
    "Param",
    "add_openapi",
    "document",
    "package_version",
    "undescribed",
]

#: Routes that are pages for people, not an API: the console.
_PAGES = ("/console",)


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path", "query" or "header"
    description: str
    required: bool = False
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Answer:
    status: int
    description: str
    model: type[BaseModel] | None = Problem
    headers: tuple[str, ...] = ()
    content_type: str | None = None


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    answers: tuple[Answer, ...]
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    body_content_type: str = "application/json"
    #: an operator's bearer key
    secured: bool = False
    #: a Standard Webhooks signature with the tenant's secret
    signed: bool = False
    tags: tuple[str, ...] = ()
    #: Example bodies: names of files in ``schemas/examples`` (without ``.json``).
    examples: tuple[str, ...] = ()


#: The golden payloads, each valid against its model (tests/unit/test_schemas.py).
EXAMPLES = Path(schemas.__file__).resolve().parent / "examples"


def _examples(names: Sequence[str]) -> dict[str, Any]:
    return {
        name: {"value": json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))}
        for name in names
    }


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    found = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in found.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault(model.__name__, found)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _answer(answer: Answer, schemas: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": answer.description}
    if answer.model is not None:
        kind = answer.content_type or (
            "application/problem+json" if answer.model is Problem else "application/json"
        )
        out["content"] = {kind: {"schema": _ref(answer.model, schemas)}}
    elif answer.content_type:
        out["content"] = {answer.content_type: {"schema": {"type": "string"}}}
    if answer.headers:
        out["headers"] = {
            h: {"schema": {"type": "integer" if h == "Retry-After" else "string"}}
            for h in answer.headers
        }
    return out


def _operation(
    op: Operation, schemas: dict[str, Any], tenants: Sequence[str] = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{op.method.lower()}_"
        + "_".join(p.strip("{}") for p in op.path.split("/") if p).replace("-", "_"),
        "responses": {str(a.status): _answer(a, schemas) for a in op.answers},
    }
    if op.tags:
        out["tags"] = list(op.tags)
    if op.params:
        out["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required or p.where == "path",
                "description": p.description,
                "schema": (
                    {"type": "string", "enum": list(tenants)}
                    if p.name == "tenant" and tenants
                    else p.schema
                ),
            }
            for p in op.params
        ]
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {op.body_content_type: {"schema": _ref(op.body, schemas)}},
        }
        if op.examples:
            out["requestBody"]["content"][op.body_content_type]["examples"] = _examples(op.examples)
    if op.secured:
        out["security"] = [{"operator": []}]
    elif op.signed:
        out["security"] = [{"standardWebhooks": []}]
    else:
        out["security"] = []  # open: the operational endpoints
    return out


#: What every operator operation may answer before it looks at the request.
NO_KEY = Answer(401, "no key, or a wrong one")
THROTTLED = Answer(429, "too many failed logins from this address", headers=("Retry-After",))

#: Every service's operational endpoints.
OPERATIONAL = (
    Operation(
        "GET",
        "/healthz",
        "Whether the process is sound (200 as long as it answers)",
        (Answer(200, "sound", Readiness),),
        tags=("operations",),
    ),
    Operation(
        "GET",
        "/readyz",
        "Whether the service can do its work now; 503 with the reason otherwise",
        (Answer(200, "ready", Readiness), Answer(503, "not ready, with the reason", Readiness)),
        tags=("operations",),
    ),
    Operation(
        "GET",
        "/metrics",
        "Prometheus metrics, text format",
        (Answer(200, "the metrics", None, content_type="text/plain"),),
        tags=("operations",),
    ),
    Operation(
        "GET",
        "/openapi.json",
        "This description",
        (Answer(200, "an OpenAPI 3.1 document", None, content_type="application/json"),),
        tags=("operations",),
    ),
)


def document(
    title: str,
    version: str,
    description: str,
    operations: Iterable[Operation],
    webhooks: Sequence[Operation] = (),
    tenants: Sequence[str] = (),
) -> dict[str, Any]:
    """The OpenAPI document of *operations* (and the operational endpoints); a ``tenant``
    parameter lists the deployment's *tenants*."""
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for op in (*OPERATIONAL, *operations):
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schemas, tenants)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": "/", "description": "this service, where this document is served"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "operator": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An operator's key (the operators file or the shared one)",
                },
                "standardWebhooks": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "webhook-signature",
                    "description": "Standard Webhooks: v1,<base64 HMAC-SHA256> with the "
                    "tenant's secret over webhook-id.webhook-timestamp.body",
                },
            },
        },
    }
    if webhooks:
        doc["webhooks"] = {op.path: {op.method.lower(): _operation(op, schemas)} for op in webhooks}
    return doc


def package_version() -> str:
    try:
        return importlib.metadata.version("gatekeeper")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def add_openapi(app: web.Application, doc: dict[str, Any]) -> None:
    async def serve(_: web.Request) -> web.Response:
        return web.json_response(doc)

    app.router.add_get("/openapi.json", serve)


def undescribed(app: web.Application, doc: dict[str, Any]) -> list[str]:
    """Routes *app* serves that *doc* does not describe, and the other way round."""
    served = {
        (route.method, info.get("formatter") or info.get("path", ""))
        for route in app.router.routes()
        if route.method != "HEAD"
        for info in [route.resource.get_info() if route.resource else {}]
    }
    served = {(m, p) for m, p in served if not p.startswith(_PAGES)}
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    return sorted(f"{m} {p} is served, not described" for m, p in served - described) + sorted(
        f"{m} {p} is described, not served" for m, p in described - served
    )
