"""schemas/asyncapi.yaml: valid AsyncAPI 3 by AsyncAPI's own JSON Schema and parser (npm
@asyncapi/specs and @asyncapi/parser, installed by scripts/test), and true to the topics
the code uses and how it creates them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from services.runtime.config import DEFAULT_CONFIG_PATH, load_deployment
from services.runtime.settings import Settings
from services.runtime.topics import TopicRetention, topic_configs, topics_for
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


def _parse(path: Path) -> tuple[int, list[dict[str, Any]]]:
    node = shutil.which("node")
    assert node, "node is missing: scripts/test installs it"
    script = Path(__file__).parent / "schemas" / "asyncapi.mjs"
    done = subprocess.run(
        [node, str(script), str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    return done.returncode, json.loads(done.stdout)


def test_asyncapi_s_own_parser_finds_no_error(tmp_path: Path) -> None:
    code, found = _parse(ROOT / "schemas" / "asyncapi.yaml")
    assert [d for d in found if d["severity"] == 0] == []
    assert code == 0
    broken = _document()
    broken["operations"]["send_gate_status"]["channel"] = {"$ref": "#/channels/nowhere"}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    code, found = _parse(tmp_path / "broken.yaml")
    assert code == 1, "the parser refuses a reference to no channel"
    assert [d for d in found if d["severity"] == 0]


def test_each_topic_s_binding_is_how_gatekeeper_creates_it() -> None:
    for channel in _document()["channels"].values():
        binding = channel["bindings"]["kafka"]
        configs = topic_configs(channel["address"], TopicRetention())
        assert binding["topic"] == channel["address"]
        assert binding["topicConfiguration"] == {
            "cleanup.policy": [configs["cleanup.policy"]],
            **({"retention.ms": int(configs["retention.ms"])} if "retention.ms" in configs else {}),
            "max.message.bytes": int(configs["max.message.bytes"]),
        }
        assert binding["partitions"] == Settings.model_fields["partitions"].default
    archive = _document()["channels"]["publish_archive"]["bindings"]["kafka"]
    assert archive["topicConfiguration"]["retention.ms"] == -1, "the archive is kept for ever"
