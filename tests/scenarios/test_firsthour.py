"""The first hour of a new user (issue 15): a missing --watch folder, doctor --watch, the
config commands, the example config shipped in the package, service install from --watch, and
console log lines that fit a terminal."""

from __future__ import annotations

import io
import json
import os
import re
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from tests.daemon_harness import DaemonProcess, wait_until, watcherd, write_config
from tests.paths import REPO
from tests.sim import GladiaSimulator
from watcherd.cli.configcmd import example_text, initial_config, redact
from watcherd.config import WatchConfig, parse_config
from watcherd.engines.local.model import local_engine_installed
from watcherd.log import configure_logging, fit
from watcherd.watcher import Watcher, scan

KEY = "sk-firsthour-secret-24680"
SIM_OPTIONS = {"job_seconds": 0.2}
DEADLINE = 20.0


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """A fresh HOME for watcherd subprocesses: no config, no key, no XDG overrides."""
    folder = tmp_path / "home"
    folder.mkdir()
    return {"HOME": str(folder), "XDG_CONFIG_HOME": str(folder / ".config"),
            "XDG_STATE_HOME": str(folder / ".local" / "state"),
            "XDG_CACHE_HOME": str(folder / ".cache")}


# -- 1. a missing root -------------------------------------------------------------------


def test_missing_root_is_watched_soon_after_it_appears(tmp_path: Path) -> None:
    """A root created after the start is watched without waiting for the slow retry period."""
    root = tmp_path / "later"
    hinted: list[Path] = []
    seen = threading.Event()

    def hint(path: Path) -> None:
        hinted.append(path)
        seen.set()

    # An hour between slow checks: only the quick look for a missing root can find it.
    watcher = Watcher([WatchConfig(path=root)], hint, root_retry_seconds=3600.0)
    watcher.start()
    try:
        assert watcher.wait_ready(DEADLINE)
        assert root in watcher.root_problems()
        root.mkdir()
        wait_until(lambda: not watcher.root_problems(), timeout=DEADLINE,
                   message="the new root to be watched")
        (root / "talk.mp3").write_bytes(b"x")
        assert seen.wait(DEADLINE)
        assert root / "talk.mp3" in hinted
    finally:
        watcher.stop()


def test_scan_of_a_missing_root_is_quiet(tmp_path: Path) -> None:
    """Scanning a root that does not exist yields nothing and logs nothing (the watcher says it)."""
    with structlog.testing.capture_logs() as logs:
        assert list(scan(WatchConfig(path=tmp_path / "absent"))) == []
    assert logs == []


def test_run_watch_creates_the_folder_and_transcribes(
    tmp_path: Path, sim: GladiaSimulator, home: dict[str, str]
) -> None:
    """`run --watch DIR` makes a missing DIR, says so, is ready without problems, and works."""
    folder = tmp_path / "fresh" / "Transcribe"
    config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                          journal=tmp_path / "journal.db", watches=[])
    daemon = DaemonProcess(config, tmp_path / "daemon.log", env=home,
                           args=["--watch", str(folder)]).start()
    try:
        created = daemon.wait_for_event("watch_root_created")
        assert created["root"] == str(folder)
        ready = daemon.wait_for_event("ready")
        assert "problems" not in ready  # said only when there are some
        (folder / "hello.mp3").write_bytes(b"ID3" + os.urandom(2048))
        wait_until(lambda: (folder / "hello.txt").exists(), timeout=60,
                   message="the transcript")
        assert daemon.terminate() == 0
        assert not [line for line in daemon.log_lines()
                    if line.get("event") in ("watch_root_missing", "scan_folder_unreadable")]
    finally:
        daemon.stop()


