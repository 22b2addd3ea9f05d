"""The broker and the three services, started once as real processes and shared."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from services.runtime.broker import EmbeddedBroker, free_port
from tests.e2e.chromium import open_browser
from tests.e2e.cutting_proxy import CuttingProxy
from tests.harness import Pipeline, TopicReader, pipeline_iter


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture(scope="session")
def pipeline(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """ingest, gate and publish, running against the session's broker."""
    workdir = tmp_path_factory.mktemp("pipeline")
    for running in pipeline_iter(workdir, broker.bootstrap):
        for name in ("ingest", "gate", "publish"):
            running.add(name).start()
        yield running


@pytest.fixture(scope="session")
def topics(broker: EmbeddedBroker) -> TopicReader:
    return TopicReader(broker.bootstrap)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of the test's own, for tests that stop or restart things."""
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as running:
        yield running


@pytest.fixture
def own_pipeline(own_broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Pipeline]:
    yield from pipeline_iter(tmp_path, own_broker.bootstrap)


@pytest.fixture
def separate_pipeline(own_broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Pipeline]:
    """Services of the test's own started as the chart starts them: ``serve`` against a
    broker they did not start, without the embedded flag."""
    yield from pipeline_iter(tmp_path, own_broker.bootstrap, profile="separate")


@pytest.fixture
def cut_broker(tmp_path: Path) -> Iterator[tuple[EmbeddedBroker, CuttingProxy]]:
    """A broker of the test's own behind a proxy that can cut every connection; the
    broker advertises the proxy, so services reach it only through the proxy."""
    proxy_port = free_port()
    with EmbeddedBroker(log_path=tmp_path / "broker.log", advertised_port=proxy_port) as broker:
        proxy = CuttingProxy(broker.port, proxy_port).start()
        try:
            yield broker, proxy
        finally:
            proxy.stop()


@pytest.fixture
def cut_pipeline(
    cut_broker: tuple[EmbeddedBroker, CuttingProxy], tmp_path: Path
) -> Iterator[Pipeline]:
    """Services started as the chart starts them, reaching the broker through the proxy."""
    _, proxy = cut_broker
    yield from pipeline_iter(tmp_path, f"127.0.0.1:{proxy.port}", profile="separate")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for a module's tests."""
    yield from open_browser()
