"""`watcherd service uninstall`, `service status` and `watcherd logs`, run as real commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.daemon_harness import watcherd


def _env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def test_uninstall_removes_the_user_unit_and_nothing_else(tmp_path: Path) -> None:
    """The unit file goes; a second uninstall says there is nothing to do."""
    env = _env(tmp_path)
    unit = Path(env["XDG_CONFIG_HOME"]) / "systemd" / "user" / "watcherd.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    dry = watcherd("service", "uninstall", "--user", "--dry-run", "--target", "systemd", env=env)
    assert dry.returncode == 0 and "would stop" in dry.stdout and unit.exists()
    done = watcherd("service", "uninstall", "--user", "--target", "systemd", env=env)
    assert done.returncode == 0, done.stderr
    assert not unit.exists() and "removed" in done.stdout
    again = watcherd("service", "uninstall", "--user", "--target", "systemd", env=env)
    assert again.returncode == 0 and "nothing to uninstall" in again.stdout


def test_service_status_says_not_installed(tmp_path: Path) -> None:
    """No unit: exit 1 with how to install one."""
    result = watcherd("service", "status", "--user", "--target", "systemd", env=_env(tmp_path))
    assert result.returncode == 1
    assert "not installed" in result.stdout and "service install" in result.stdout


def test_service_status_installed_without_a_service_manager(tmp_path: Path) -> None:
    """A unit on disk but no systemd session to ask: installed, state unknown, exit 1."""
    env = _env(tmp_path)
    unit = Path(env["XDG_CONFIG_HOME"]) / "systemd" / "user" / "watcherd.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    result = watcherd("service", "status", "--user", "--target", "systemd", env=env)
    assert "installed:" in result.stdout
    assert result.returncode in (0, 1)


def test_logs_filter_by_source(tmp_path: Path) -> None:
    """`logs --source` keeps only the lines about that file (launchd's log file here)."""
    env = _env(tmp_path)
    log_dir = Path(env["HOME"]) / "Library" / "Logs" / "watcherd"
    log_dir.mkdir(parents=True)
    wanted = tmp_path / "inbox" / "a.wav"
    lines = [
        {"event": "source_ready", "source": str(wanted)},
        {"event": "source_ready", "source": str(tmp_path / "inbox" / "b.wav")},
        {"event": "transcript_written", "source": str(wanted)},
    ]
    (log_dir / "watcherd.log").write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = watcherd("logs", "--target", "launchd", "--source", str(wanted), env=env)
    assert result.returncode == 0, result.stderr
    shown = [json.loads(line) for line in result.stdout.splitlines()]
    assert [x["event"] for x in shown] == ["source_ready", "transcript_written"]
    assert all(x["source"] == str(wanted) for x in shown)


def test_logs_without_a_log_says_why(tmp_path: Path) -> None:
    """No launchd log yet: a clear message, exit 1."""
    result = watcherd("logs", "--target", "launchd", env=_env(tmp_path))
    assert result.returncode == 1 and "no log yet" in result.stderr


def test_status_reads_nothing_from_a_missing_user_journal(tmp_path: Path) -> None:
    """Without any journal, status says nothing has been seen (exit 0)."""
    env = _env(tmp_path) | {"XDG_STATE_HOME": str(tmp_path / "state")}
    result = watcherd("status", env=env)
    assert result.returncode == 0
    assert "nothing has been seen" in result.stdout or "no files" in result.stdout
    assert os.path.exists(env["HOME"])


def test_logs_without_a_service_says_where_the_logs_are(tmp_path: Path) -> None:
    """No unit installed: exit 1, saying `run` logs to its terminal and how to install one."""
    env = _env(tmp_path)
    result = watcherd("logs", "--target", "systemd", env=env)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "no watcherd service is installed" in message
    assert "`watcherd run` logs to the terminal it runs in" in message
    assert "watcherd service install" in message
    assert result.stdout == ""


def test_logs_of_launchd_without_an_agent_says_the_same(tmp_path: Path) -> None:
    """On macOS too: no agent, no log: where the logs are and how to install it."""
    result = watcherd("logs", "--target", "launchd", env=_env(tmp_path))
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "no watcherd service is installed" in message and "service install" in message


def test_service_install_dry_run_prints_the_commands_to_run(tmp_path: Path) -> None:
    """--dry-run shows the unit and the systemctl commands a real install would print."""
    env = _env(tmp_path)
    inbox = tmp_path / "inbox"
    result = watcherd("service", "install", "--dry-run", "--target", "systemd", "--watch",
                      str(inbox), env=env)
    assert result.returncode == 0, result.stderr
    assert "ExecStart=" in result.stdout
    assert ("#   systemctl --user daemon-reload && systemctl --user enable --now watcherd"
            in result.stdout)
    assert "#   logs: journalctl --user -u watcherd -f" in result.stdout
    unit_dir = Path(env["XDG_CONFIG_HOME"]) / "systemd" / "user"
    assert not unit_dir.exists() and not inbox.exists()
