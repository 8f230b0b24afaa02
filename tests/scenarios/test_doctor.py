"""Tests for watcherd.doctor and the `watcherd doctor` command, against the Gladia simulator."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import structlog
from click.testing import CliRunner, Result

from tests.daemon_harness import write_config
from tests.sim import GladiaSimulator
from watcherd import doctor as doctor_module
from watcherd.cli.ops import doctor
from watcherd.config import Config, WatchConfig, load_config
from watcherd.daemon import engine_for
from watcherd.doctor import (
    check_engine,
    check_inotify,
    check_journal,
    check_root,
    count_folders,
    exit_code,
    format_report,
)
from watcherd.findings import Finding
from watcherd.journal import SCHEMA_VERSION, FileStat, Journal

GOOD_KEY = "doctor-good-key-0123"


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def sim() -> Iterator[GladiaSimulator]:
    """A running Gladia simulator that accepts GOOD_KEY."""
    simulator = GladiaSimulator(api_key=GOOD_KEY).start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The doctor command configures logging; put structlog and the root logger back after."""
    monkeypatch.delenv("GLADIA_API_KEY", raising=False)
    monkeypatch.delenv("WATCHERD_CONFIG", raising=False)
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    """A real, empty watch root."""
    root = tmp_path / "inbox"
    root.mkdir()
    return root


def make_config(tmp_path: Path, sim: GladiaSimulator | None, *, key: str | None = GOOD_KEY,
                watches: list[Path], extra: str = "") -> Path:
    """Write a config for the simulator (or an unused port) and return its path."""
    return write_config(
        tmp_path / "config.toml", api_url=sim.base_url if sim else "http://127.0.0.1:9",
        api_key=key, journal=tmp_path / "state" / "journal.db", watches=watches, extra=extra,
    )


def run_doctor(config: Path) -> Result:
    """Invoke `watcherd doctor --config CONFIG` through click, as the main group would."""
    group = click.Group(commands={"doctor": doctor})
    return CliRunner().invoke(group, ["doctor", "--config", str(config)])


def line_for(output: str, topic: str) -> str:
    """The report line about ``topic``."""
    matches = [ln for ln in output.splitlines() if f"  {topic}" in ln]
    assert matches, f"no line about {topic!r} in:\n{output}"
    return matches[0]


