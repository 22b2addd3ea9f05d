"""Certificates made by the tests with openssl: a CA, another CA, a server for 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl") or "/usr/bin/openssl"
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> Path:
    """``{name}.pem`` and ``{name}.key`` in *directory*; returns the certificate."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.pem"


def make_server_cert(directory: Path, ca: str) -> tuple[Path, Path]:
    """``server.pem`` and ``server.key`` for 127.0.0.1 and localhost, signed by *ca*."""
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.pem",
        cwd=directory,
    )  # fmt: skip
    return directory / "server.pem", directory / "server.key"
