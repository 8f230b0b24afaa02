"""Shared test settings and fixtures: one Hypothesis profile, the simulator, an inbox."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.sim import GladiaSimulator

# Property tests search the input space; the examples per property are fixed here so the
# closing note can state them and CI time stays bounded. No deadline: the machine is shared.
settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("WATCHERD_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("ci")


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[GladiaSimulator]:
    """A running simulator; the test module's ``KEY`` and ``SIM_OPTIONS`` configure it."""
    options: dict[str, Any] = dict(getattr(request.module, "SIM_OPTIONS", {}))
    options.setdefault("api_key", getattr(request.module, "KEY", "test-key"))
    with GladiaSimulator(**options) as simulator:
        yield simulator


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    """An empty folder to watch."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder
