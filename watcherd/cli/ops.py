"""The operations commands: ``watcherd doctor``, ``watcherd service install/uninstall/status``
and ``watcherd logs``.

They are registered on the main group in :mod:`watcherd.cli`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Literal

import click

from watcherd.cli._common import config_option, handles_errors, resolved_dirs, watch_option
from watcherd.config import (
    API_KEY_ENV_VAR,
    Config,
    default_journal_path,
    load_config,
    secret_values,
    with_extra_watches,
)
from watcherd.doctor import diagnose, exit_code, format_report
from watcherd.errors import ConfigError
from watcherd.log import configure_logging
from watcherd.outputs import atomic_write
from watcherd.service import (
    CREDENTIALS_DIR,
    DEFAULT_KEY_FILE,
    LAUNCHD_LABEL,
    SYSTEM_UNIT_DIR,
    UNIT_NAME,
    launch_agent_path,
    launchd_log_dir,
    render_launchd_plist,
    render_systemd_unit,
    user_unit_dir,
)

Target = Literal["systemd", "launchd"]
SYSTEM_USER = "watcherd"


@click.command()
@config_option
@watch_option
@click.option("--notify", "notify_test", is_flag=True,
              help="Send a test notification to each [notify] route.")
@handles_errors
def doctor(config_path: Path | None, watch_dirs: tuple[Path, ...], notify_test: bool) -> None:
    """Check what `watcherd run` with the same --config/--watch would meet.

    The config, API key, Gladia API, watch roots, inotify limits, journal, search index,
    notifications and local engine.
    """
    extra = resolved_dirs(watch_dirs)
    config = load_config(config_path)
    if extra:
        config = with_extra_watches(config, extra)
    # Only problems in the libraries' own logs are worth showing next to the report.
    configure_logging(fmt="console", level="warning", stream=sys.stderr,
                      secrets=secret_values(config))
    findings = diagnose(config, created=frozenset(extra), notify_test=notify_test)
    click.echo(format_report(findings))
    sys.exit(exit_code(findings))


@click.group()
def service() -> None:
    """Run watcherd as a systemd service (Linux) or a launchd agent (macOS)."""


def _default_target() -> Target:
    return "launchd" if sys.platform == "darwin" else "systemd"


def _service_config(config_path: Path | None, watch_dirs: tuple[Path, ...], *,
                    dry_run: bool) -> Config:
    """The config the service will run with; written from --watch when there is none."""
    from dataclasses import replace

    from watcherd.cli.configcmd import default_config_target, write_initial_config

    extra = resolved_dirs(watch_dirs)
    config = load_config(config_path, need_key=False)
    if config.source is None and extra:
        # The quick start has no config file; the service needs one, made from --watch.
        target = default_config_target()
        if dry_run:
            click.echo(f"# would write {target} watching "
                       + ", ".join(str(d) for d in extra))
            return replace(with_extra_watches(config, extra), source=target)
        write_initial_config(target, extra)
        click.echo(f"wrote {target} (edit it to change settings)", err=True)
        return load_config(target, need_key=False)
    if config.source is None:
        raise ConfigError(
            "no config file found: the service needs one; pass --watch DIR to write it, or "
            "run `watcherd config init --watch DIR` first, or pass --config PATH"
        )
    if extra:
        raise click.UsageError(
            f"--watch writes a new config, but {config.source} exists: add the folder as a "
            "[[watch]] table there"
        )
    if not config.watches:
        raise ConfigError(
            f"{config.source}: nothing to watch: add a [[watch]] table with a path before "
            "installing the service"
        )
    return config


def _writable_paths(config: Config) -> list[Path]:
    paths = [watch.path for watch in config.watches]
    # A journal left at the default goes to StateDirectory=, which the unit makes writable.
    if config.journal_path != default_journal_path():
        folder = config.journal_path.parent
        if not any(folder == p or p in folder.parents for p in paths):
            paths.append(folder)
    return paths


def _key_file(config: Config, key_file: Path | None) -> Path | None:
    if key_file is not None:
        return key_file.expanduser().resolve()
    if config.gladia.key_file_in(CREDENTIALS_DIR):
        return DEFAULT_KEY_FILE
    return None


def _write(path: Path, data: bytes) -> bool:
    """Write the file atomically; True if it replaced a different one."""
    try:
        replaced = path.exists() and path.read_bytes() != data
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
    except PermissionError as exc:
        raise click.ClickException(
            f"cannot write {path}: {exc.strerror}; run the command with sudo, or pass "
            "--dry-run to see the file"
        ) from exc
    return replaced


def _systemd_next_steps(user: bool, config: Config, run_as: str | None,
                        credential: Path | None) -> list[str]:
    if user:
        steps = [
            "systemctl --user daemon-reload && systemctl --user enable --now watcherd",
            "# keep it running while you are logged out: loginctl enable-linger $USER",
            "# logs: journalctl --user -u watcherd -f",
        ]
    else:
        steps = []
        if run_as == SYSTEM_USER:
            steps.append(
                f"sudo useradd --system --home-dir /var/lib/{SYSTEM_USER} --shell "
                f"/usr/sbin/nologin {SYSTEM_USER}  # once; then let it write the watched folders"
            )
        if credential is not None:
            steps.append(f"# put the API key alone in {credential} (chmod 600, owned by root)")
        steps += [
            "sudo systemctl daemon-reload && sudo systemctl enable --now watcherd",
            "# logs: journalctl -u watcherd -f",
        ]
        if config.journal_path == default_journal_path():
            steps.append(
                "# the service keeps its journal in /var/lib/watcherd/journal.db; set [journal] "
                "path to that in the config so `watcherd status` finds it"
            )
    return steps


def _launchd_next_steps(path: Path) -> list[str]:
    return [
        f"launchctl bootout gui/$(id -u)/{LAUNCHD_LABEL} 2>/dev/null; "
        f"launchctl bootstrap gui/$(id -u) {path}",
        f"# restart it: launchctl kickstart -k gui/$(id -u)/{LAUNCHD_LABEL}",
        f"# logs: {launchd_log_dir()}",
    ]


@service.command("install")
@click.option("--user/--system", "user", default=True,
              help="A per-user service (default) or a system-wide one (needs root).")
@click.option("--dry-run", is_flag=True, help="Print the file instead of writing it.")
@click.option("--run-as", default=None, metavar="USER",
              help=f"System service only: the account it runs as (default: {SYSTEM_USER}).")
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="System service only: a file holding the API key, passed to the service "
              f"as the systemd credential (default {DEFAULT_KEY_FILE} when api_key_file "
              f"points into {CREDENTIALS_DIR}).")
@click.option("--target", type=click.Choice(["systemd", "launchd"]), default=None,
              hidden=True, help="Render for this service manager instead of this platform's.")
@config_option
@watch_option
@handles_errors
def install(user: bool, dry_run: bool, run_as: str | None, key_file: Path | None,
            target: Target | None, config_path: Path | None,
            watch_dirs: tuple[Path, ...]) -> None:
    """Write the systemd unit (Linux) or launchd plist (macOS) for this installation.

    Without a config file, --watch DIR writes one (as `watcherd config init` does).
    """
    target = target or _default_target()
    config = _service_config(config_path, watch_dirs, dry_run=dry_run)
    assert config.source is not None
    command = [sys.executable, "-m", "watcherd", "run", "--config",
               str(config.source.expanduser().resolve())]
    if target == "launchd":
        if not user:
            raise click.UsageError("on macOS watcherd installs a per-user LaunchAgent; "
                                   "drop --system")
        path = launch_agent_path()
        data = render_launchd_plist(command, log_dir=launchd_log_dir())
        steps = _launchd_next_steps(path)
    else:
        if user and (run_as or key_file):
            raise click.UsageError("--run-as and --key-file apply to --system only")
        run_as = None if user else (run_as or SYSTEM_USER)
        credential = None if user else _key_file(config, key_file)
        path = (user_unit_dir() if user else SYSTEM_UNIT_DIR) / UNIT_NAME
        data = render_systemd_unit(
            command, user=user, writable_paths=[] if user else _writable_paths(config),
            run_as=run_as, credential=credential,
        ).encode("utf-8")
        steps = _systemd_next_steps(user, config, run_as, credential)
    if config.gladia.key_from_environment:
        click.echo(f"note: your API key comes from ${API_KEY_ENV_VAR}, which the service will "
                   "not see: set [gladia] api_key_file in the config instead", err=True)
    if dry_run:
        click.echo(f"# would write {path}")
        click.echo(data.decode("utf-8"), nl=False)
        # What to run after writing it. As '#' comments, so the output saved as the unit is
        # still a valid unit; a plist has no such comments, so for launchd on stderr.
        to_stderr = target == "launchd"
        click.echo("# then run:", err=to_stderr)
        for step in steps:
            click.echo(f"#   {step.removeprefix('# ')}", err=to_stderr)
        return
    if target == "launchd":
        launchd_log_dir().mkdir(parents=True, exist_ok=True)
    replaced = _write(path, data)
    click.echo(f"{'updated' if replaced else 'wrote'} {path}")
    click.echo("next:")
    for step in steps:
        click.echo(f"  {step}")


# -- the installed service: uninstall, status, logs --------------------------------------------

#: Where a system unit keeps its journal (its StateDirectory=).
SYSTEM_JOURNAL = Path("/var/lib/watcherd/journal.db")


def _systemctl(user: bool, *args: str) -> subprocess.CompletedProcess[str] | None:
    """Run systemctl (``--user`` for a user unit); None when there is no systemctl here."""
    if shutil.which("systemctl") is None:
        return None
    command = ["systemctl", *(["--user"] if user else []), *args]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _unit_path(user: bool) -> Path:
    return (user_unit_dir() if user else SYSTEM_UNIT_DIR) / UNIT_NAME


@service.command("uninstall")
@click.option("--user/--system", "user", default=True,
              help="The per-user service (default) or the system-wide one (needs root).")
@click.option("--dry-run", is_flag=True, help="Say what would be done, change nothing.")
@click.option("--target", type=click.Choice(["systemd", "launchd"]), default=None,
              hidden=True, help="Act for this service manager instead of this platform's.")
@handles_errors
def uninstall(user: bool, dry_run: bool, target: Target | None) -> None:
    """Stop the service, disable it and remove its unit (or plist); journal and outputs stay."""
    target = target or _default_target()
    path = launch_agent_path() if target == "launchd" else _unit_path(user)
    if not path.exists():
        click.echo(f"nothing to uninstall: {path} does not exist")
        return
    if dry_run:
        click.echo(f"would stop and disable the service, then remove {path}")
        return
    if target == "launchd":
        if shutil.which("launchctl") is not None:
            subprocess.run(["launchctl", "bootout", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"],
                           capture_output=True, check=False, timeout=30)
    else:
        stopped = _systemctl(user, "disable", "--now", UNIT_NAME)
        if stopped is not None and stopped.returncode != 0:
            click.echo(f"note: systemctl could not stop it ({stopped.stderr.strip()}); "
                       "removing the unit anyway", err=True)
    try:
        path.unlink()
    except PermissionError as exc:
        raise click.ClickException(f"cannot remove {path}: {exc.strerror}; run with sudo") from exc
    if target == "systemd":
        _systemctl(user, "daemon-reload")
    click.echo(f"removed {path}; the journal and every transcript are left as they are")


@service.command("status")
@click.option("--user/--system", "user", default=True,
              help="The per-user service (default) or the system-wide one.")
@click.option("--target", type=click.Choice(["systemd", "launchd"]), default=None,
              hidden=True, help="Ask this service manager instead of this platform's.")
@handles_errors
def service_status(user: bool, target: Target | None) -> None:
    """Whether the service is installed and running; exit 0 if running, 1 if not."""
    target = target or _default_target()
    path = launch_agent_path() if target == "launchd" else _unit_path(user)
    if not path.exists():
        click.echo(f"not installed ({path} does not exist); `watcherd service install` "
                   "writes it")
        sys.exit(1)
    click.echo(f"installed: {path}")
    if target == "launchd":
        if shutil.which("launchctl") is None:
            click.echo("state: unknown (no launchctl here)")
            sys.exit(1)
        answer = subprocess.run(["launchctl", "print", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"],
                                capture_output=True, text=True, check=False, timeout=30)
        running = answer.returncode == 0 and "state = running" in answer.stdout
        click.echo(f"state: {'running' if running else 'not running'}")
        sys.exit(0 if running else 1)
    shown = _systemctl(user, "show", UNIT_NAME, "--property=ActiveState,SubState,MainPID")
    if shown is None or shown.returncode != 0:
        click.echo("state: unknown (systemctl is not available for this session)")
        sys.exit(1)
    values = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    state = values.get("ActiveState", "unknown")
    click.echo(f"state: {state} ({values.get('SubState', '?')}), "
               f"pid {values.get('MainPID', '0')}")
    sys.exit(0 if state == "active" else 1)


def _mentions(line: str, source: str) -> bool:
    """Whether a log line (JSON or console) is about ``source``."""
    try:
        record = json.loads(line)
    except ValueError:
        return source in line
    return isinstance(record, dict) and source in (str(record.get("source", "")),
                                                    str(record.get("path", "")))


def _no_service(path: Path, *, user: bool) -> str:
    """Why ``watcherd logs`` has nothing to show without a service, and where logs are."""
    other = _unit_path(not user)
    elsewhere = ""
    if _default_target() == "systemd" and other.exists():
        flag = "--system" if user else "--user"
        elsewhere = f" (there is a {flag[2:]} service: `watcherd logs {flag}`)"
    return (f"no watcherd service is installed ({path} does not exist){elsewhere}, so there "
            "is no service log to show. A daemon started with `watcherd run` logs to the "
            "terminal it runs in (its stderr); to run it in the background with its logs kept, "
            "install the service: `watcherd service install --watch DIR` (or --config PATH), "
            "start it as that command says, then `watcherd logs`")


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they come.")
@click.option("--source", "source", type=click.Path(path_type=Path), default=None,
              help="Only the lines about this file.")
@click.option("--user/--system", "user", default=True,
              help="The per-user service (default) or the system-wide one.")
@click.option("--lines", "-n", "count", type=int, default=200, show_default=True,
              help="How many past lines to show.")
@click.option("--target", type=click.Choice(["systemd", "launchd"]), default=None,
              hidden=True, help="Read this service manager's logs instead of this platform's.")
@handles_errors
def logs(follow: bool, source: Path | None, user: bool, count: int,
         target: Target | None) -> None:
    """Show the service's logs: journalctl for the systemd unit, the log file for launchd."""
    target = target or _default_target()
    wanted = str(source.expanduser().resolve()) if source is not None else None
    if target == "launchd":
        log_file = launchd_log_dir() / "watcherd.log"
        if not log_file.exists():
            if not launch_agent_path().exists():
                raise click.ClickException(f"no log yet at {log_file}: "
                                           + _no_service(launch_agent_path(), user=True))
            raise click.ClickException(f"no log yet at {log_file}: the agent is installed "
                                       "but has not written anything; `watcherd service "
                                       "status` says whether it runs")
        command = ["tail", "-n", str(count), *(["-F"] if follow else []), str(log_file)]
    else:
        if not _unit_path(user).exists():
            raise click.ClickException(_no_service(_unit_path(user), user=user))
        if shutil.which("journalctl") is None:
            raise click.ClickException("journalctl is not available here; run `watcherd run` "
                                       "in a terminal to see its log")
        command = ["journalctl", *(["--user"] if user else []), "-u", UNIT_NAME, "-o", "cat",
                   "-n", str(count), *(["-f"] if follow else [])]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, errors="replace") as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                if wanted is None or _mentions(line, wanted):
                    click.echo(line, nl=False)
        except KeyboardInterrupt:
            proc.terminate()
            sys.exit(0)
    # journalctl's own failure (no access to the journal...) is this command's failure too.
    sys.exit(1 if proc.returncode else 0)
