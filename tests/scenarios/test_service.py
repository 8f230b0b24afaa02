"""Tests for watcherd.service (sd_notify, units, plist, metrics, hooks) and `service install`."""

from __future__ import annotations

import asyncio
import json
import os
import plistlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from tests.daemon_harness import wait_until, write_config
from tests.paths import REPO
from watcherd import service
from watcherd.cli.ops import service as service_group
from watcherd.journal import FileStat, Journal
from watcherd.service import (
    HOOK_OUTPUT_LIMIT,
    LAUNCHD_LABEL,
    Notifier,
    hook_env,
    packaged_units,
    render_launchd_plist,
    render_metrics,
    render_systemd_unit,
    run_hook,
    status_text,
    write_textfile,
)

RECV_TIMEOUT = 5.0


# -- helpers ---------------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, list[tuple[str, str]]]:
    """Parse a unit file into section -> [(key, value)], keeping repeated keys in order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in text.splitlines():
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key, value))
    return sections


def values(text: str, section: str, key: str) -> list[str]:
    """Every value of ``key`` in ``section`` of a unit file."""
    return [v for k, v in unit_settings(text).get(section, []) if k == key]


def recv(sock: socket.socket) -> bytes:
    """One datagram from the fake notify socket (fails after a deadline, never hangs)."""
    return sock.recv(4096)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound in tmp_path, standing in for systemd's notify socket."""
    path = tmp_path / "notify.sock"
    assert len(str(path)) < 100, "AF_UNIX paths must stay short"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(RECV_TIMEOUT)
    try:
        yield sock, str(path)
    finally:
        sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace, named as NOTIFY_SOCKET writes it ("@...")."""
    name = f"watcherd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(RECV_TIMEOUT)
    try:
        yield sock, "@" + name
    finally:
        sock.close()


# -- Notifier: messages ----------------------------------------------------------------------


def test_notifier_is_off_without_notify_socket() -> None:
    """Outside systemd nothing is sent, nothing raises, and there is no watchdog."""
    notifier = Notifier(env={"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.send(READY="1") is False
    notifier.ready("x")
    notifier.watchdog()


@pytest.mark.parametrize("value", ["", "relative/notify.sock", "vsock:2:1234", "@"])
def test_notifier_is_off_for_addresses_it_cannot_use(value: str) -> None:
    """Relative paths, an empty abstract name and non-AF_UNIX transports disable notifying."""
    assert not Notifier(env={"NOTIFY_SOCKET": value}).enabled


def test_ready_sends_ready_1(notify_socket: tuple[socket.socket, str]) -> None:
    """ready() sends exactly READY=1 to a path socket."""
    sock, path = notify_socket
    notifier = Notifier(env={"NOTIFY_SOCKET": path})
    assert notifier.enabled
    notifier.ready()
    assert recv(sock) == b"READY=1"


def test_ready_with_status_is_one_datagram(notify_socket: tuple[socket.socket, str]) -> None:
    """ready(status) sends READY=1 and STATUS= together, newline separated."""
    sock, path = notify_socket
    Notifier(env={"NOTIFY_SOCKET": path}).ready("watching 2 folders")
    assert recv(sock) == b"READY=1\nSTATUS=watching 2 folders"


def test_status_stopping_and_extend_timeout(notify_socket: tuple[socket.socket, str]) -> None:
    """status(), stopping() and extend_timeout() each send their documented line."""
    sock, path = notify_socket
    notifier = Notifier(env={"NOTIFY_SOCKET": path})
    notifier.status("done 3, waiting 1")
    notifier.stopping()
    notifier.extend_timeout(30)
    assert recv(sock) == b"STATUS=done 3, waiting 1"
    assert recv(sock) == b"STOPPING=1"
    assert recv(sock) == b"EXTEND_TIMEOUT_USEC=30000000"


def test_reloading_sends_monotonic_usec(notify_socket: tuple[socket.socket, str]) -> None:
    """reloading() sends RELOADING=1 with MONOTONIC_USEC taken from CLOCK_MONOTONIC now."""
    sock, path = notify_socket
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier(env={"NOTIFY_SOCKET": path}).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = recv(sock).decode().split("\n")
    assert lines[0] == "RELOADING=1"
    key, _, usec = lines[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(usec) <= after


def test_status_newlines_cannot_forge_fields(notify_socket: tuple[socket.socket, str]) -> None:
    """A newline inside a value is flattened, so it cannot smuggle in READY=1 or similar."""
    sock, path = notify_socket
    Notifier(env={"NOTIFY_SOCKET": path}).status("bad file\nREADY=1")
    assert recv(sock) == b"STATUS=bad file READY=1"


def test_abstract_socket_address(abstract_socket: tuple[socket.socket, str]) -> None:
    """An "@name" NOTIFY_SOCKET reaches the abstract-namespace socket of that name."""
    sock, name = abstract_socket
    notifier = Notifier(env={"NOTIFY_SOCKET": name})
    notifier.ready("up")
    assert recv(sock) == b"READY=1\nSTATUS=up"


def test_send_to_a_missing_socket_returns_false(tmp_path: Path) -> None:
    """When nobody listens, send() reports False instead of raising."""
    notifier = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "nobody.sock")})
    assert notifier.enabled
    assert notifier.send(READY="1") is False
    notifier.stopping()


def test_status_text_lists_nonzero_states_in_order() -> None:
    """The STATUS line names the non-zero states in pipeline order, or says there are none."""
    counts = {"done": 4, "pending": 2, "failed": 0, "waiting": 1}
    assert status_text(counts) == "pending 2, done 4, waiting 1"
    assert status_text({"done": 0}) == "no files yet"


# -- Notifier: watchdog ----------------------------------------------------------------------


def test_watchdog_interval_is_half_of_watchdog_usec(tmp_path: Path) -> None:
    """WATCHDOG_USEC=3s gives a 1.5 s ping interval; WATCHDOG_PID equal to ours keeps it."""
    sock = str(tmp_path / "n.sock")
    assert Notifier(env={"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "3000000"}
                    ).watchdog_interval == 1.5
    assert Notifier(env={"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "500",
                         "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 0.00025


@pytest.mark.parametrize("extra", [
    {"WATCHDOG_USEC": "0"},
    {"WATCHDOG_USEC": "soon"},
    {"WATCHDOG_USEC": "-5"},
    {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "not-a-pid"},
    {},
])
def test_watchdog_off_for_missing_or_bad_values(tmp_path: Path, extra: dict[str, str]) -> None:
    """No, zero, negative or unparsable watchdog settings mean no watchdog."""
    env = {"NOTIFY_SOCKET": str(tmp_path / "n.sock"), **extra}
    assert Notifier(env=env).watchdog_interval is None


def test_watchdog_pid_mismatch_disables_watchdog(notify_socket: tuple[socket.socket, str]) -> None:
    """WATCHDOG_PID of another process: no interval, and watchdog() sends nothing."""
    sock, path = notify_socket
    notifier = Notifier(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000",
                             "WATCHDOG_PID": str(os.getpid() + 1)})
    assert notifier.watchdog_interval is None
    notifier.watchdog()
    notifier.status("marker")
    # Datagrams arrive in order: had the ping gone out, it would come first.
    assert recv(sock) == b"STATUS=marker"


def test_watchdog_sends_watchdog_1(notify_socket: tuple[socket.socket, str]) -> None:
    """With a watchdog requested for this process, watchdog() sends WATCHDOG=1."""
    sock, path = notify_socket
    notifier = Notifier(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000",
                             "WATCHDOG_PID": str(os.getpid())})
    notifier.watchdog()
    assert recv(sock) == b"WATCHDOG=1"


def test_run_watchdog_pings_until_cancelled(notify_socket: tuple[socket.socket, str]) -> None:
    """run_watchdog() keeps pinging from the event loop; cancelling it stops it cleanly."""
    sock, path = notify_socket
    sock.setblocking(False)
    notifier = Notifier(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})

    async def scenario() -> list[bytes]:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(notifier.run_watchdog())
        got = [await asyncio.wait_for(loop.sock_recv(sock, 4096), RECV_TIMEOUT)
               for _ in range(3)]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return got

    assert asyncio.run(scenario()) == [b"WATCHDOG=1"] * 3


def test_run_watchdog_returns_at_once_without_watchdog(tmp_path: Path) -> None:
    """Without a watchdog, run_watchdog() finishes by itself instead of looping."""
    notifier = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "n.sock")})
    asyncio.run(asyncio.wait_for(notifier.run_watchdog(), RECV_TIMEOUT))


# -- systemd units ---------------------------------------------------------------------------


def _verify(unit_text: str, tmp_path: Path, *, user: bool) -> list[str]:
    """Run systemd-analyze verify on the unit; return the lines it printed about it."""
    folder = tmp_path / "verify"
    folder.mkdir(exist_ok=True)
    unit = folder / "watcherd.service"
    unit.write_text(unit_text)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    cmd = ["systemd-analyze", *(["--user"] if user else []), "verify", "--man=no", str(unit)]
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "warning"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    about = [line for line in (done.stdout + done.stderr).splitlines()
             if "watcherd.service" in line]
    assert done.returncode == 0, done.stdout + done.stderr
    return about


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (apt package systemd); CI installs it",
)


def _system_unit(roots: list[Path], *, credential: Path | None = None) -> str:
    return render_systemd_unit(
        [sys.executable, "-m", "watcherd", "run", "--config", "/etc/watcherd/config.toml"],
        user=False, writable_paths=roots, run_as="watcherd", credential=credential,
    )


def test_system_unit_has_the_service_directives(tmp_path: Path) -> None:
    """The system unit is Type=notify with restart, state dir, watchdog and a reload command."""
    text = _system_unit([tmp_path / "inbox"])
    exec_start = values(text, "Service", "ExecStart")
    assert exec_start == [f"{sys.executable} -m watcherd run --config /etc/watcherd/config.toml"]
    expected = {
        "Type": "notify", "NotifyAccess": "main", "Restart": "on-failure",
        "StateDirectory": "watcherd", "WatchdogSec": "2min", "User": "watcherd",
        "ExecReload": "/bin/kill -HUP $MAINPID", "RestartPreventExitStatus": "2",
    }
    for key, value in expected.items():
        assert values(text, "Service", key) == [value], key
    assert values(text, "Install", "WantedBy") == ["multi-user.target"]
    assert values(text, "Unit", "After") == ["network-online.target"]


def test_system_unit_is_hardened_and_lists_roots(tmp_path: Path) -> None:
    """Hardening is on, and each watch root is writable (missing ones tolerated with "-")."""
    roots = [tmp_path / "a", tmp_path / "b"]
    text = _system_unit(roots)
    for key, value in {
        "ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
        "ProtectHome": "read-only" if str(tmp_path).startswith("/home") else "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
    }.items():
        assert values(text, "Service", key) == [value], key
    assert values(text, "Service", "ReadWritePaths") == [f"-{r}" for r in roots]
    assert values(text, "Unit", "RequiresMountsFor") == [str(r) for r in roots]


def test_protect_home_is_read_only_when_a_root_is_under_home() -> None:
    """A watch root (or the interpreter) under /home keeps home readable, not hidden."""
    text = _system_unit([Path("/home/ana/Recordings")])
    assert values(text, "Service", "ProtectHome") == ["read-only"]
    text = render_systemd_unit(["/home/ana/venv/bin/python", "-m", "watcherd", "run"],
                               user=False, writable_paths=[Path("/srv/inbox")])
    assert values(text, "Service", "ProtectHome") == ["read-only"]
    assert values(_system_unit([Path("/srv/inbox")]), "Service", "ProtectHome") == ["yes"]


def test_credential_line_is_active_only_with_a_key_file() -> None:
    """LoadCredential= names the key file when given; otherwise it is only a commented hint."""
    with_key = _system_unit([Path("/srv/in")], credential=Path("/etc/watcherd/gladia.key"))
    assert values(with_key, "Service", "LoadCredential") == ["gladia:/etc/watcherd/gladia.key"]
    assert "/run/credentials/watcherd.service/gladia" in with_key
    without = _system_unit([Path("/srv/in")])
    assert values(without, "Service", "LoadCredential") == []
    assert "#LoadCredential=gladia:/etc/watcherd/gladia.key" in without


def test_user_unit_needs_no_mount_namespacing() -> None:
    """The user unit restarts on failure and starts with the session, without ProtectSystem."""
    text = render_systemd_unit(["/usr/bin/watcherd", "run"], user=True,
                               writable_paths=[Path("/ignored")])
    assert values(text, "Service", "Type") == ["notify"]
    assert values(text, "Service", "Restart") == ["on-failure"]
    assert values(text, "Service", "StateDirectory") == ["watcherd"]
    assert values(text, "Service", "ProtectSystem") == []
    assert values(text, "Service", "ReadWritePaths") == []
    assert values(text, "Service", "User") == []
    assert values(text, "Install", "WantedBy") == ["default.target"]


def test_unit_escapes_spaces_percent_and_dollar() -> None:
    """Paths with spaces, % and $ are quoted and escaped so systemd reads them back verbatim."""
    text = render_systemd_unit(
        ["/opt/my tools/python", "--config", "/etc/w/100%$HOME.toml"], user=False,
        writable_paths=[Path("/srv/in box")],
    )
    assert values(text, "Service", "ExecStart") == [
        '"/opt/my tools/python" --config "/etc/w/100%%$$HOME.toml"'
    ]
    assert values(text, "Service", "ReadWritePaths") == ['"-/srv/in box"']


def test_unit_refuses_relative_paths() -> None:
    """A relative ExecStart or writable path is refused: systemd needs absolute ones."""
    with pytest.raises(ValueError, match="absolute"):
        render_systemd_unit(["watcherd", "run"], user=True)
    with pytest.raises(ValueError, match="absolute"):
        render_systemd_unit(["/usr/bin/watcherd"], user=False, writable_paths=[Path("in")])


def test_packaged_unit_files_match_the_renderer() -> None:
    """systemd/*.service in the source tree are exactly what packaged_units() renders."""
    for name, text in packaged_units().items():
        shipped = (REPO / "systemd" / name).read_text()
        assert shipped == text, (
            f"systemd/{name} is stale: regenerate it with python -c 'from pathlib import Path; "
            "from watcherd.service import packaged_units; [Path(\"systemd\", n).write_text(t) "
            "for n, t in packaged_units().items()]'"
        )


@needs_systemd_analyze
def test_systemd_analyze_accepts_the_system_unit(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing to say about a rendered system unit."""
    roots = [tmp_path / "in box", tmp_path / "plain"]
    for root in roots:
        root.mkdir()
    text = _system_unit(roots, credential=Path("/etc/watcherd/gladia.key"))
    assert _verify(text, tmp_path, user=False) == []


@needs_systemd_analyze
def test_systemd_analyze_accepts_the_user_unit(tmp_path: Path) -> None:
    """systemd-analyze --user verify finds nothing to say about a rendered user unit."""
    text = render_systemd_unit([sys.executable, "-m", "watcherd", "run"], user=True)
    assert _verify(text, tmp_path, user=True) == []


@needs_systemd_analyze
def test_systemd_analyze_accepts_the_packaged_units(tmp_path: Path) -> None:
    """The shipped units verify too, with ExecStart pointed at a binary that exists here."""
    for name, text in packaged_units().items():
        present = text.replace(service.PACKAGED_COMMAND, sys.executable)
        assert _verify(present, tmp_path, user=name.endswith("-user.service")) == []


@needs_systemd_analyze
def test_systemd_analyze_would_report_a_broken_unit(tmp_path: Path) -> None:
    """The verify helper is able to fail: a bad setting is reported about our unit file."""
    text = _system_unit([tmp_path]).replace("ProtectSystem=strict", "ProtectSystem=very")
    assert _verify(text, tmp_path, user=False) != []


# -- launchd ---------------------------------------------------------------------------------


def test_plist_round_trips_with_the_required_keys(tmp_path: Path) -> None:
    """The plist parses back with plistlib; KeepAlive only after a crash; absolute paths."""
    command = [sys.executable, "-m", "watcherd", "run", "--config", "/Users/ana/w.toml"]
    data = render_launchd_plist(command, log_dir=tmp_path / "logs")
    agent = plistlib.loads(data)
    assert agent["Label"] == LAUNCHD_LABEL
    assert agent["ProgramArguments"] == command
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    assert isinstance(agent["ThrottleInterval"], int) and agent["ThrottleInterval"] > 0
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert Path(agent[key]).is_absolute()
        assert Path(agent[key]).parent == tmp_path / "logs"
    assert agent["StandardOutPath"] != agent["StandardErrorPath"]


def test_plist_refuses_relative_paths(tmp_path: Path) -> None:
    """launchd needs absolute paths: a relative program or log folder is refused."""
    with pytest.raises(ValueError, match="absolute"):
        render_launchd_plist(["python3", "-m", "watcherd"], log_dir=tmp_path)
    with pytest.raises(ValueError, match="absolute"):
        render_launchd_plist([sys.executable], log_dir=Path("logs"))


# -- `watcherd service install` --------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake HOME with no XDG overrides and no key in the environment."""
    fake = tmp_path / "home"
    fake.mkdir()
    monkeypatch.setenv("HOME", str(fake))
    for name in ("XDG_CONFIG_HOME", "WATCHERD_CONFIG", "GLADIA_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return fake


@pytest.fixture
def config_file(tmp_path: Path) -> tuple[Path, Path]:
    """A config watching one real folder: (config path, watch root)."""
    root = tmp_path / "inbox"
    root.mkdir()
    config = write_config(tmp_path / "config.toml", api_url="http://127.0.0.1:9",
                          api_key="k-123", journal=tmp_path / "state" / "journal.db",
                          watches=[root])
    return config, root


def install(*args: str) -> Result:
    """Invoke `service install` through click, as the main group would."""
    group = click.Group(commands={"service": service_group})
    return CliRunner().invoke(group, ["service", "install", *args])


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder``."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_install_dry_run_prints_and_writes_nothing(home: Path, config_file: tuple[Path, Path]
                                                   ) -> None:
    """--dry-run prints the unit for this installation and leaves HOME untouched."""
    config, _ = config_file
    result = install("--dry-run", "--config", str(config))
    assert result.exit_code == 0, result.output + result.stderr
    unit = home / ".config" / "systemd" / "user" / "watcherd.service"
    assert f"# would write {unit}" in result.stdout
    assert f"ExecStart={sys.executable} -m watcherd run --config {config}" in result.stdout
    assert files_under(home) == []


def test_install_resolves_a_relative_config(home: Path, config_file: tuple[Path, Path],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative --config becomes absolute in ExecStart: the service has no working dir."""
    config, _ = config_file
    monkeypatch.chdir(config.parent)
    result = install("--dry-run", "--config", config.name)
    assert result.exit_code == 0, result.output + result.stderr
    assert f"--config {config}\n" in result.stdout


def test_install_writes_the_user_unit(home: Path, config_file: tuple[Path, Path]) -> None:
    """Without --dry-run the user unit lands in ~/.config/systemd/user with the next steps."""
    config, _ = config_file
    result = install("--user", "--config", str(config))
    assert result.exit_code == 0, result.output + result.stderr
    unit = home / ".config" / "systemd" / "user" / "watcherd.service"
    assert files_under(home) == [unit]
    text = unit.read_text()
    assert values(text, "Service", "ExecStart") == [
        f"{sys.executable} -m watcherd run --config {config}"
    ]
    assert values(text, "Install", "WantedBy") == ["default.target"]
    assert "systemctl --user daemon-reload && systemctl --user enable --now watcherd" in (
        result.stdout
    )
    again = install("--user", "--config", str(config))
    assert again.exit_code == 0
    assert f"wrote {unit}" in again.stdout


def test_install_honours_xdg_config_home(home: Path, config_file: tuple[Path, Path],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An absolute $XDG_CONFIG_HOME decides where the user unit goes."""
    config, _ = config_file
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    result = install("--config", str(config))
    assert result.exit_code == 0, result.output + result.stderr
    assert files_under(home) == [home / "xdg" / "systemd" / "user" / "watcherd.service"]


def test_install_system_unit_lists_roots_and_journal(
    home: Path, config_file: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--system writes to the system unit folder with the roots and journal folder writable."""
    config, root = config_file
    system_dir = tmp_path / "etc-systemd-system"
    monkeypatch.setattr("watcherd.cli.ops.SYSTEM_UNIT_DIR", system_dir)
    key = tmp_path / "gladia.key"
    result = install("--system", "--config", str(config), "--key-file", str(key),
                     "--run-as", "ana")
    assert result.exit_code == 0, result.output + result.stderr
    text = (system_dir / "watcherd.service").read_text()
    assert values(text, "Service", "ReadWritePaths") == [f"-{root}", f"-{tmp_path / 'state'}"]
    assert values(text, "Service", "User") == ["ana"]
    assert values(text, "Service", "LoadCredential") == [f"gladia:{key}"]
    assert "sudo systemctl daemon-reload && sudo systemctl enable --now watcherd" in (
        result.stdout
    )


def test_install_launchd_writes_the_agent(home: Path, config_file: tuple[Path, Path]) -> None:
    """For launchd the plist goes to ~/Library/LaunchAgents and the log folder is created."""
    config, _ = config_file
    result = install("--target", "launchd", "--config", str(config))
    assert result.exit_code == 0, result.output + result.stderr
    plist = home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    agent = plistlib.loads(plist.read_bytes())
    assert agent["ProgramArguments"][-1] == str(config)
    assert (home / "Library" / "Logs" / "watcherd").is_dir()
    assert f"launchctl bootstrap gui/$(id -u) {plist}" in result.stdout


def test_install_refuses_system_for_launchd(home: Path, config_file: tuple[Path, Path]) -> None:
    """There is no system-wide launchd install: --system is a usage error (exit 2)."""
    config, _ = config_file
    result = install("--system", "--target", "launchd", "--config", str(config))
    assert result.exit_code == 2
    assert "LaunchAgent" in result.stderr
    assert files_under(home) == []


def test_install_needs_something_to_watch(home: Path, tmp_path: Path) -> None:
    """A config without [[watch]] is a config error (exit 2) naming the file."""
    config = tmp_path / "empty.toml"
    config.write_text('[gladia]\napi_url = "http://127.0.0.1:9"\n')
    result = install("--config", str(config))
    assert result.exit_code == 2
    assert "nothing to watch" in result.stderr and str(config) in result.stderr
    assert files_under(home) == []


def test_install_warns_when_the_key_is_only_in_the_environment(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key from $GLADIA_API_KEY is not seen by the service: install says so on stderr."""
    root = tmp_path / "inbox"
    root.mkdir()
    config = write_config(tmp_path / "c.toml", api_url=None, api_key=None,
                          journal=tmp_path / "j.db", watches=[root])
    monkeypatch.setenv("GLADIA_API_KEY", "env-key-456")
    result = install("--dry-run", "--config", str(config))
    assert result.exit_code == 0, result.output + result.stderr
    assert "GLADIA_API_KEY" in result.stderr
    assert "env-key-456" not in result.stdout + result.stderr


# -- metrics ---------------------------------------------------------------------------------

SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})?'
    r' (?P<value>[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|Inf|NaN))$'
)


def parse_metrics(text: str) -> dict[str, float]:
    """Check every line of a Prometheus text exposition; map ``name{labels}`` to its value."""
    assert text.endswith("\n")
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a valid sample line: {line!r}"
        key = f"{match['name']}{{{match['labels']}}}" if match["labels"] else match["name"]
        samples[key] = float(match["value"])
    return samples


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """A real journal with three sources: two pending, one moved on to failed."""
    jr = Journal.open(tmp_path / "journal.db")
    seen = [(str(tmp_path / f"{n}.wav"), str(tmp_path), FileStat(1, 1, 1, n), "{}")
            for n in range(3)]
    jr.observe_many(seen)
    first = jr.all()[0]
    jr.transition(first, "failed", actor="test", reason="bad file")
    try:
        yield jr
    finally:
        jr.close()


def test_metrics_render_counts_and_totals(journal: Journal) -> None:
    """Every sample parses; state counts come from the journal, totals from the arguments."""
    text = render_metrics(journal, in_flight=2, upload_bytes=12345, audio_seconds=61.5,
                          errors_by_class={"transient": 3, "auth": 1}, last_success=1700000000.25)
    samples = parse_metrics(text)
    assert samples['watcherd_sources{state="pending"}'] == 2
    assert samples['watcherd_sources{state="failed"}'] == 1
    assert samples['watcherd_sources{state="done"}'] == 0
    assert samples["watcherd_jobs_in_flight"] == 2
    assert samples["watcherd_upload_bytes_total"] == 12345
    assert samples["watcherd_audio_seconds_total"] == 61.5
    assert samples['watcherd_errors_total{class="transient"}'] == 3
    assert samples['watcherd_errors_total{class="auth"}'] == 1
    assert samples["watcherd_last_success_timestamp_seconds"] == 1700000000.25
    assert "# TYPE watcherd_upload_bytes_total counter" in text
    assert "# TYPE watcherd_sources gauge" in text


def test_metrics_escape_labels_and_omit_unknown_success(journal: Journal) -> None:
    """Quotes, backslashes and newlines in labels are escaped; no success means no sample."""
    text = render_metrics(journal, in_flight=0, upload_bytes=0, audio_seconds=0.0,
                          errors_by_class={'odd"class\\\n': 1}, last_success=None)
    samples = parse_metrics(text)
    assert samples['watcherd_errors_total{class="odd\\"class\\\\\\n"}'] == 1
    assert "watcherd_last_success_timestamp_seconds" not in text


@pytest.fixture
def umask_022() -> Iterator[None]:
    """Run with the common umask 022, restoring the previous one after."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_022")
def test_write_textfile_replaces_atomically(tmp_path: Path, journal: Journal) -> None:
    """The textfile is replaced whole, readable by others, and no temp file is left behind."""
    target = tmp_path / "textfile" / "watcherd.prom"
    target.parent.mkdir()
    write_textfile(target, "old 1\n")
    text = render_metrics(journal, in_flight=1, upload_bytes=0, audio_seconds=0.0,
                          errors_by_class={}, last_success=None)
    write_textfile(target, text)
    assert target.read_text() == text
    assert sorted(p.name for p in target.parent.iterdir()) == ["watcherd.prom"]
    # node_exporter usually runs as another user.
    assert target.stat().st_mode & 0o777 == 0o644


# -- hooks -----------------------------------------------------------------------------------


def python_hook(code: str) -> list[str]:
    """A hook command that runs ``code`` in this interpreter (argv, no shell)."""
    return [sys.executable, "-c", code]


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (gone, or a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_hook_env_names_source_state_outputs_job_and_error(tmp_path: Path) -> None:
    """hook_env names the source, state, outputs (numbered, JSON, ':'-joined), job id, error."""
    env = hook_env(tmp_path / "a.wav", "done", [tmp_path / "a.txt", tmp_path / "a.json"], "j-1")
    assert env == {
        "WATCHERD_SOURCE": str(tmp_path / "a.wav"),
        "WATCHERD_STATE": "done",
        "WATCHERD_OUTPUTS": f"{tmp_path / 'a.txt'}{os.pathsep}{tmp_path / 'a.json'}",
        "WATCHERD_OUTPUTS_JSON": json.dumps([str(tmp_path / "a.txt"), str(tmp_path / "a.json")]),
        "WATCHERD_OUTPUT_COUNT": "2",
        "WATCHERD_OUTPUT_1": str(tmp_path / "a.txt"),
        "WATCHERD_OUTPUT_2": str(tmp_path / "a.json"),
        "WATCHERD_JOB_ID": "j-1",
        "WATCHERD_ERROR": "",
    }


def test_hook_gets_its_env_vars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook sees the WATCHERD_* variables and the inherited environment, minus secrets."""
    monkeypatch.setenv("GLADIA_API_KEY", "secret-789")
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHERD_TEST_INHERITED", "yes")
    env = hook_env(tmp_path / "talk.mp3", "failed", (), None, "the file is corrupt")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    result = asyncio.run(run_hook(python_hook(code), env, 30))
    assert result.ok, result.describe()
    seen = json.loads(result.output)
    for key, value in env.items():
        assert seen[key] == value
    assert seen["WATCHERD_TEST_INHERITED"] == "yes"
    assert "GLADIA_API_KEY" not in seen and "NOTIFY_SOCKET" not in seen


def test_failing_hook_is_reported(tmp_path: Path) -> None:
    """A hook that exits non-zero is reported with its status and output, not raised."""
    result = asyncio.run(run_hook(
        python_hook("import sys; print('upload to archive failed'); sys.exit(3)"), {}, 30
    ))
    assert not result.ok
    assert result.returncode == 3 and not result.timed_out
    assert "upload to archive failed" in result.output
    assert "exited with status 3" in result.describe()


def test_hanging_hook_is_killed_with_its_children(tmp_path: Path) -> None:
    """A hook past its timeout is killed, and so is the child it started."""
    pids = tmp_path / "pids"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{child.pid}}')\n"
        "time.sleep(120)\n"
    )
    result = asyncio.run(run_hook(python_hook(code), {}, 3.0))
    assert result.timed_out and not result.ok
    assert "timed out" in result.describe()
    child = int(wait_until(lambda: pids.read_text() if pids.exists() else None, timeout=10,
                           message="the hook to record its child"))
    wait_until(lambda: process_gone(child), timeout=10, message="the hook's child to die")


def test_hook_ignoring_sigterm_gets_sigkill(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hook that ignores SIGTERM is SIGKILLed after the grace period."""
    monkeypatch.setattr(service, "HOOK_KILL_GRACE", 0.3)
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ignoring SIGTERM', flush=True); time.sleep(120)")
    result = asyncio.run(run_hook(python_hook(code), {}, 3.0))
    assert result.timed_out
    # Without this line the hook died of SIGTERM before it could ignore it; the test then
    # proves nothing, so say so rather than pass.
    assert "ignoring SIGTERM" in result.output
    assert result.returncode == -signal.SIGKILL


def test_hook_leaving_a_child_behind_still_returns(tmp_path: Path) -> None:
    """A hook that exits 0 while a child it left holds its output is done, not timed out."""
    pid_file = tmp_path / "bg.pid"
    code = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('started')\n"
    )
    try:
        result = asyncio.run(run_hook(python_hook(code), {}, 30))
        assert result.ok, result.describe()
        assert result.output.strip() == "started"
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_missing_or_empty_hook_command_is_reported(tmp_path: Path) -> None:
    """A hook that cannot start, or an empty command, gives an error result, never raises."""
    missing = asyncio.run(run_hook([str(tmp_path / "no-such-hook")], {}, 5))
    assert not missing.ok and missing.returncode is None
    assert missing.error is not None and "no-such-hook" in missing.error
    assert "did not run" in missing.describe()
    empty = asyncio.run(run_hook([], {}, 5))
    assert not empty.ok and empty.error == "the hook command is empty"


def test_hook_output_keeps_only_the_tail() -> None:
    """A chatty hook's output is cut to the last HOOK_OUTPUT_LIMIT bytes."""
    code = "import sys; sys.stdout.write('x' * 100000 + 'END')"
    result = asyncio.run(run_hook(python_hook(code), {}, 30))
    assert result.ok
    assert len(result.output) == HOOK_OUTPUT_LIMIT
    assert result.output.endswith("END")
