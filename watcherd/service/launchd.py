"""The launchd agent plist for macOS."""

from __future__ import annotations

import os
import plistlib
from collections.abc import Sequence
from pathlib import Path

LAUNCHD_LABEL = "io.watcherd.agent"
# launchd relaunches a crashed agent at most this often.
LAUNCHD_THROTTLE_SECONDS = 10
# Seconds between SIGTERM and SIGKILL, the same drain budget as the systemd unit.
LAUNCHD_EXIT_TIMEOUT = 90


def launch_agent_path(label: str = LAUNCHD_LABEL) -> Path:
    """Where the per-user LaunchAgent plist goes: ``~/Library/LaunchAgents/LABEL.plist``."""
    return Path.home() / "Library" / "LaunchAgents" / f"{label}.plist"


def launchd_log_dir() -> Path:
    """Where the agent's stdout/stderr go: ``~/Library/Logs/watcherd``."""
    return Path.home() / "Library" / "Logs" / "watcherd"


def render_launchd_plist(
    command: Sequence[str], *, log_dir: Path, label: str = LAUNCHD_LABEL
) -> bytes:
    """The LaunchAgent plist (XML) that runs ``command`` at login and again after a crash."""
    if not command or not os.path.isabs(command[0]):
        raise ValueError("the agent command must start with an absolute path")
    if not log_dir.is_absolute():
        raise ValueError(f"log folder {log_dir} is not absolute (launchd needs absolute paths)")
    agent = {
        "Label": label,
        "ProgramArguments": list(command),
        "RunAtLoad": True,
        # Relaunch only after a crash or a failing exit; a clean stop stays stopped.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": LAUNCHD_THROTTLE_SECONDS,
        "ExitTimeOut": LAUNCHD_EXIT_TIMEOUT,
        "ProcessType": "Background",
        "StandardOutPath": str(log_dir / "watcherd.log"),
        "StandardErrorPath": str(log_dir / "watcherd.err.log"),
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1"},
    }
    return plistlib.dumps(agent, fmt=plistlib.FMT_XML, sort_keys=False)


