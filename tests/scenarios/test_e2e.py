"""End to end: the real ``watcherd`` process, real folders, the simulator over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import DaemonProcess, wait_until, watcherd, write_config
from tests.sim import GladiaSimulator, expected_transcript, make_wav

KEY = "sk-test-e2e-secret-0123456789"


#: How this module's simulator runs (the shared ``sim`` fixture in conftest.py reads it).
SIM_OPTIONS = {"job_seconds": 0.3, "concurrency": 3}




@pytest.fixture
def daemon_factory(tmp_path: Path, sim: GladiaSimulator, inbox: Path
                   ) -> Iterator[Callable[[], DaemonProcess]]:
    """Builds daemons on a shared config and journal; kills any left running."""
    started: list[DaemonProcess] = []
    config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                          journal=tmp_path / "state" / "journal.db", watches=[inbox])

    class Factory(DaemonProcess):
        def __init__(self) -> None:
            super().__init__(config, tmp_path / "daemon.log")
            started.append(self)

    yield Factory
    for daemon in started:
        daemon.stop()


def _drop(folder: Path, rel: str, salt: str) -> tuple[Path, bytes]:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    data = make_wav(path, seconds=0.5, salt=salt)
    return path, data


def _outputs_ok(path: Path, data: bytes) -> bool:
    txt = path.with_suffix(".txt")
    js = path.with_suffix(".json")
    if not (txt.exists() and js.exists()):
        return False
    job = json.loads(js.read_text(encoding="utf-8"))
    text = " ".join(txt.read_text(encoding="utf-8").split())
    return bool(job["status"] == "done" and text == expected_transcript(data))


class TestHappyPath:
    """Files dropped into a watched folder become transcripts."""

    def test_thirty_files_nested_and_non_ascii(
        self, daemon_factory: Callable[[], DaemonProcess], inbox: Path, sim: GladiaSimulator
    ) -> None:
        """30 files in nested folders with spaces and non-ASCII names each get their own
        transcript and job JSON, status shows all done, and each content made one job."""
        daemon = daemon_factory().start()
        daemon.wait_for_event("starting")
        names = [f"{sub}/{stem} {i}.wav" for i, (sub, stem) in enumerate(
            [("a", "réunion"), ("a/b c", "interview"), ("日本", "会議"), (".", "plain")] * 8)][:30]
        dropped = [_drop(inbox, name, salt=name) for name in names]
        wait_until(lambda: all(_outputs_ok(p, d) for p, d in dropped), timeout=90,
                   message="30 transcripts")
        rows = wait_until(lambda: (r := daemon.status()) and
                          sum(x["state"] == "done" for x in r) == 30 and r,
                          timeout=30, message="30 done rows")
        assert {row["path"] for row in rows} == {str(p.resolve()) for p, _ in dropped}
        assert all(row["job_id"] for row in rows)
        assert set(sim.creates_per_content().values()) == {1}
        assert len(sim.jobs()) == 30
        assert daemon.terminate() == 0
        assert daemon.tracebacks() == []

    def test_file_present_before_start_is_transcribed(
        self, daemon_factory: Callable[[], DaemonProcess], inbox: Path
    ) -> None:
        """The startup scan picks up files that arrived while the daemon was down."""
        path, data = _drop(inbox, "early.wav", salt="early")
        daemon = daemon_factory().start()
        wait_until(lambda: _outputs_ok(path, data), timeout=30, message="transcript")
        assert daemon.terminate() == 0

    def test_copy_of_done_file_makes_no_new_job(
        self, daemon_factory: Callable[[], DaemonProcess], inbox: Path, sim: GladiaSimulator
    ) -> None:
        """Identity is the content: a copy under another name reuses the result."""
        daemon = daemon_factory().start()
        path, data = _drop(inbox, "orig.wav", salt="copy")
        wait_until(lambda: _outputs_ok(path, data), timeout=30, message="first transcript")
        copy = inbox / "sub" / "copy.wav"
        copy.parent.mkdir()
        copy.write_bytes(data)
        wait_until(lambda: _outputs_ok(copy, data), timeout=30, message="copy transcript")
        assert len(sim.jobs()) == 1
        daemon.terminate()

    def test_same_stem_second_source_uses_full_name(
        self, daemon_factory: Callable[[], DaemonProcess], inbox: Path
    ) -> None:
        """talk.wav then talk.WAV (same stem): the second writes talk.WAV.txt."""
        daemon = daemon_factory().start()
        first, data1 = _drop(inbox, "talk.wav", salt="one")
        wait_until(lambda: _outputs_ok(first, data1), timeout=30, message="first")
        data2 = make_wav(inbox / "talk.WAV", seconds=0.5, salt="two")
        wait_until(lambda: (inbox / "talk.WAV.txt").exists(), timeout=30, message="twin txt")
        text = " ".join((inbox / "talk.WAV.txt").read_text(encoding="utf-8").split())
        assert text == expected_transcript(data2)
        assert " ".join((inbox / "talk.txt").read_text().split()) == expected_transcript(data1)
        daemon.terminate()


class TestCrashSafety:
    """SIGKILL at any moment loses nothing and pays for nothing twice."""

    def test_sigkill_in_flight_then_restart(
        self, daemon_factory: Callable[[], DaemonProcess], inbox: Path, sim: GladiaSimulator
    ) -> None:
        """Jobs in flight when the daemon is killed are resumed, not created again."""
        sim.job_seconds = 2.0
        daemon = daemon_factory().start()
        dropped = [_drop(inbox, f"k{i}.wav", salt=f"kill{i}") for i in range(8)]
        wait_until(lambda: len(sim.jobs()) >= 3, timeout=30, message="3 jobs created")
        daemon.kill()
        created_before = len(sim.jobs())
        assert not all(_outputs_ok(p, d) for p, d in dropped)
        sim.job_seconds = 0.3
        again = daemon_factory().start()
        wait_until(lambda: all(_outputs_ok(p, d) for p, d in dropped), timeout=90,
                   message="all transcripts after restart")
        assert set(sim.creates_per_content().values()) == {1}
        assert len(sim.jobs()) == 8 >= created_before
        assert again.terminate() == 0
        assert again.tracebacks() == []

    def test_lost_create_response_adopts_the_job(
        self, daemon_factory: Callable[[], DaemonProcess], inbox: Path, sim: GladiaSimulator
    ) -> None:
        """A create whose response was lost is found by its content key, not made twice."""
        sim.faults.add("create", "lose_response", count=1)
        daemon = daemon_factory().start()
        path, data = _drop(inbox, "lost.wav", salt="lost")
        wait_until(lambda: _outputs_ok(path, data), timeout=60, message="transcript")
        assert len(sim.jobs()) == 1
        assert any(line.get("event") == "job_adopted" for line in daemon.log_lines())
        daemon.terminate()

    def test_sigterm_exits_zero_quickly(
        self, daemon_factory: Callable[[], DaemonProcess], inbox: Path, sim: GladiaSimulator
    ) -> None:
        """SIGTERM drains and exits 0 even with a job in flight; restart finishes it."""
        sim.job_seconds = 5.0
        daemon = daemon_factory().start()
        path, data = _drop(inbox, "slow.wav", salt="slow")
        wait_until(lambda: len(sim.jobs()) == 1, timeout=30, message="job created")
        assert daemon.terminate(timeout=10) == 0
        sim.job_seconds = 0.2
        again = daemon_factory().start()
        wait_until(lambda: _outputs_ok(path, data), timeout=30, message="transcript")
        assert len(sim.jobs()) == 1
        again.terminate()


class TestFailures:
    """Transient trouble waits; permanent trouble fails with a reason."""

    def test_server_errors_are_retried(
        self, daemon_factory: Callable[[], DaemonProcess], inbox: Path, sim: GladiaSimulator
    ) -> None:
        """503s and 429 with Retry-After on upload and create end in one job, done."""
        sim.faults.add("upload", "status", status=503, count=2)
        sim.faults.add("create", "status", status=429, retry_after=1, count=1)
        daemon = daemon_factory().start()
        path, data = _drop(inbox, "flaky.wav", salt="flaky")
        wait_until(lambda: _outputs_ok(path, data), timeout=60, message="transcript")
        assert len(sim.jobs()) == 1
        daemon.terminate()

    def test_job_error_5xx_gets_new_job_4xx_fails(
        self, daemon_factory: Callable[[], DaemonProcess], inbox: Path, sim: GladiaSimulator
    ) -> None:
        """A job that fails on Gladia's side is retried with a new job; bad media fails."""
        sim.fail_next_jobs(1, error_code=500)
        daemon = daemon_factory().start()
        path, data = _drop(inbox, "retry.wav", salt="5xx")
        wait_until(lambda: _outputs_ok(path, data), timeout=60, message="transcript")
        assert len(sim.jobs()) == 2
        bad = inbox / "bad.wav"
        bad.write_bytes(b"this is not audio at all" * 50)
        row = wait_until(
            lambda: next((r for r in daemon.status()
                          if r["path"] == str(bad.resolve()) and r["state"] == "failed"), None),
            timeout=60, message="bad file failed")
        # Refused before upload, and the reason asks for the recording, not for a retry.
        assert "not an audio or video file" in row["error"]
        assert "watcherd retry" not in row["error"]
        good, good_data = _drop(inbox, "after.wav", salt="after-bad")
        wait_until(lambda: _outputs_ok(good, good_data), timeout=30, message="good after bad")
        daemon.terminate()

    def test_outage_waits_then_resumes(
        self, daemon_factory: Callable[[], DaemonProcess], inbox: Path, sim: GladiaSimulator
    ) -> None:
        """With the API down files wait (never fail) and finish when it returns."""
        daemon = daemon_factory().start()
        daemon.wait_for_event("starting")
        sim.set_outage(True)
        dropped = [_drop(inbox, f"o{i}.wav", salt=f"outage{i}") for i in range(3)]
        wait_until(lambda: any(r["state"] == "waiting" for r in daemon.status()), timeout=30,
                   message="a waiting row")
        assert not any(r["state"] == "failed" for r in daemon.status())
        sim.set_outage(False)
        wait_until(lambda: all(_outputs_ok(p, d) for p, d in dropped), timeout=60,
                   message="transcripts after outage")
        assert set(sim.creates_per_content().values()) == {1}
        daemon.terminate()