def fill_journal(path: Path, count: int) -> None:
    """Create a real journal at ``path`` holding ``count`` sources."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with Journal.open(path) as journal:
        journal.observe_many(
            (f"/srv/in/{n:05}-{'x' * 200}.wav", "/srv/in", FileStat(n, n, 1, n), "{}")
            for n in range(count)
        )


# -- the whole command against the simulator -------------------------------------------------


def test_doctor_all_ok_against_the_simulator(tmp_path: Path, sim: GladiaSimulator,
                                             inbox: Path) -> None:
    """With a good key, a real root and no journal yet, every check is OK and exit is 0."""
    result = run_doctor(make_config(tmp_path, sim, watches=[inbox]))
    assert result.exit_code == 0, result.output
    assert line_for(result.stdout, "gladia api").startswith("OK")
    assert line_for(result.stdout, f"watch {inbox}").startswith("OK")
    assert line_for(result.stdout, "journal").startswith("OK")
    assert "FAIL" not in result.stdout
    assert GOOD_KEY not in result.output


def test_doctor_reports_a_rejected_key(tmp_path: Path, sim: GladiaSimulator, inbox: Path
                                       ) -> None:
    """A key the API refuses is a FAIL with a fix, exit 1, and the key is never printed."""
    result = run_doctor(make_config(tmp_path, sim, key="wrong-key-xyz", watches=[inbox]))
    assert result.exit_code == 1
    line = line_for(result.stdout, "gladia api")
    assert line.startswith("FAIL") and "rejected" in line
    assert "fix: check the key" in result.stdout
    assert "wrong-key-xyz" not in result.output


def test_doctor_reports_an_outage(tmp_path: Path, sim: GladiaSimulator, inbox: Path) -> None:
    """With the API down, the check says unreachable and points at the network and api_url."""
    sim.set_outage(True)
    result = run_doctor(make_config(tmp_path, sim, watches=[inbox]))
    assert result.exit_code == 1
    line = line_for(result.stdout, "gladia api")
    assert line.startswith("FAIL") and "unreachable" in line
    assert sim.base_url in result.stdout


def test_doctor_reports_a_missing_root(tmp_path: Path, sim: GladiaSimulator) -> None:
    """A watch root that does not exist is a FAIL telling how to create it."""
    missing = tmp_path / "not-there"
    result = run_doctor(make_config(tmp_path, sim, watches=[missing]))
    assert result.exit_code == 1
    assert line_for(result.stdout, f"watch {missing}").startswith("FAIL")
    assert f"mkdir -p {missing}" in result.stdout


def test_doctor_reports_a_corrupt_journal(tmp_path: Path, sim: GladiaSimulator, inbox: Path
                                          ) -> None:
    """A journal with damaged pages fails its integrity check; the fix says what restart does."""
    config = make_config(tmp_path, sim, watches=[inbox])
    journal = tmp_path / "state" / "journal.db"
    fill_journal(journal, 300)
    data = bytearray(journal.read_bytes())
    page = 4096
    assert len(data) > 7 * page
    # Scribble over b-tree pages after the schema page and the pointer-map page (page 2 of
    # a journal with incremental auto-vacuum); the header stays valid.
    for offset in range(3 * page, 6 * page, 97):
        data[offset] = 0xA5
    journal.write_bytes(bytes(data))
    result = run_doctor(config)
    assert result.exit_code == 1
    line = line_for(result.stdout, "journal")
    assert line.startswith("FAIL") and "failed its integrity check" in line
    assert "moves a damaged journal aside" in result.stdout


def test_doctor_exits_2_for_an_unloadable_config(tmp_path: Path) -> None:
    """A config that does not load is exit 2 with the file named, not a report."""
    config = tmp_path / "broken.toml"
    config.write_text("[gladia]\napi_kye = 1\n")
    result = run_doctor(config)
    assert result.exit_code == 2
    assert str(config) in result.stderr and "api_kye" in result.stderr


# -- journal ---------------------------------------------------------------------------------


def test_sound_journal_is_ok_and_counted(tmp_path: Path) -> None:
    """A healthy journal passes quick_check and the report says how many files it knows."""
    path = tmp_path / "journal.db"
    fill_journal(path, 3)
    [finding, size] = check_journal(path)
    assert finding.level == "OK" and "3 files known" in finding.detail
    # What takes the space (issue 26): per table, per file.
    assert size.topic == "journal size" and size.level == "OK"
    assert "sources" in size.detail and "per file" in size.detail


def test_journal_that_is_not_a_database_fails(tmp_path: Path) -> None:
    """A file that is not SQLite at all is reported as damaged."""
    path = tmp_path / "journal.db"
    path.write_bytes(b"this is not a database" * 300)
    [finding] = check_journal(path)
    assert finding.level == "FAIL" and "damaged" in finding.detail
    assert finding.fix is not None and "journal.db.corrupt-" in finding.fix


def test_journal_that_cannot_be_opened_is_not_called_damaged(tmp_path: Path) -> None:
    """A journal path SQLite cannot open (here a folder) is unreadable, not damaged."""
    path = tmp_path / "journal.db"
    path.mkdir()
    [finding] = check_journal(path)
    assert finding.level == "FAIL" and "cannot be read" in finding.detail
    assert finding.fix is not None and "permissions" in finding.fix


def test_journal_from_a_newer_watcherd_fails(tmp_path: Path) -> None:
    """A journal with a newer schema version says to upgrade."""
    path = tmp_path / "journal.db"
    fill_journal(path, 1)
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    [finding] = check_journal(path)
    assert finding.level == "FAIL" and finding.fix == "upgrade watcherd"


def test_journal_check_is_read_only(tmp_path: Path) -> None:
    """Checking the journal leaves its bytes exactly as they were."""
    path = tmp_path / "journal.db"
    fill_journal(path, 5)
    before = path.read_bytes()
    check_journal(path)
    assert path.read_bytes() == before


def test_missing_journal_is_ok_when_its_folder_can_be_made(tmp_path: Path) -> None:
    """No journal yet is fine when the nearest existing folder is writable."""
    [finding] = check_journal(tmp_path / "deep" / "state" / "journal.db")
    assert finding.level == "OK" and "will be created" in finding.detail


# -- watch roots -----------------------------------------------------------------------------


def test_root_that_is_a_file_fails(tmp_path: Path) -> None:
    """A watch path naming a file is a FAIL."""
    path = tmp_path / "a-file"
    path.write_text("x")
    [finding] = check_root(WatchConfig(path=path))
    assert finding.level == "FAIL" and "not a folder" in finding.detail


def test_network_root_with_polling_off_warns(inbox: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    """A root on a network file system warns when poll = "never", and is fine with "auto"."""
    import watcherd.watcher

    # The mount table is the one thing a test cannot change: stand in for an NFS mount.
    monkeypatch.setattr(watcherd.watcher, "is_network_filesystem",
                        lambda path: (True, "nfs4"))
    never = check_root(WatchConfig(path=inbox, poll="never"))
    assert [f.level for f in never] == ["WARN"]
    assert "nfs4" in never[0].detail and never[0].fix is not None
    auto = check_root(WatchConfig(path=inbox, poll="auto"))
    assert all(f.level == "OK" for f in auto)
    assert any("polling" in f.detail for f in auto)


# -- inotify ---------------------------------------------------------------------------------


def make_tree(root: Path, folders: int) -> None:
    """Create ``folders`` subfolders under ``root`` (nested a little)."""
    for n in range(folders):
        (root / f"d{n % 3}" / f"e{n}").mkdir(parents=True, exist_ok=True)


def limits(tmp_path: Path, watches: int) -> Path:
    """A stand-in for /proc/sys/fs/inotify with this max_user_watches."""
    folder = tmp_path / "inotify"
    folder.mkdir(exist_ok=True)
    (folder / "max_user_watches").write_text(f"{watches}\n")
    return folder


def test_inotify_over_the_limit_fails(tmp_path: Path, inbox: Path) -> None:
    """More folders than max_user_watches is a FAIL with the sysctl fix."""
    make_tree(inbox, 9)  # 3 + 9 subfolders, plus the root: 13
    finding = check_inotify([WatchConfig(path=inbox)], limits_dir=limits(tmp_path, 10))
    assert finding.level == "FAIL"
    assert finding.fix is not None and "sysctl fs.inotify.max_user_watches=" in finding.fix


def test_inotify_near_the_limit_warns_and_far_below_is_ok(tmp_path: Path, inbox: Path) -> None:
    """Over half the limit warns (others share it); well below is OK with the count."""
    make_tree(inbox, 9)
    watches = [WatchConfig(path=inbox)]
    assert check_inotify(watches, limits_dir=limits(tmp_path, 20)).level == "WARN"
    ok = check_inotify(watches, limits_dir=limits(tmp_path, 1000))
    assert ok.level == "OK" and "13 folders" in ok.detail


def test_inotify_counts_only_native_recursive_watching(tmp_path: Path, inbox: Path) -> None:
    """Polled roots use no watches and non-recursive roots use one."""
    make_tree(inbox, 9)
    polled = check_inotify([WatchConfig(path=inbox, poll="always")],
                           limits_dir=limits(tmp_path, 5))
    assert polled.level == "OK" and "0 folders" in polled.detail
    flat = check_inotify([WatchConfig(path=inbox, recursive=False)],
                         limits_dir=limits(tmp_path, 5))
    assert flat.level == "OK" and "1 folder to watch" in flat.detail


def test_inotify_without_limits_file_is_ok(tmp_path: Path, inbox: Path) -> None:
    """Where there is no inotify (no /proc file), there is no limit to check."""
    finding = check_inotify([WatchConfig(path=inbox)], limits_dir=tmp_path / "none")
    assert finding.level == "OK" and "no inotify" in finding.detail


def test_count_folders_stops_at_the_limit_and_the_deadline(inbox: Path) -> None:
    """The walk is bounded: it stops past the limit, and at once when the deadline passed."""
    make_tree(inbox, 30)
    assert count_folders(inbox, limit=1000, deadline=time.monotonic() + 60) == (34, True)
    count, complete = count_folders(inbox, limit=5, deadline=time.monotonic() + 60)
    assert not complete and count == 6
    assert count_folders(inbox, limit=1000, deadline=time.monotonic() - 1) == (0, False)


def test_walk_that_runs_out_of_time_warns(tmp_path: Path, inbox: Path) -> None:
    """When counting stops on the time budget, the report says the count is incomplete."""
    make_tree(inbox, 5)
    finding = check_inotify([WatchConfig(path=inbox)], limits_dir=limits(tmp_path, 10**6),
                            walk_seconds=-1)
    assert finding.level == "WARN" and "stopped counting" in finding.detail


# -- engine and key --------------------------------------------------------------------------


def config_for(tmp_path: Path, text: str) -> Config:
    """Load a config written from ``text``."""
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(path, env={})


def levels(findings: list[Finding]) -> dict[str, str]:
    """topic -> level."""
    return {f.topic: f.level for f in findings}


def test_no_key_and_no_local_engine_fails(tmp_path: Path) -> None:
    """Without a key (and no local engine) nothing can be transcribed: FAIL with the fix."""
    found = check_engine(config_for(tmp_path, ""), local_installed=False)
    assert levels(found) == {"engine": "FAIL", "local engine": "OK"}
    fix = next(f.fix for f in found if f.topic == "engine")
    assert fix is not None and "GLADIA_API_KEY" in fix


def test_engine_gladia_without_key_says_run_would_refuse(tmp_path: Path) -> None:
    """[engine] name = "gladia" with no key is what makes `watcherd run` exit 2: a FAIL."""
    found = check_engine(config_for(tmp_path, '[engine]\nname = "gladia"\n'),
                         local_installed=None)
    assert levels(found) == {"engine": "FAIL"}
    assert "would refuse" in found[0].detail


def test_engine_verdict_agrees_with_the_daemon(tmp_path: Path) -> None:
    """With no key and the local engine present, doctor says what the daemon would do."""
    config = config_for(tmp_path, "")
    found = levels(check_engine(config, local_installed=True))
    assert found["engine"] == ("OK" if engine_for(config) else "FAIL")
    assert found["local engine"] == "OK"


def test_local_engine_missing_when_chosen_fails(tmp_path: Path) -> None:
    """[engine] name = "local" without the local engine installed is a FAIL with the fix."""
    found = check_engine(config_for(tmp_path, '[engine]\nname = "local"\n'),
                         local_installed=False)
    assert levels(found)["local engine"] == "FAIL"
    assert any(f.fix and "watcherd[local]" in f.fix for f in found)


def test_key_origin_is_shown_not_the_key(tmp_path: Path) -> None:
    """The engine check names where the key came from and never the key itself."""
    config = config_for(tmp_path, '[gladia]\napi_key = "very-secret-key"\n')
    [engine, _] = check_engine(config, local_installed=False)
    assert engine.level == "OK" and "[gladia] api_key" in engine.detail
    assert "very-secret-key" not in format_report([engine])


def test_no_watches_fails(tmp_path: Path) -> None:
    """A config with nothing to watch fails: `watcherd run` would refuse it."""
    found = doctor_module.check_config(config_for(tmp_path, ""))
    assert levels(found)["watches"] == "FAIL"


# -- report ----------------------------------------------------------------------------------


def test_report_shows_fixes_and_exit_code_ignores_warnings() -> None:
    """Fixes are printed under non-OK lines only; warnings alone still exit 0."""
    findings = [Finding("OK", "a", "fine", "never shown"), Finding("WARN", "b", "hm", "do x")]
    text = format_report(findings)
    assert "never shown" not in text
    assert "WARN  b: hm\n      fix: do x" in text
    assert text.endswith("0 failed, 1 warning")
    assert exit_code(findings) == 0
    assert exit_code([*findings, Finding("FAIL", "c", "broken")]) == 1
    assert format_report([Finding("OK", "a", "fine")]).endswith("all checks passed")


def test_doctor_compares_options_with_gladias_published_definition(
        tmp_path: Path, sim: GladiaSimulator, inbox: Path) -> None:
    """An option neither watcherd nor Gladia's definition has is a WARN naming it (advice:
    exit 0); known options give one OK line for the comparison."""
    result = run_doctor(make_config(tmp_path, sim, watches=[inbox]))
    assert line_for(result.stdout, "gladia options").startswith("OK")
    assert "every option is in Gladia's definition" in result.stdout
    config = write_config(
        tmp_path / "odd.toml", api_url=sim.base_url, api_key=GOOD_KEY,
        journal=tmp_path / "state" / "journal.db", watches=[inbox],
        options={"diarisation": True, "diarization_config": {"speakers": 2}})
    result = run_doctor(config)
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.stdout.splitlines() if "gladia options" in ln]
    assert any(ln.startswith("WARN") and "'diarisation'" in ln and "diarization" in ln
               for ln in lines), result.stdout
    assert any("diarization_config.speakers" in ln for ln in lines), result.stdout


def test_doctor_without_the_definition_only_notes_it(tmp_path: Path, sim: GladiaSimulator,
                                                    inbox: Path) -> None:
    sim.faults.add("definition", "status", status=503)
    result = run_doctor(make_config(tmp_path, sim, watches=[inbox]))
    line = line_for(result.stdout, "gladia options")
    assert line.startswith("OK") and "advice only" in line
    assert result.exit_code == 0, result.output
