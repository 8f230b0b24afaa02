"""Bad input: each odd file gets a clear reason in `status` and the daemon carries on.

Every test runs the real daemon against the simulator, drops one kind of bad input, checks the
reason ``watcherd status --json`` shows (``error`` or ``note``), then drops a good recording and
checks that it is still transcribed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, _env, wait_until, write_config
from tests.sim import (
    GladiaSimulator,
    expected_transcript,
    make_corrupt,
    make_sparse_wav,
    make_wav,
)
from tests.unit.test_media import claim_duration, write_audio
from watcherd.journal import Journal

KEY = "sk-test-bad-input-0123456789"
WAV_BYTES_PER_SECOND = 32_000


class Daemon(DaemonProcess):
    """The daemon, optionally started under a command prefix (e.g. to drop capabilities)."""

    def __init__(self, config: Path, log_path: Path, prefix: tuple[str, ...] = ()) -> None:
        super().__init__(config, log_path)
        self.prefix = prefix

    def start(self) -> Daemon:
        """Start ``watcherd run`` (after the prefix); output is appended to the log file."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "watcherd", "run", "--config",
                 str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, env=_env(self.env),
            )
        return self

    def row(self, path: Path) -> dict[str, Any] | None:
        """The status row of one source, if the journal has one."""
        wanted = str(path.resolve()) if path.exists() else str(path)
        return next((r for r in self.status() if r["path"] == wanted), None)

    def wait_row(self, path: Path, state: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until ``path``'s status row is in ``state``; return the row."""
        def found() -> dict[str, Any] | None:
            self._check_alive()
            row = self.row(path)
            return row if row is not None and row["state"] == state else None
        return wait_until(found, timeout=timeout, message=f"{path.name} {state}")


#: How this module's simulator runs (the shared ``sim`` fixture in conftest.py reads it).
SIM_OPTIONS = {"job_seconds": 0.2, "concurrency": 3}




@pytest.fixture
def start(tmp_path: Path, sim: GladiaSimulator, inbox: Path) -> Iterator[Any]:
    """Starts a daemon watching ``inbox`` (optionally under a prefix); kills it afterwards."""
    started: list[Daemon] = []

    def starter(prefix: tuple[str, ...] = (), *, watch: Path | None = None) -> Daemon:
        config = write_config(
            tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
            journal=tmp_path / "state" / "journal.db", watches=[watch or inbox],
            settle_seconds=0.2,
        )
        daemon = Daemon(config, tmp_path / "daemon.log", prefix)
        started.append(daemon)
        daemon.start().wait_for_event("watch_root_started")
        return daemon

    yield starter
    for daemon in started:
        daemon.stop()


def _transcribed(path: Path, data: bytes) -> bool:
    txt, js = path.with_suffix(".txt"), path.with_suffix(".json")
    if not (txt.exists() and js.exists()):
        return False
    job = json.loads(js.read_text(encoding="utf-8"))
    return bool(job["status"] == "done"
                and " ".join(txt.read_text(encoding="utf-8").split()) == expected_transcript(data))


def _good_file_still_works(daemon: Daemon, folder: Path, name: str = "good.wav") -> None:
    path = folder / name
    data = make_wav(path, seconds=0.3, salt=f"good-after-{folder.name}-{name}")
    wait_until(lambda: _transcribed(path, data), timeout=30, message="good file transcribed")
    row = daemon.row(path)
    assert row is not None and row["state"] == "done"
    assert daemon.tracebacks() == []


def _logged(daemon: Daemon, path: Path, words: str) -> dict[str, Any]:
    """The log line about ``path`` whose values mention ``words`` (the reason in the log)."""
    for line in daemon.log_lines():
        if line.get("source") == str(path) and any(
                words in str(v) for k, v in line.items() if k != "source"):
            return line
    raise AssertionError(f"no log line about {path.name} mentions {words!r}")


def _uploaded_sizes(sim: GladiaSimulator) -> list[int]:
    return [u["size"] for u in sim.uploads()]


class TestRefusedLocally:
    """Files Gladia would refuse are refused before any upload, with what to do."""

    def test_empty_file(self, start: Any, inbox: Path, sim: GladiaSimulator) -> None:
        """An empty .wav fails with "empty" and is never uploaded."""
        daemon = start()
        bad = inbox / "empty.wav"
        bad.write_bytes(b"")
        row = daemon.wait_row(bad, "failed")
        assert "empty" in row["error"]
        assert _logged(daemon, bad, "empty")["level"] == "error"
        assert 0 not in _uploaded_sizes(sim)
        _good_file_still_works(daemon, inbox)

    def test_text_with_audio_extension(self, start: Any, inbox: Path,
                                       sim: GladiaSimulator) -> None:
        """Text saved as .mp3 fails locally as "not an audio or video file (it holds text...)"."""
        daemon = start()
        bad = inbox / "notes.mp3"
        bad.write_text("Meeting notes\n- budget\n- schedule\n" * 40, encoding="utf-8")
        row = daemon.wait_row(bad, "failed")
        assert "not an audio or video file" in row["error"] and "text" in row["error"]
        _logged(daemon, bad, "not an audio or video file")
        assert sim.uploads() == []
        _good_file_still_works(daemon, inbox)

    def test_over_1000_mb(self, start: Any, inbox: Path, sim: GladiaSimulator) -> None:
        """A (sparse) 1001 MB file fails with the 1000 MB limit named, and is never uploaded."""
        daemon = start()
        bad = inbox / "huge.wav"
        make_sparse_wav(bad, 1001 * 1024 * 1024)
        row = daemon.wait_row(bad, "failed", timeout=60)
        assert "1000 MB" in row["error"] and "split" in row["error"]
        _logged(daemon, bad, "1000 MB")
        assert sim.uploads() == []
        _good_file_still_works(daemon, inbox)

    def test_over_135_minutes(self, start: Any, inbox: Path, sim: GladiaSimulator) -> None:
        """A sparse WAV whose header says 136 minutes fails with the 135-minute limit named."""
        daemon = start()
        bad = inbox / "long.wav"
        make_sparse_wav(bad, 136 * 60 * WAV_BYTES_PER_SECOND + 44)
        row = daemon.wait_row(bad, "failed", timeout=60)
        assert "136 minutes" in row["error"] and "135-minute" in row["error"]
        _logged(daemon, bad, "135-minute")
        assert sim.uploads() == []
        _good_file_still_works(daemon, inbox)

    def test_two_gib_sparse_wav(self, start: Any, inbox: Path, sim: GladiaSimulator) -> None:
        """A 2 GiB sparse WAV fails with the 1000 MB limit (not as undecodable); no upload."""
        daemon = start()
        bad = inbox / "two-gib.wav"
        make_sparse_wav(bad, 2 * 1024 * 1024 * 1024)
        row = daemon.wait_row(bad, "failed", timeout=90)
        assert "2048 MB" in row["error"] and "1000 MB limit" in row["error"]
        assert "decode" not in row["error"]
        assert sim.uploads() == []
        _good_file_still_works(daemon, inbox)

    @pytest.mark.parametrize(("ext", "container", "codec"),
                             [("mkv", "matroska", "pcm_s16le"), ("webm", "webm", "libopus")])
    def test_long_matroska_header(self, start: Any, inbox: Path, sim: GladiaSimulator,
                                  tmp_path: Path, ext: str, container: str, codec: str) -> None:
        """A one-second MKV/WebM whose header claims 3 hours (mutagen cannot read these; PyAV
        can) fails with the 135-minute limit named, and is never uploaded."""
        daemon = start()
        made = tmp_path / f"made.{ext}"
        write_audio(made, container, codec, 1.0)
        claim_duration(made, 3 * 3600)
        bad = inbox / f"long.{ext}"
        made.rename(bad)
        row = daemon.wait_row(bad, "failed")
        assert "180 minutes" in row["error"] and "135-minute" in row["error"]
        _logged(daemon, bad, "135-minute")
        assert sim.uploads() == []
        _good_file_still_works(daemon, inbox)

    def test_permission_denied(self, start: Any, inbox: Path, sim: GladiaSimulator) -> None:
        """An unreadable file fails with "permission denied" and what to do about it."""
        prefix: tuple[str, ...] = ()
        if os.geteuid() == 0:
            # Root reads anything; without these two capabilities it obeys the mode bits.
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv to drop DAC capabilities")
            prefix = (setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--")
        daemon = start(prefix)
        bad = inbox / "locked.wav"
        make_wav(bad, seconds=0.3, salt="locked")
        bad.chmod(0)
        row = daemon.wait_row(bad, "failed")
        assert "permission denied" in row["error"] and "read access" in row["error"]
        _logged(daemon, bad, "permission denied")
        assert sim.uploads() == []
        _good_file_still_works(daemon, inbox)


class TestRefusedByGladia:
    """Bytes only Gladia can judge are sent, and its verdict is shown."""

    def test_binary_garbage_with_audio_extension(self, start: Any, inbox: Path,
                                                 sim: GladiaSimulator) -> None:
        """Random binary bytes named .wav fail with Gladia's verdict (probably corrupt)."""
        daemon = start()
        bad = inbox / "garbage.wav"
        bad.write_bytes(bytes(range(256)) * 64)
        row = daemon.wait_row(bad, "failed")
        assert "could not transcribe" in row["error"] and "corrupt" in row["error"]
        _logged(daemon, bad, "could not transcribe")
        assert len(sim.jobs()) == 1
        _good_file_still_works(daemon, inbox)

    def test_corrupt_made_by_the_simulator(self, start: Any, inbox: Path,
                                           sim: GladiaSimulator) -> None:
        """The simulator's own corrupt file (text-like noise) is refused before upload."""
        daemon = start()
        bad = inbox / "noise.ogg"
        make_corrupt(bad, size=8192, salt="noise")
        row = daemon.wait_row(bad, "failed")
        assert "not an audio or video file" in row["error"]
        assert sim.uploads() == []
        _good_file_still_works(daemon, inbox)


class TestMovingTargets:
    """Files that vanish or change while they are uploaded."""

    def test_vanishes_while_uploading(self, start: Any, inbox: Path,
                                      sim: GladiaSimulator) -> None:
        """A file deleted mid-upload becomes gone with that reason; no job is created."""
        sim.faults.add("upload", "delay", delay=1.5)
        daemon = start()
        bad = inbox / "brief.wav"
        make_wav(bad, seconds=0.3, salt="brief")
        daemon.wait_row(bad, "uploading")
        bad.unlink()
        row = daemon.wait_row(bad, "gone")
        assert "disappeared" in row["error"]
        _logged(daemon, bad, "disappeared")
        assert sim.jobs() == []
        _good_file_still_works(daemon, inbox)

    def test_changes_while_uploading(self, start: Any, inbox: Path,
                                     sim: GladiaSimulator) -> None:
        """A file rewritten mid-upload is hashed and uploaded again; the job is for the new
        bytes only, and the journal says why it started over."""
        sim.faults.add("upload", "delay", delay=1.5)
        daemon = start()
        path = inbox / "edited.wav"
        make_wav(path, seconds=0.3, salt="first version")
        daemon.wait_row(path, "uploading")
        new = make_wav(path, seconds=0.4, salt="second version")
        wait_until(lambda: _transcribed(path, new), timeout=30, message="new version transcript")
        [job] = sim.jobs()
        assert job["file"]["audio_duration"] == pytest.approx(0.4, abs=0.01)
        assert list(sim.creates_per_content().values()) == [1]
        with Journal.open(daemon.config.parent / "state" / "journal.db", readonly=True) as j:
            source = j.by_path(str(path.resolve()))
            assert source is not None
            reasons = [e["reason"] or "" for e in j.events(source.id)]
        assert any("changed while it was uploading" in r for r in reasons), reasons
        _good_file_still_works(daemon, inbox)


class TestNotFiles:
    """Things in the inbox that are not regular files."""

    def test_directory_named_like_audio(self, start: Any, inbox: Path) -> None:
        """A folder named x.wav is a folder: no row for it, the recording inside is transcribed."""
        daemon = start()
        folder = inbox / "x.wav"
        folder.mkdir()
        inner = folder / "inside.wav"
        data = make_wav(inner, seconds=0.3, salt="inside")
        wait_until(lambda: _transcribed(inner, data), timeout=30, message="inner transcript")
        assert daemon.row(folder) is None
        _good_file_still_works(daemon, inbox)

    def test_symlink_loops_do_not_stop_the_daemon(self, start: Any, inbox: Path) -> None:
        """Looping links (a file link to itself, a pair, a folder link to its parent), present
        at start or made while watching, never become jobs, and the daemon carries on."""
        _make_loops(inbox)
        daemon = start()
        daemon.wait_for_event("scan_finished")
        (inbox / "late.wav").symlink_to("late.wav")
        _good_file_still_works(daemon, inbox)
        loops = {str(inbox / n) for n in ("self.wav", "a.wav", "b.wav", "late.wav")}
        assert not [r for r in daemon.status() if r["path"] in loops and r["state"] != "failed"]

    def test_symlink_loop_reason_in_status(self, start: Any, inbox: Path) -> None:
        """A looping link named like audio shows in status as failed, saying it is a link loop."""
        _make_loops(inbox)
        daemon = start()
        daemon.wait_for_event("scan_finished")
        _good_file_still_works(daemon, inbox)
        row = daemon.row(inbox / "self.wav")
        assert row is not None and row["state"] == "failed"
        assert "symbolic link" in row["error"]


def _make_loops(inbox: Path) -> None:
    (inbox / "self.wav").symlink_to("self.wav")
    (inbox / "a.wav").symlink_to("b.wav")
    (inbox / "b.wav").symlink_to("a.wav")
    (inbox / "sub").mkdir()
    (inbox / "sub" / "up").symlink_to("..", target_is_directory=True)


class TestDiskFull:
    """Outputs that cannot be written wait and retry; never a partial output."""

    @pytest.fixture
    def small_disk(self, tmp_path: Path) -> Iterator[Path]:
        """A 2 MB tmpfs (needs root); unmounted afterwards."""
        mount = tmp_path / "small"
        mount.mkdir()
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a small tmpfs needs root")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        try:
            yield mount
        finally:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)

    def test_disk_full_while_writing_outputs(self, start: Any, small_disk: Path,
                                             sim: GladiaSimulator) -> None:
        """With no space left, the file waits with the reason and no output or temp file
        exists; once space is freed the transcript is written without a new job."""
        inbox = small_disk / "inbox"
        inbox.mkdir()
        path = inbox / "full.wav"
        data = make_wav(path, seconds=0.3, salt="disk-full")
        filler = small_disk / "filler.bin"
        with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
        daemon = start(watch=inbox)
        row = daemon.wait_row(path, "waiting")
        assert "cannot write the transcript" in row["error"]
        assert "No space left" in row["error"]
        _logged(daemon, path, "No space left")
        assert sorted(p.name for p in inbox.iterdir()) == ["full.wav"]
        filler.unlink()
        wait_until(lambda: _transcribed(path, data), timeout=30, message="transcript")
        assert len(sim.jobs()) == 1
        assert sorted(p.name for p in inbox.iterdir()) == ["full.json", "full.txt", "full.wav"]
        _good_file_still_works(daemon, inbox)
