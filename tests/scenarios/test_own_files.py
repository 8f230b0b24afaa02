"""Each run does only its own files (issue 25, items 3 and 9): `transcribe FILE` only FILE, a
daemon only the folders of its own config (and what `transcribe` hands it), and a watch root
that is a file is refused at start like `--watch FILE`."""

from __future__ import annotations

import os
from pathlib import Path

from tests.daemon_harness import DaemonProcess, wait_until, watcherd, write_config
from tests.sim import GladiaSimulator
from tests.sim.media import make_wav
from watcherd.identity import content_key, hash_file, options_json
from watcherd.journal import FileStat, Journal

KEY = "sk-own-files-test-key-25"
DEADLINE = 30.0


def _left_pending(journal_path: Path, path: Path, root: Path) -> None:
    """Record ``path`` as a file an earlier run saw under ``root`` and left pending."""
    with Journal.open(journal_path) as journal:
        journal.observe_many([(str(path), str(root), FileStat.of(os.stat(path)),
                               options_json({}))])


def _row(config: Path, path: Path, env: dict[str, str] | None = None) -> dict[str, object]:
    result = watcherd("status", "--json", "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    import json

    rows = {row["path"]: row for row in json.loads(result.stdout)}
    return rows[str(path)]  # type: ignore[no-any-return]


def test_transcribe_does_only_the_named_file(tmp_path: Path, sim: GladiaSimulator,
                                             inbox: Path) -> None:
    """With no daemon, a file left pending under a watched folder is not transcribed too."""
    journal = tmp_path / "journal.db"
    config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                          journal=journal, watches=[inbox])
    other = inbox / "left.wav"
    make_wav(other, seconds=0.5, salt="left")
    _left_pending(journal, other, inbox)
    named = tmp_path / "named.wav"
    make_wav(named, seconds=0.5, salt="named")
    result = watcherd("transcribe", str(named), "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "named.txt").exists()
    assert not (inbox / "left.txt").exists(), "transcribe did a file it was not given"
    assert _row(config, other)["state"] == "pending"
    assert str(other) not in result.stdout


def test_daemon_leaves_files_of_other_folders_alone_and_says_why(
        tmp_path: Path, sim: GladiaSimulator, inbox: Path) -> None:
    """A file pending under a folder this config does not watch stays pending, with a note;
    a file `transcribe` hands over is still done, even one that was such a file."""
    journal = tmp_path / "journal.db"
    config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                          journal=journal, watches=[inbox])
    elsewhere = tmp_path / "Transcribe"
    elsewhere.mkdir()
    foreign = elsewhere / "foreign.wav"
    make_wav(foreign, seconds=0.5, salt="foreign")
    _left_pending(journal, foreign, elsewhere)
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    try:
        daemon.wait_for_event("ready")
        make_wav(inbox / "mine.wav", seconds=0.5, salt="mine")
        wait_until(lambda: (inbox / "mine.txt").exists(), timeout=DEADLINE,
                   message="the daemon's own file transcribed")
        row = wait_until(lambda: (lambda r: r if r["note"] else None)(_row(config, foreign)),
                         timeout=DEADLINE, message="a note on the foreign file")
        assert row["state"] == "pending"
        assert "not watched by this config" in str(row["note"])
        assert not (elsewhere / "foreign.txt").exists()
        # Handing the same file over says it is wanted: the daemon does it.
        result = watcherd("transcribe", str(foreign), "--config", str(config))
        assert result.returncode == 0, result.stdout + result.stderr
        assert (elsewhere / "foreign.txt").exists()
        assert daemon.terminate() == 0
    finally:
        daemon.stop()


def test_a_watch_root_that_is_a_file_is_refused_at_start(tmp_path: Path) -> None:
    """Exit 2 naming the key, as `--watch FILE`, instead of waiting for a folder to appear."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder\n")
    config = write_config(tmp_path / "config.toml", api_url=None, api_key=None,
                          journal=tmp_path / "journal.db", watches=[a_file])
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    try:
        assert daemon.proc is not None
        code = daemon.proc.wait(timeout=DEADLINE)
    finally:
        daemon.stop()
    text = (tmp_path / "daemon.log").read_text()
    assert code == 2, text
    assert "watch[1].path" in text and "is a file, not a folder" in text


def test_transcribe_does_a_copy_of_a_file_left_pending_elsewhere(
        tmp_path: Path, sim: GladiaSimulator, inbox: Path) -> None:
    """The named file is not held back by a same-content file that nobody here will do."""
    journal = tmp_path / "journal.db"
    config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                          journal=journal, watches=[inbox])
    left = inbox / "left.wav"
    make_wav(left, seconds=0.5, salt="same")
    _left_pending(journal, left, inbox)
    with Journal.open(journal) as opened:
        # Hashed by an earlier run, then left queued: it leads its content.
        queued = opened.by_path(str(left))
        assert queued is not None
        sha256, stat = hash_file(left)
        opened.settle_many([(queued, sha256, content_key(sha256, queued.options_json), stat)])
    copy = tmp_path / "copy.wav"
    copy.write_bytes(left.read_bytes())
    result = watcherd("transcribe", str(copy), "--config", str(config), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "copy.txt").exists()
    assert not (inbox / "left.txt").exists()