def test_run_watch_that_cannot_be_created_is_a_usage_error(
    tmp_path: Path, home: dict[str, str]
) -> None:
    """A --watch folder under a file cannot be made: exit 2 with the reason."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = watcherd("run", "--watch", str(blocker / "inbox"), env=home, timeout=60)
    assert result.returncode == 2
    assert "cannot create the folder" in result.stderr


# -- 2. doctor judges what run would do ---------------------------------------------------


def test_doctor_with_watch_accepts_a_folder_run_would_create(
    tmp_path: Path, home: dict[str, str]
) -> None:
    """`doctor --watch DIR` with no config and a missing DIR passes, saying run creates it."""
    folder = tmp_path / "Transcribe"
    result = watcherd("doctor", "--watch", str(folder), env=home, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing to watch" not in result.stdout
    assert f"watch {folder}: does not exist yet: `watcherd run --watch` creates it" \
        in result.stdout
    assert not folder.exists()


def test_doctor_without_watch_says_how_to_give_one(home: dict[str, str]) -> None:
    """With nothing to watch, doctor fails and names --watch as the fix."""
    result = watcherd("doctor", env=home, timeout=120)
    assert result.returncode == 1
    assert "pass --watch DIR" in result.stdout


# -- 4. config init / show, the packaged example, service install --watch ---------------


def test_packaged_example_equals_the_repository_copy() -> None:
    """watcherd/config.example.toml (shipped) and /config.example.toml (linked) are equal."""
    assert (REPO / "config.example.toml").read_text("utf-8") == example_text()
    assert (REPO / "watcherd" / "config.example.toml").read_text("utf-8") == example_text()


def test_config_init_writes_a_commented_config_that_loads(
    tmp_path: Path, home: dict[str, str]
) -> None:
    """`config init --watch A --watch B` writes the example with those two watches, private."""
    first, second = tmp_path / "a", tmp_path / "b b"
    result = watcherd("config", "init", "--watch", str(first), "--watch", str(second), env=home)
    assert result.returncode == 0, result.stderr
    target = Path(home["XDG_CONFIG_HOME"]) / "watcherd" / "config.toml"
    assert f"wrote {target}" in result.stdout
    assert first.is_dir() and second.is_dir()
    assert target.stat().st_mode & 0o077 == 0
    text = target.read_text("utf-8")
    assert text.startswith("# watcherd configuration example")
    config = parse_config(tomllib.loads(text), source=target, env={})
    assert [w.path for w in config.watches] == [first, second]
    again = watcherd("config", "init", "--watch", str(first), env=home)
    assert again.returncode == 0 and "already watches" in again.stdout
    forced = watcherd("config", "init", "--force", env=home)
    assert forced.returncode == 0
    assert parse_config(tomllib.loads(target.read_text("utf-8")), source=target,
                        env={}).watches == ()


def _on_a_terminal(args: list[str], env: dict[str, str], answer: bytes) -> tuple[int, str]:
    """Run watcherd with a pseudo-terminal as stdin/stdout, typing ``answer``."""
    import pty
    import subprocess
    import sys

    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "watcherd", *args], stdin=terminal,
                            stdout=terminal, stderr=subprocess.STDOUT,
                            env={**os.environ, **env})
    os.close(terminal)
    os.write(controller, answer)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    return proc.wait(timeout=60), seen.decode("utf-8", "replace")


def test_config_init_without_watch_says_how_to_add_a_folder_and_adds_it(
    tmp_path: Path, home: dict[str, str]
) -> None:
    """init writes a config watching nothing and says so; init --watch DIR then adds DIR."""
    target = Path(home["XDG_CONFIG_HOME"]) / "watcherd" / "config.toml"
    first = watcherd("config", "init", env=home)
    assert first.returncode == 0, first.stderr
    assert "watches nothing" in first.stderr
    assert "`watcherd config init --watch DIR`" in first.stderr
    assert "adds the folder to this file" in first.stderr
    before = target.read_text("utf-8")

    folder = tmp_path / "Transcribe"
    scripted = watcherd("config", "init", "--watch", str(folder), env=home)
    assert scripted.returncode == 2
    assert f'[[watch]]\n# The folder to watch (required).\npath = "{folder}"' \
        in scripted.stderr
    assert "add these lines" in scripted.stderr
    assert target.read_text("utf-8") == before and not folder.exists()

    code, shown = _on_a_terminal(["config", "init", "--watch", str(folder)], home, b"y\n")
    assert code == 0, shown
    assert f"added {folder} to {target}" in shown
    assert folder.is_dir() and target.stat().st_mode & 0o077 == 0
    text = target.read_text("utf-8")
    assert text.startswith("# watcherd configuration example")
    assert "# The local (offline) model" in text  # the comments stay
    config = parse_config(tomllib.loads(text), source=target, env={})
    assert [w.path for w in config.watches] == [folder]

    other = tmp_path / "Podcasts"
    code, shown = _on_a_terminal(["config", "init", "--watch", str(other)], home, b"n\n")
    assert code == 1 and "nothing changed" in shown
    assert target.read_text("utf-8") == text


def test_initial_config_without_watch_loads_with_nothing_to_watch() -> None:
    """With no --watch the example's watch is commented out, and the rest still loads."""
    config = parse_config(tomllib.loads(initial_config([])), source=None, env={})
    assert config.watches == ()


