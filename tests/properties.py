"""How many examples a property test draws: as written in CI; in the inner loop
(``make unit``) a quarter, by ``GATEKEEPER_PROPERTY_SCALE``."""

from __future__ import annotations

import os

from hypothesis import settings

__all__ = ["SCALE", "examples"]

SCALE = float(os.environ.get("GATEKEEPER_PROPERTY_SCALE", "1"))


def examples(n: int) -> int:
    """*n* examples, scaled; never fewer than 10."""
    return max(10, round(n * SCALE))


# Properties that name no number draw hypothesis's default (100), scaled the same.
settings.register_profile("gatekeeper", max_examples=examples(100))
settings.load_profile("gatekeeper")
