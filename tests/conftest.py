"""Shared test settings and fixtures: one Hypothesis profile, the simulator, an inbox, status
pages."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, settings

from tests.daemon_harness import DaemonProcess
from tests.sim import GladiaSimulator
from tests.unit.web.test_harness import RunningWeb, WebFiles, populate_web_journal
from watcherd.config import HttpConfig
from watcherd.journal import Journal

# Property tests search the input space; the examples per property are fixed here so the
# closing note can state them and CI time stays bounded. No deadline: the machine is shared.
settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("WATCHERD_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
    # In CI the examples are the same on every run, so a green main stays green; on a
    # developer's machine each run searches anew.
    derandomize=os.environ.get("CI", "").lower() == "true",
)
settings.load_profile("ci")


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[GladiaSimulator]:
    """A running simulator; the test module's ``KEY`` and ``SIM_OPTIONS`` configure it."""
    options: dict[str, Any] = dict(getattr(request.module, "SIM_OPTIONS", {}))
    options.setdefault("api_key", getattr(request.module, "KEY", "test-key"))
    with GladiaSimulator(**options) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def structlog_restored() -> Iterator[None]:
    """Put structlog's configuration back after each test: a command run in-process
    configures logging at info, and structlog.testing.capture_logs cannot see a debug line
    through the level filter it leaves behind."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Daemons started by a test; any still running afterwards are killed."""
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.stop()


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    """An empty folder to watch."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


@pytest.fixture
def web_page(tmp_path: Path) -> Iterator[Callable[..., RunningWeb]]:
    """Start status pages over a populated journal in tmp_path; all stopped afterwards."""
    started: list[RunningWeb] = []

    def start(http: HttpConfig | None = None, *, populate: bool = True,
              setup: Callable[[Journal], Any] | None = None) -> RunningWeb:
        folder = tmp_path / f"web{len(started)}"
        folder.mkdir()
        if setup is None and populate:
            def setup(journal: Journal) -> WebFiles:
                return populate_web_journal(journal, folder / "inbox")
        running = RunningWeb(folder / "journal.db", http or HttpConfig(), setup=setup)
        started.append(running)
        return running.start()

    yield start
    for running in started:
        running.stop()