def test_config_show_prints_the_effective_config_without_secrets(
    tmp_path: Path, home: dict[str, str]
) -> None:
    """`config show` gives every table, the --watch folder, and never the key."""
    config = tmp_path / "c.toml"
    config.write_text(f'[gladia]\napi_key = "{KEY}"\n[callback]\nlisten = "127.0.0.1:8999"\n'
                      '[webhook]\nsecret = "whsec_aGlkZGVuLXNlY3JldA=="\n', encoding="utf-8")
    result = watcherd("config", "show", "--config", str(config), "--watch", str(tmp_path),
                      env=home)
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout and "whsec_aGlkZGVuLXNlY3JldA==" not in result.stdout
    assert 'api_key = "***"' in result.stdout
    for table in ("[gladia]", "[local]", "[retry]", "[http]", "[defaults]", "[[watch]]"):
        assert table in result.stdout
    assert f'path = "{tmp_path}"' in result.stdout
    from_env = watcherd("config", "show", env={**home, "GLADIA_API_KEY": KEY})
    assert from_env.returncode == 0 and KEY not in from_env.stdout
    assert "nothing to watch" in from_env.stdout


def test_config_show_pasted_into_a_file_runs_the_same_config(
    tmp_path: Path, sim: GladiaSimulator, home: dict[str, str]
) -> None:
    """show -> file -> run: the daemon starts on it, and showing that file prints the same."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    key_file = tmp_path / "gladia.key"
    key_file.write_text(KEY + "\n", encoding="utf-8")
    config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=None,
                          journal=tmp_path / "journal.db", watches=[inbox],
                          options={"diarization": True},
                          extra='\n[watch.options]\nunset = ["diarization"]\n')
    text = config.read_text("utf-8").replace(
        "[gladia]\n", f"[gladia]\napi_key_file = {json.dumps(str(key_file))}\n", 1)
    config.write_text(text.replace("[local]", "") + "[local]\nworkers = 1\n", "utf-8")
    shown = watcherd("config", "show", "--config", str(config), env=home)
    assert shown.returncode == 0, shown.stderr
    for line in ("[retry]\nbase_seconds = 0.2", '[http]\nlisten = ""', "workers = 1",
                 'cpu_threads = "auto"', '[engine]\nname = "auto"',
                 f"api_key_file = {json.dumps(str(key_file))}", 'unset = ["diarization"]'):
        assert line in shown.stdout
    assert KEY not in shown.stdout and "retry_base" not in shown.stdout
    pasted = tmp_path / "pasted.toml"
    pasted.write_text(shown.stdout, encoding="utf-8")
    again = watcherd("config", "show", "--config", str(pasted), env=home)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1:] == shown.stdout.splitlines()[1:]
    daemon = DaemonProcess(pasted, tmp_path / "daemon.log", env=home).start()
    try:
        daemon.wait_for_event("ready")
        (inbox / "talk.mp3").write_bytes(b"ID3" + os.urandom(2048))
        wait_until(lambda: (inbox / "talk.txt").exists(), timeout=60, message="the transcript")
        assert daemon.terminate() == 0
    finally:
        daemon.stop()
    (job,) = sim.jobs()
    assert "diarization" not in job["request_params"]


@given(secret=st.text(st.characters(blacklist_categories=("Cs", "Co")), min_size=4, max_size=30),
       before=st.text(max_size=40), after=st.text(max_size=40))
def test_redact_never_leaves_a_secret(secret: str, before: str, after: str) -> None:
    """Whatever surrounds it, a known secret never survives redaction."""
    shown = redact(before + secret + after + secret, [secret])
    assert secret not in shown.replace("***", "\x00") or secret in "***"


@given(user=st.from_regex(r"[a-z]{1,8}", fullmatch=True),
       password=st.from_regex(r"[A-Za-z0-9!$%^&*()_+=-]{1,20}", fullmatch=True))
def test_redact_hides_a_password_in_a_url(user: str, password: str) -> None:
    """postgresql://user:PASSWORD@host shows the user and host, never the password."""
    shown = redact(f'url = "postgresql://{user}:{password}@db.example/w"', [])
    assert shown == f'url = "postgresql://{user}:***@db.example/w"'


