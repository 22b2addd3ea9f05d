"""schemas/asyncapi.yaml: valid AsyncAPI 3 by AsyncAPI's own JSON Schema (npm
@asyncapi/specs, installed by scripts/test), and true to the topics the code uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from services.runtime.config import DEFAULT_CONFIG_PATH, load_deployment
from services.runtime.topics import topics_for
from tests.conftest import SECRETS_ENV

ROOT = Path(__file__).resolve().parents[2]
SPEC = Path(__file__).parent / "schemas/node_modules/@asyncapi/specs/schemas/3.0.0-without-$id.json"


def _validator() -> jsonschema.Draft7Validator:
    assert SPEC.is_file(), "AsyncAPI's schemas are missing: scripts/test installs them with npm"
    return jsonschema.Draft7Validator(json.loads(SPEC.read_text()))


def _document() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((ROOT / "schemas" / "asyncapi.yaml").read_text())
    return found


def test_the_topics_document_is_valid_asyncapi_3() -> None:
    validator = _validator()
    doc = _document()
    assert [e.message for e in validator.iter_errors(doc)] == []
    broken = json.loads(json.dumps(doc))
    broken["channels"]["gate_commands"]["address"] = 42
    assert list(validator.iter_errors(broken)), "the validator refuses what AsyncAPI would"


def test_every_topic_the_pipeline_uses_is_described_with_its_key() -> None:
    doc = _document()
    described = {c["address"] for c in doc["channels"].values()}
    used = set(topics_for(load_deployment(DEFAULT_CONFIG_PATH, SECRETS_ENV)))
    assert described == used
    for message in doc["components"]["messages"].values():
        assert "{tenant}:{item_id}" in message["bindings"]["kafka"]["key"]["description"]
    intranet = doc["channels"]["intranet_notices"]["description"]
    assert "fetch_max_wait_ms" in intranet, "the intranet is told how to read it quickly"
