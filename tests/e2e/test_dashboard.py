"""A real Prometheus scrapes the running pipeline; every dashboard query returns data."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml
from kafka import KafkaProducer

from services.runtime.broker import free_port
from tests.conftest import content_event, internal_notice
from tests.harness import Pipeline, TopicReader, post_event, unique_item, wait_until

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "helm" / "gatekeeper" / "files"


@pytest.fixture(scope="module")
def prometheus(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: scripts/test installs Debian's prometheus package"
    workdir = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(FILES / "alerts.yaml")],
        "scrape_configs": [
            {
                "job_name": f"gatekeeper-{name}",
                # As the chart's ServiceMonitor labels its targets.
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{service.port}"],
                        "labels": {"app_kubernetes_io_part_of": "gatekeeper"},
                    }
                ],
            }
            for name, service in pipeline.services.items()
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with open(workdir / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _get(f"{url}/-/ready") == 200, 60, "prometheus ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", f"{expr}: {answer}"
    return cast(list[dict[str, Any]], answer["data"]["result"])


def test_every_dashboard_panel_has_data_from_the_running_pipeline(
    pipeline: Pipeline, topics: TopicReader, prometheus: str
) -> None:
    ingest = pipeline.services["ingest"].url
    # Traffic of every kind the dashboard shows: a hold, a release, a dead letter.
    held = unique_item("dash-held")
    released = unique_item("dash-released")
    assert post_event(ingest, content_event(item_id=held)).status_code == 202
    assert post_event(ingest, internal_notice(item_id=released)).status_code == 202
    topics.wait_for("intranet.notices", f"lerum:{released}", lambda v: len(v) == 1)
    assert post_event(ingest, content_event(item_id=released)).status_code == 202
    topics.wait_for("external.web", f"lerum:{released}", lambda v: len(v) == 1)
    producer = KafkaProducer(bootstrap_servers=pipeline.bootstrap, batch_size=0)
    producer.send("cms.events", key=b"lerum:dash-bad", value=b"not json").get(10)
    producer.close()

    wait_until(
        lambda: len([r for r in _query(prometheus, 'up{job=~"gatekeeper-.*"} == 1')]) == 3,
        30,
        "three services scraped",
    )
    dashboard = json.loads((FILES / "dashboard.json").read_text())
    assert all(p.get("description") for p in dashboard["panels"]), "every panel says what it shows"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"namespace", "tenant"} <= variables
    # Grafana's "All" of a template variable is ".*".
    targets = [
        (p["title"], t["expr"].replace("$namespace", ".*").replace("$tenant", ".*"))
        for p in dashboard["panels"]
        for t in p["targets"]
    ]

    def empty() -> list[str]:
        return [f"{title}: {expr}" for title, expr in targets if not _query(prometheus, expr)]

    try:
        wait_until(lambda: not empty(), 60, "every panel query to return data")
    except AssertionError:
        raise AssertionError(f"panels without data: {empty()}") from None
    figures = _query(prometheus, 'gatekeeper_followup_versions{tenant="lerum", figure="held"}')
    assert any(float(r["value"][1]) >= 1 for r in figures), "this month's follow-up, per unit"
    held_rows = _query(prometheus, 'sum by (tenant) (gatekeeper_gate_held_items{tenant="lerum"})')
    assert float(held_rows[0]["value"][1]) >= 1
    for standard in ("process_resident_memory_bytes", "python_gc_collections_total"):
        assert len(_query(prometheus, f"sum by (job) ({standard})")) == 3, standard
    build = _query(prometheus, "gatekeeper_build_info")
    assert {r["metric"]["service"] for r in build} == {"ingest", "gate", "publish"}
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} >= {
        "GatekeeperHoldPastEscalation",
        "GatekeeperDeadLettersGrowing",
        "GatekeeperConsumerLagGrowing",
        "GatekeeperServiceDown",
    }