def test_service_install_dry_run_from_watch_without_config(
    tmp_path: Path, home: dict[str, str]
) -> None:
    """Quick-start users have no config: --watch makes one (--dry-run only says it would)."""
    folder = tmp_path / "Transcribe"
    target = Path(home["XDG_CONFIG_HOME"]) / "watcherd" / "config.toml"
    dry = watcherd("service", "install", "--user", "--dry-run", "--watch", str(folder),
                   "--target", "systemd", env=home)
    assert dry.returncode == 0, dry.stderr
    assert f"# would write {target} watching {folder}" in dry.stdout
    assert f"--config {target}" in dry.stdout
    assert not target.exists()
    real = watcherd("service", "install", "--user", "--watch", str(folder),
                    "--target", "systemd", env=home)
    assert real.returncode == 0, real.stderr
    assert f"wrote {target}" in real.stderr
    assert (Path(home["XDG_CONFIG_HOME"]) / "systemd" / "user" / "watcherd.service").exists()
    config = parse_config(tomllib.loads(target.read_text("utf-8")), source=target, env={})
    assert [w.path for w in config.watches] == [folder]
    refused = watcherd("service", "install", "--user", "--dry-run", env={
        **home, "XDG_CONFIG_HOME": str(tmp_path / "empty")})
    assert refused.returncode == 2 and "--watch DIR" in refused.stderr


# -- 10. console lines ----------------------------------------------------------------------


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """A console log stream for a watch root /home/u/Transcribe, 120 columns wide."""
    stream = io.StringIO()
    configure_logging(fmt="console", stream=stream, roots=[Path("/home/u/Transcribe")],
                      width=120)
    yield stream
    configure_logging(fmt="json", stream=io.StringIO())


def test_console_shows_paths_relative_to_their_root(console: io.StringIO) -> None:
    """A transcript line names the source inside its root and only the outputs' suffixes."""
    structlog.get_logger("t").info(
        "transcript_written", source="/home/u/Transcribe/sub/talk.mp3", job_id="local-1",
        engine="local", outputs=["/home/u/Transcribe/sub/talk.txt",
                                 "/home/u/Transcribe/sub/talk.json"])
    line = console.getvalue()
    assert line.count("\n") == 1
    assert "source=sub/talk.mp3" in line and "/home/u" not in line
    assert "outputs=.txt,.json" in line
    assert len(line.rstrip("\n")) <= 120


def test_console_cuts_a_long_line_to_the_width(console: io.StringIO) -> None:
    """An event with a long reason is cut to the width, ending in an ellipsis."""
    structlog.get_logger("t").warning("failed", source="/home/u/Transcribe/a.mp3",
                                      error="x" * 500)
    line = console.getvalue().rstrip("\n")
    assert len(line) == 120 and line.endswith("…")


def test_json_keeps_full_paths(tmp_path: Path) -> None:
    """JSON lines keep absolute paths and every output, whatever the roots."""
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream, roots=[Path("/home/u/Transcribe")], width=40)
    outputs = ["/home/u/Transcribe/talk.txt", "/home/u/Transcribe/talk.json"]
    structlog.get_logger("t").info("transcript_written",
                                   source="/home/u/Transcribe/talk.mp3", outputs=outputs,
                                   error="y" * 300)
    data = json.loads(stream.getvalue())
    assert data["source"] == "/home/u/Transcribe/talk.mp3" and data["outputs"] == outputs
    assert data["error"] == "y" * 300


_SGR = re.compile("\x1b\\[[0-9;]*m")


@given(parts=st.lists(st.tuples(st.sampled_from(["", "\x1b[1m", "\x1b[0m", "\x1b[31;1m"]),
                                st.text(st.characters(blacklist_categories=("Cc", "Cs")),
                                        max_size=30)), max_size=12),
       width=st.integers(min_value=1, max_value=200))
def test_fit_never_exceeds_the_width(parts: list[tuple[str, str]], width: int) -> None:
    """fit() keeps at most ``width`` visible characters and what it keeps is the line's start."""
    line = "".join(code + text for code, text in parts)
    cut = fit(line, width)
    visible = _SGR.sub("", cut)
    assert len(visible) <= max(width, 1)
    if len(_SGR.sub("", line)) <= width:
        assert cut == line
    else:
        assert visible.endswith("…")
        assert _SGR.sub("", line).startswith(visible[:-1].rstrip())