class TestCommands:
    """The one-shot commands and their exit codes."""

    def test_transcribe_one_shot(self, tmp_path: Path, sim: GladiaSimulator) -> None:
        """`watcherd transcribe FILE` writes the transcript and exits 0."""
        src = tmp_path / "one shot.wav"
        data = make_wav(src, seconds=0.5, salt="oneshot")
        config = write_config(tmp_path / "c.toml", api_url=sim.base_url, api_key=KEY,
                              journal=tmp_path / "j.db", watches=[])
        result = watcherd("transcribe", str(src), "--config", str(config))
        assert result.returncode == 0, result.stderr
        assert _outputs_ok(src, data)
        assert "done" in result.stdout

    def test_bad_config_exits_2_with_message(self, tmp_path: Path) -> None:
        """A wrong value names the file and the key, exit code 2."""
        config = tmp_path / "c.toml"
        config.write_text('[defaults]\nsettle_seconds = "fast"\n[[watch]]\npath = "/tmp"\n')
        result = watcherd("run", "--config", str(config))
        assert result.returncode == 2
        assert "settle_seconds" in result.stderr and str(config) in result.stderr
        assert "Traceback" not in result.stderr

    def test_missing_key_with_gladia_engine_exits_2(self, tmp_path: Path) -> None:
        """engine = gladia without a key is one clear message and exit code 2."""
        config = write_config(tmp_path / "c.toml", api_url=None, api_key=None,
                              journal=tmp_path / "j.db", watches=[tmp_path],
                              extra='\n[engine]\nname = "gladia"\n')
        result = watcherd("run", "--config", str(config))
        assert result.returncode == 2
        assert "api_key" in result.stderr and "GLADIA_API_KEY" in result.stderr
        assert not (tmp_path / "j.db").exists()

    def test_unreachable_api_transcribe_exits_1(self, tmp_path: Path) -> None:
        """With the API unreachable, transcribe says so once and exits 1."""
        src = tmp_path / "x.wav"
        make_wav(src, seconds=0.2, salt="x")
        config = write_config(tmp_path / "c.toml", api_url="http://127.0.0.1:9", api_key=KEY,
                              journal=tmp_path / "j.db", watches=[])
        result = watcherd("transcribe", str(src), "--config", str(config))
        assert result.returncode == 1
        assert "cannot reach" in result.stderr
        assert KEY not in result.stderr + result.stdout

    def test_bad_key_exits_2(self, tmp_path: Path, sim: GladiaSimulator) -> None:
        """A rejected key is a config problem: exit 2, message without the key."""
        src = tmp_path / "x.wav"
        make_wav(src, seconds=0.2, salt="x")
        config = write_config(tmp_path / "c.toml", api_url=sim.base_url, api_key="wrong-key-123",
                              journal=tmp_path / "j.db", watches=[])
        result = watcherd("transcribe", str(src), "--config", str(config))
        assert result.returncode == 2
        assert "key" in result.stderr and "wrong-key-123" not in result.stderr

    def test_status_and_retry(self, tmp_path: Path, sim: GladiaSimulator) -> None:
        """A failed file shows in status with its reason; retry queues it again."""
        bad = tmp_path / "bad.wav"
        bad.write_bytes(b"garbage bytes, not audio" * 20)
        config = write_config(tmp_path / "c.toml", api_url=sim.base_url, api_key=KEY,
                              journal=tmp_path / "j.db", watches=[])
        result = watcherd("transcribe", str(bad), "--config", str(config))
        assert result.returncode == 1
        status = watcherd("status", "--json", "--config", str(config))
        [row] = json.loads(status.stdout)
        assert row["state"] == "failed" and row["error"]
        assert set(row) >= {"path", "state", "job_id", "error", "attempts", "updated_at"}
        human = watcherd("status", "--config", str(config))
        assert "failed: 1" in human.stdout
        again = watcherd("retry", str(bad), "--config", str(config))
        assert again.returncode == 0 and "queued again" in again.stdout
        status = watcherd("status", "--json", "--config", str(config))
        assert json.loads(status.stdout)[0]["state"] == "pending"

    def test_reprocess_reuses_result_unless_options_change(
        self, tmp_path: Path, sim: GladiaSimulator
    ) -> None:
        """retry --reprocess: same options rewrite outputs from the stored result (no job);
        new options make exactly one new job."""
        src = tmp_path / "again.wav"
        make_wav(src, seconds=0.3, salt="reprocess")
        config = write_config(tmp_path / "c.toml", api_url=sim.base_url, api_key=KEY,
                              journal=tmp_path / "j.db", watches=[])
        assert watcherd("transcribe", str(src), "--config", str(config)).returncode == 0
        src.with_suffix(".txt").unlink()
        result = watcherd("retry", "--reprocess", str(src), "--config", str(config))
        assert result.returncode == 0 and "queued again" in result.stdout
        assert watcherd("transcribe", str(src), "--config", str(config)).returncode == 0
        assert src.with_suffix(".txt").exists() and len(sim.jobs()) == 1
        write_config(config, api_url=sim.base_url, api_key=KEY, journal=tmp_path / "j.db",
                     watches=[], options={"diarization": True})
        assert watcherd("retry", "--reprocess", str(src), "--config", str(config)).returncode == 0
        assert watcherd("transcribe", str(src), "--config", str(config)).returncode == 0
        assert len(sim.jobs()) == 2
        assert sim.jobs()[-1]["request_params"]["diarization"] is True
        assert "Speaker" in src.with_suffix(".txt").read_text()

    def test_every_documented_command_exists(self) -> None:
        """--help lists each command DESIGN.md promises, and --version answers."""
        result = watcherd("--help")
        for command in ("run", "transcribe", "status", "retry", "doctor", "service"):
            assert f"  {command} " in result.stdout, command
        version = watcherd("--version")
        assert version.returncode == 0 and "watcherd" in version.stdout
