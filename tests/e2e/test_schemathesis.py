"""Schemathesis, a tester nobody here wrote, against each running service's own
/openapi.json: no 5xx, every status, content type and body as described, and (on the
operator APIs) nothing answered without a key."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.runtime.broker import EmbeddedBroker
from tests.conftest import OPERATOR_TOKEN
from tests.harness import Pipeline, pipeline_iter

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)


@pytest.fixture(scope="module")
def fresh(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Services of this module's own on the session's broker: the shared ones have seen
    other tests' deliberate failed logins, and ten from one address are throttled (429),
    which ignored_auth would take for a wrong answer."""
    for running in pipeline_iter(tmp_path_factory.mktemp("schemathesis"), broker.bootstrap):
        for name in ("ingest", "gate", "publish"):
            running.add(name).start()
        yield running


@pytest.mark.parametrize("name", ["ingest", "gate", "publish"])
def test_each_service_answers_as_its_description_says(
    fresh: Pipeline, name: str, tmp_path: Path
) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli, "schemathesis is missing: the test extra installs it"
    url = fresh.services[name].url
    ran = subprocess.run(
        [
            cli,
            "run",
            f"{url}/openapi.json",
            "--url",
            url,
            "--checks",
            CHECKS + (",ignored_auth" if name != "ingest" else ""),
            "--max-examples",
            "25",
            "--seed",
            "2026",
            "--header",
            f"Authorization: Bearer {OPERATOR_TOKEN}",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    assert " passed" in ran.stdout