# -- 3. transcribe while a daemon runs ------------------------------------------------------


def test_transcribe_hands_files_to_a_running_daemon(
    tmp_path: Path, sim: GladiaSimulator, home: dict[str, str], inbox: Path
) -> None:
    """With a daemon on the journal, transcribe hands it the files and waits: same output."""
    config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                          journal=tmp_path / "journal.db", watches=[inbox])
    daemon = DaemonProcess(config, tmp_path / "daemon.log", env=home).start()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    good = elsewhere / "talk.mp3"
    good.write_bytes(b"ID3" + os.urandom(4096))
    empty = elsewhere / "empty.wav"
    empty.write_bytes(b"")
    try:
        daemon.wait_for_event("ready")
        result = watcherd("transcribe", str(good), "--config", str(config), env=home)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith(
            f"done     {good} -> {elsewhere / 'talk.txt'}, {elsewhere / 'talk.json'}\n")
        assert (elsewhere / "talk.txt").exists() and (elsewhere / "talk.json").exists()
        assert "handed_to_daemon" in result.stderr
        # The daemon did the work: its log says so.
        daemon.wait_for_event("transcript_written")
        # A file that fails fails the command, as without a daemon.
        failed = watcherd("transcribe", str(empty), str(good), "--config", str(config),
                          env=home)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert f"failed   {empty}" in failed.stdout and f"done     {good}" in failed.stdout
        assert daemon.terminate() == 0
    finally:
        daemon.stop()


def test_handoff_returns_what_is_left_when_the_daemon_stops(tmp_path: Path) -> None:
    """If the daemon is gone, hand_to_daemon records the file and gives it back, unfinished."""
    from watcherd.handoff import daemon_holds, hand_to_daemon
    from watcherd.journal import Journal

    journal_path = tmp_path / "journal.db"
    Journal.open(journal_path).close()
    audio = tmp_path / "a.mp3"
    audio.write_bytes(b"ID3" + b"\0" * 100)
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    assert not daemon_holds(journal_path)
    result = hand_to_daemon(journal_path, [audio, fifo], WatchConfig(path=tmp_path),
                            still_running=lambda: False)
    assert result.unfinished == (audio,)
    assert result.states == {str(fifo): "ignored"}
    with Journal.open(journal_path, readonly=True) as journal:
        source = journal.by_path(str(audio))
    assert source is not None and source.state == "pending"
    assert source.watch_root == str(tmp_path)


def test_daemon_holds_sees_the_lock(tmp_path: Path) -> None:
    """daemon_holds() is true exactly while an exclusive opener holds the journal."""
    from watcherd.handoff import daemon_holds
    from watcherd.journal import Journal

    journal_path = tmp_path / "journal.db"
    with Journal.open(journal_path, exclusive=True):
        assert daemon_holds(journal_path)
    assert not daemon_holds(journal_path)


def test_console_shows_a_root_whole_with_a_tilde(console: io.StringIO) -> None:
    """A root is not made relative to itself; under the home folder it starts with ~."""
    home = Path.home()
    structlog.get_logger("t").info("watch_root_created", root=str(home / "Transcribe"),
                                   other=str(home / "x" / "y.mp3"))
    line = console.getvalue()
    assert "root=~/Transcribe" in line and "other=~/x/y.mp3" in line


# -- issue 25: what the README promises ----------------------------------------------------


def test_status_of_a_file_lists_its_outputs_not_a_pattern(
    tmp_path: Path, sim: GladiaSimulator, home: dict[str, str], inbox: Path
) -> None:
    """`status FILE` names the files written; `hello.*` would match the source too."""
    config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                          journal=tmp_path / "journal.db", watches=[inbox],
                          outputs=["txt", "json", "srt"])
    hello = inbox / "hello.mp3"
    hello.write_bytes(b"ID3" + os.urandom(2048))
    done = watcherd("transcribe", str(hello), "--config", str(config), env=home)
    assert done.returncode == 0, done.stderr
    result = watcherd("status", str(hello), "--config", str(config), env=home)
    assert result.returncode == 0, result.stderr
    (line,) = [x for x in result.stdout.splitlines() if x.strip().startswith("outputs:")]
    assert line.strip() == (f"outputs: {inbox / 'hello.txt'}, {inbox / 'hello.json'}, "
                            f"{inbox / 'hello.srt'}")
    assert ".*" not in result.stdout


