"""The alert rules load and fire exactly when they should (promtool's own rule tests)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "helm" / "gatekeeper" / "files" / "alerts.yaml"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: scripts/test installs Debian's prometheus package"
    return path


def test_rules_are_valid(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 rules found" in result.stdout


def test_rules_fire_when_they_should(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yaml"],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