def test_retry_without_a_path_retries_every_failed_file(
    tmp_path: Path, home: dict[str, str]
) -> None:
    """As the README shows it, `retry` alone puts every failed file back and says how many."""
    from watcherd.journal import FileStat, Journal

    config = write_config(tmp_path / "config.toml", api_url=None, api_key=None,
                          journal=tmp_path / "journal.db", watches=[tmp_path / "in"])
    journal = Journal.open(tmp_path / "journal.db", exclusive=True)
    stat = FileStat(size=10, mtime_ns=1, dev=1, inode=2)
    rows = journal.observe_many([(str(tmp_path / "in" / name), str(tmp_path / "in"), stat, "{}")
                                 for name in ("a.mp3", "b.mp3", "c.mp3")])
    for row in rows[:2]:
        journal.transition(row, "failed", actor="worker", last_error="bad")
    journal.transition(rows[2], "done", actor="worker")
    journal.close()
    result = watcherd("retry", "--config", str(config), env=home)
    assert result.returncode == 0, result.stderr
    assert "queued 2 failed files again" in result.stdout
    states = {row["path"]: row["state"] for row in json.loads(watcherd(
        "status", "--json", "--config", str(config), env=home).stdout)}
    assert sorted(states.values()) == ["done", "pending", "pending"]
    again = watcherd("retry", "--config", str(config), env=home)
    assert again.returncode == 0 and "nothing to retry: no file has failed" in again.stdout


def _session_alive(session: int) -> bool:
    """Whether any process of this session (the daemon, its workers, their tracker) is left."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == session:
                    return True
            except OSError:
                continue
    return False


@pytest.mark.skipif(not local_engine_installed(), reason="the local extra is not installed")
def test_two_quick_ctrl_c_exit_130_without_a_leaked_semaphore_warning(
    tmp_path: Path, home: dict[str, str]
) -> None:
    """Ctrl-C twice (SIGINT to the whole process group): exit 130, nothing more printed.

    After a recording long enough for the batched pipeline (whose progress bar made a
    multiprocessing lock in the worker), the worker that dies with the daemon used to leave
    the resource tracker to warn "leaked semaphore objects" on the terminal.
    """
    import signal
    import subprocess
    import sys

    from tests.speech import ENGLISH_TEXT, repeat_wav, speak

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f'[engine]\nname = "local"\n[local]\nworkers = 1\n[journal]\n'
                      f'path = {json.dumps(str(tmp_path / "journal.db"))}\n[log]\n'
                      f'format = "json"\n[http]\nlisten = ""\n[[watch]]\n'
                      f'path = {json.dumps(str(inbox))}\nsettle_seconds = 0.2\n', "utf-8")
    output = tmp_path / "terminal.log"
    with output.open("wb") as terminal:
        proc = subprocess.Popen([sys.executable, "-m", "watcherd", "run", "--config",
                                 str(config)], stdout=terminal, stderr=subprocess.STDOUT,
                                env={**os.environ, **home}, start_new_session=True)
    try:
        def logged(event: str) -> bool:
            assert proc.poll() is None, output.read_text("utf-8", "replace")
            return f'"event": "{event}"' in output.read_text("utf-8", "replace")

        wait_until(lambda: logged("ready"), timeout=120, message="the daemon to be ready")
        # Over two minutes: the batched pipeline.
        repeat_wav(speak(ENGLISH_TEXT, tmp_path / "one.wav"), inbox / "long.wav", 11)
        wait_until(lambda: logged("transcribed"), timeout=300, message="the transcription")
        os.killpg(proc.pid, signal.SIGINT)
        wait_until(lambda: logged("stopping"), timeout=10, message="the first Ctrl-C")
        os.killpg(proc.pid, signal.SIGINT)
        # 130 from the second signal's handler; or, when the first stop had already ended and
        # Python's own handlers were back, death by SIGINT, which a shell also reports as 130.
        assert proc.wait(timeout=30) in (130, -signal.SIGINT)
        wait_until(lambda: not _session_alive(proc.pid), timeout=60,
                   message="every process of the daemon to end")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    printed = output.read_text("utf-8", "replace")
    assert "leaked" not in printed and "Traceback" not in printed, printed
    assert [line for line in printed.splitlines() if not line.startswith("{")] == []
