"""Issue 21 against the simulator, with the daemon as a real subprocess: jobs deleted at
Gladia once done (and after a SIGKILL between the intent and the DELETE), never paying twice
with the remote job gone, the monthly hours limit across a restart and across two nodes, an
option Gladia does not know failing only its folder, solaria-3 as a new job, purge-remote,
and per-channel billing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3
import struct
import wave
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon_harness import DaemonProcess, wait_until, watcherd, write_config
from tests.sim import GladiaSimulator, make_wav
from watcherd.credentials import Secret
from watcherd.engines.gladia import GladiaClient

pytest_plugins = ("tests.pg",)

KEY = "sk-test-gladia21-0123456789"
SIM_OPTIONS = {"job_seconds": 0.2}


def _config(tmp_path: Path, sim: GladiaSimulator, inbox: Path, *, name: str = "c",
            extra: str = "", **gladia: Any) -> Path:
    return write_config(tmp_path / f"{name}.toml", api_url=sim.base_url, api_key=KEY,
                        journal=tmp_path / "journal.db", watches=[inbox], gladia=gladia,
                        extra=extra)


def remote_jobs(db: Path) -> list[dict[str, Any]]:
    """The journal's remote_jobs rows, read as another process would."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM remote_jobs")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def done(path: Path) -> bool:
    try:
        job: dict[str, Any] = json.loads(path.with_suffix(".json").read_text("utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return job.get("status") == "done"


def row_of(daemon: DaemonProcess, path: Path) -> dict[str, Any] | None:
    return next((r for r in daemon.status() if r["path"] == str(path)), None)


# -- deletes -------------------------------------------------------------------------------------


def test_delete_after_done_survives_a_sigkill_between_intent_and_delete(
        tmp_path: Path, sim: GladiaSimulator, inbox: Path, daemons: list[DaemonProcess]) -> None:
    """The intent is in the journal before the DELETE; killed while the DELETE is held, the
    next start sends it again (Gladia's 404 then counts as deleted). With the job gone, a
    copy of the file and a lost journal still pay nothing twice (stored result, NAME.json)."""
    db = tmp_path / "journal.db"
    config = _config(tmp_path, sim, inbox, delete_after="done")
    sim.hold_deletes()
    daemon = DaemonProcess(config, tmp_path / "d1.log").start()
    daemons.append(daemon)
    data = make_wav(inbox / "a.wav", seconds=0.5, salt="delete-crash")
    wait_until(lambda: sim.delete_requests() == 1, timeout=30, message="the DELETE sent")
    (row,) = remote_jobs(db)
    assert row["delete_wanted_at"] is not None and row["deleted_at"] is None
    assert done(inbox / "a.wav")
    daemon.kill()
    sim.release_deletes()  # Gladia acts on the held request; its answer reaches nobody
    wait_until(lambda: sim.is_deleted(row["job_id"]), timeout=10, message="job deleted")

    again = DaemonProcess(config, tmp_path / "d2.log").start()
    daemons.append(again)
    wait_until(lambda: remote_jobs(db)[0]["deleted_at"] is not None, timeout=30,
               message="the resumed delete confirmed")
    assert sim.delete_requests() == 2
    assert any(line.get("event") == "job_deleted_at_gladia" for line in again.log_lines())

    # The remote job is gone: a copy is finished from the stored result...
    shutil.copyfile(inbox / "a.wav", inbox / "copy.wav")
    wait_until(lambda: done(inbox / "copy.wav"), timeout=30, message="the copy transcribed")
    assert again.terminate() == 0
    # ...and a lost journal is rebuilt from the NAME.json files, without a new job.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    third = DaemonProcess(config, tmp_path / "d3.log").start()
    daemons.append(third)
    wait_until(lambda: {r["state"] for r in third.status()} == {"done"}
               and len(third.status()) == 2, timeout=30, message="journal rebuilt")
    assert sim.creates_per_content() == {hashlib.sha256(data).hexdigest(): 1}
    assert third.terminate() == 0
    assert [*daemon.tracebacks(), *again.tracebacks(), *third.tracebacks()] == []
    assert sim.internal_errors() == []


def test_delete_after_is_per_watch(tmp_path: Path, sim: GladiaSimulator,
                                   daemons: list[DaemonProcess]) -> None:
    """[gladia] delete_after = "done", one watch keeps its jobs with delete_after = "never"."""
    gone, kept = tmp_path / "gone", tmp_path / "kept"
    gone.mkdir()
    kept.mkdir()
    config = write_config(tmp_path / "c.toml", api_url=sim.base_url, api_key=KEY,
                          journal=tmp_path / "journal.db", watches=[gone, kept],
                          gladia={"delete_after": "done"}, extra='delete_after = "never"\n')
    daemon = DaemonProcess(config, tmp_path / "d.log").start()
    daemons.append(daemon)
    make_wav(gone / "a.wav", seconds=0.3, salt="per-watch-a")
    make_wav(kept / "b.wav", seconds=0.3, salt="per-watch-b")
    wait_until(lambda: done(gone / "a.wav") and done(kept / "b.wav"), timeout=30,
               message="both transcribed")
    wait_until(lambda: sim.delete_requests() == 1, timeout=30, message="one delete")
    jobs = {j["custom_metadata"]["wf_file"]: j["id"] for j in sim.jobs()}
    assert sim.is_deleted(jobs["a.wav"]) and not sim.is_deleted(jobs["b.wav"])
    assert daemon.terminate() == 0


# -- hours and the monthly limit -------------------------------------------------------------


def test_monthly_limit_pauses_remote_work_across_a_restart(
        tmp_path: Path, sim: GladiaSimulator, inbox: Path, daemons: list[DaemonProcess]) -> None:
    """2 s billed of a 3 s limit: the next 2 s file waits with the month's reason, also after
    a restart; status --usage counts the hours against monthly_hours."""
    limit = 3 / 3600
    config = _config(tmp_path, sim, inbox, monthly_hours_limit=limit, monthly_hours=1,
                     price_per_hour=0.6)
    daemon = DaemonProcess(config, tmp_path / "d1.log").start()
    daemons.append(daemon)
    make_wav(inbox / "a.wav", seconds=2, salt="limit-a")
    wait_until(lambda: done(inbox / "a.wav"), timeout=30, message="a.wav transcribed")
    make_wav(inbox / "b.wav", seconds=2, salt="limit-b")

    def waiting() -> dict[str, Any] | None:
        row = row_of(daemon, inbox / "b.wav")
        return row if row and row["state"] == "waiting" else None

    row = wait_until(waiting, timeout=30, message="b.wav held by the limit")
    assert row["error"].startswith("monthly limit: ") and " h used; resumes on " in row["error"]
    assert daemon.terminate() == 0
    again = DaemonProcess(config, tmp_path / "d2.log").start()
    daemons.append(again)
    again.wait_for_event("watch_root_started")
    # The hours are in the journal: a file dropped after the restart is held back too.
    make_wav(inbox / "c.wav", seconds=2, salt="limit-c")
    later = wait_until(lambda: (r := row_of(again, inbox / "c.wav")) is not None
                       and r["state"] == "waiting" and r, timeout=30,
                       message="c.wav held by the limit after the restart")
    assert later["error"] == row["error"]
    b_row = row_of(again, inbox / "b.wav")
    assert b_row is not None and b_row["state"] == "waiting"
    assert len(sim.jobs()) == 1, "nothing is sent past the limit"
    usage = watcherd("status", "--usage", "--json", "--config", str(config))
    assert usage.returncode == 0, usage.stderr
    report = json.loads(usage.stdout)
    assert report["gladia_hours"] == pytest.approx(2 / 3600)
    assert report["monthly_hours"] == 1 and report["monthly_hours_limit"] == limit
    assert report["estimate"] == pytest.approx(2 / 3600 * 0.6)
    (only,) = report["rows"]
    assert (only["watch"], only["engine"], only["model"], only["jobs"]) == (
        str(inbox), "gladia", "solaria-1", 1)
    text = watcherd("status", "--usage", "--config", str(config)).stdout
    assert "of 1 h" in text and "solaria-1" in text and str(inbox) in text
    assert again.terminate() == 0


def test_monthly_limit_is_shared_by_two_nodes(
        tmp_path: Path, pg_url: str, sim: GladiaSimulator, inbox: Path,
        daemons: list[DaemonProcess]) -> None:
    """Node A's billed hours count for node B: B holds the next file back."""
    def node(name: str) -> DaemonProcess:
        state = tmp_path / f"state-{name}"
        state.mkdir()
        config = write_config(tmp_path / f"{name}.toml", api_url=sim.base_url, api_key=KEY,
                              journal=state / "unused.db", watches=[inbox],
                              watch_ids=["inbox"], journal_url=pg_url, node=name,
                              lease_seconds=2.0, settle_seconds=0.2,
                              gladia={"monthly_hours_limit": 3 / 3600})
        started = DaemonProcess(config, tmp_path / f"{name}.log").start()
        daemons.append(started)
        started.wait_for_event("watch_root_started")
        return started

    a = node("node-a")
    make_wav(inbox / "a.wav", seconds=2, salt="nodes-a")
    wait_until(lambda: done(inbox / "a.wav"), timeout=30, message="node-a transcribing a.wav")
    assert a.terminate() == 0
    b = node("node-b")
    make_wav(inbox / "b.wav", seconds=2, salt="nodes-b")
    wait_until(lambda: (r := row_of(b, inbox / "b.wav")) is not None and r["state"] == "waiting"
               and (r["error"] or "").startswith("monthly limit"), timeout=30,
               message="node-b holding b.wav back")
    assert len(sim.jobs()) == 1
    assert b.terminate() == 0


# -- options Gladia does not know, and the model ------------------------------------------------


def test_unknown_option_fails_only_its_folder_with_gladias_words(
        tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess]) -> None:
    plain, odd = tmp_path / "plain", tmp_path / "odd"
    plain.mkdir()
    odd.mkdir()
    config = write_config(tmp_path / "c.toml", api_url=sim.base_url, api_key=KEY,
                          journal=tmp_path / "journal.db", watches=[plain, odd],
                          extra="[watch.options]\ndiarizaton = true\n")
    daemon = DaemonProcess(config, tmp_path / "d.log").start()
    daemons.append(daemon)
    warning = daemon.wait_for_event("config_warning")
    assert 'did you mean "diarization"?' in warning["warning"] and str(odd) in warning["warning"]
    make_wav(plain / "a.wav", seconds=0.3, salt="unknown-a")
    make_wav(odd / "b.wav", seconds=0.3, salt="unknown-b")
    wait_until(lambda: done(plain / "a.wav"), timeout=30, message="the plain folder works")
    row = wait_until(lambda: (r := row_of(daemon, odd / "b.wav")) is not None
                     and r["state"] == "failed" and r, timeout=30, message="b.wav failed")
    assert "about the option diarizaton" in row["error"]
    assert "property diarizaton should not exist" in row["error"]
    assert daemon.terminate() == 0


def test_solaria_3_is_a_new_job_and_unchanged_options_reuse_the_result(
        tmp_path: Path, sim: GladiaSimulator, inbox: Path, daemons: list[DaemonProcess]) -> None:
    config = _config(tmp_path, sim, inbox)
    daemon = DaemonProcess(config, tmp_path / "d.log").start()
    daemons.append(daemon)
    path = inbox / "a.wav"
    make_wav(path, seconds=0.3, salt="solaria")
    wait_until(lambda: done(path), timeout=30, message="a.wav transcribed")
    first = row_of(daemon, path)
    assert first is not None and first["model"] == "solaria-1"
    # Unchanged options: the stored result is reused.
    assert watcherd("retry", "--reprocess", str(path), "--config", str(config)).returncode == 0
    wait_until(lambda: (r := row_of(daemon, path)) is not None and r["state"] == "done"
               and r["updated_at"] != first["updated_at"], timeout=30, message="redone")
    assert len(sim.jobs()) == 1
    switched = write_config(tmp_path / "c.toml", api_url=sim.base_url, api_key=KEY,
                            journal=tmp_path / "journal.db", watches=[inbox],
                            options={"model": "solaria-3",
                                     "language_config": {"languages": ["en"]}})
    assert watcherd("retry", "--reprocess", str(path), "--config", str(switched)).returncode == 0
    wait_until(lambda: len(sim.jobs()) == 2 and done(path)
               and (r := row_of(daemon, path)) is not None and r["state"] == "done",
               timeout=30, message="a solaria-3 job")
    assert sim.jobs()[-1]["request_params"]["model"] == "solaria-3"
    assert row_of(daemon, path)["model"] == "solaria-3"  # type: ignore[index]
    assert daemon.terminate() == 0


# -- purge-remote --------------------------------------------------------------------------------


def test_purge_remote_deletes_only_watcherds_finished_jobs(
        tmp_path: Path, sim: GladiaSimulator, inbox: Path, daemons: list[DaemonProcess]) -> None:
    config = _config(tmp_path, sim, inbox)
    daemon = DaemonProcess(config, tmp_path / "d.log").start()
    daemons.append(daemon)
    for i in range(3):
        make_wav(inbox / f"f{i}.wav", seconds=0.3, salt=f"purge-{i}")
    wait_until(lambda: all(done(inbox / f"f{i}.wav") for i in range(3)), timeout=30,
               message="three files transcribed")
    assert daemon.terminate() == 0

    async def foreign() -> str:
        other = tmp_path / "other.wav"
        make_wav(other, seconds=0.3, salt="not-ours")
        async with GladiaClient(sim.base_url, Secret(KEY)) as client:
            uploaded = await client.upload(other, expected_size=other.stat().st_size)
            created = await client.create({"audio_url": uploaded.audio_url})
            return created.id

    theirs = asyncio.run(foreign())
    sim.wait_idle(10)
    dry = watcherd("purge-remote", "--dry-run", "--config", str(config))
    assert dry.returncode == 0, dry.stderr
    listed = [line for line in dry.stdout.splitlines() if line.startswith("would delete ")
              and ".wav, created " in line]
    assert len(listed) == 3 and sim.delete_requests() == 0
    assert "would delete 3 jobs" in dry.stdout
    kept = watcherd("purge-remote", "--older-than", "1", "--config", str(config))
    assert kept.returncode == 0 and "deleted 0 jobs" in kept.stdout  # all made just now
    purged = watcherd("purge-remote", "--config", str(config))
    assert purged.returncode == 0, purged.stderr
    ours = [j["id"] for j in sim.jobs() if j["id"] != theirs]
    assert all(sim.is_deleted(j) for j in ours) and not sim.is_deleted(theirs)
    assert {r["deleted_at"] is not None for r in remote_jobs(tmp_path / "journal.db")} == {True}


# -- the simulator: billing per distinct channel ------------------------------------------------


def _stereo(path: Path, *, same: bool) -> None:
    frames = bytearray()
    for i in range(16000):
        left = int(8000 * ((i % 80) / 80 - 0.5))
        right = left if same else -left + (i % 7)
        frames += struct.pack("<hh", left, right)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(frames))


@pytest.mark.parametrize(("same", "billed"), [(True, 1.0), (False, 2.0)])
def test_channels_that_differ_are_billed_each(tmp_path: Path, sim: GladiaSimulator,
                                              same: bool, billed: float) -> None:
    path = tmp_path / "stereo.wav"
    _stereo(path, same=same)
    with httpx.Client(base_url=sim.base_url, headers={"x-gladia-key": KEY}) as client:
        with path.open("rb") as f:
            url = client.post("/v2/upload", files={"audio": ("s.wav", f)}).json()["audio_url"]
        job_id = client.post("/v2/pre-recorded", json={"audio_url": url}).json()["id"]
        sim.wait_idle(10)
        job = client.get(f"/v2/pre-recorded/{job_id}").json()
        metadata = job["result"]["metadata"]
        assert metadata["billing_time"] == pytest.approx(billed)
        assert metadata["number_of_distinct_channels"] == (1 if same else 2)
        assert job["request_params"]["model"] == "solaria-1"
        # Deletable once done; gone afterwards.
        assert client.delete(f"/v2/pre-recorded/{job_id}").status_code == 202
        assert client.get(f"/v2/pre-recorded/{job_id}").status_code == 404
        assert client.delete(f"/v2/pre-recorded/{job_id}").status_code == 404


def test_over_limit_local_sends_files_to_the_local_engine(tmp_path: Path,
                                                          sim: GladiaSimulator) -> None:
    """over_limit = "local": with the month's hours used, a file is transcribed locally and
    no Gladia job is made."""
    from tests.local_daemon import offline_env
    from tests.speech import speak
    from watcherd.engines.local.model import local_engine_installed

    if not local_engine_installed():
        pytest.skip("the local extra is not installed: pip install -e '.[local]'")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = _config(tmp_path, sim, inbox, monthly_hours_limit=0, over_limit="local")
    env = offline_env(tmp_path) | {"NO_PROXY": "127.0.0.1,localhost"}
    daemon = DaemonProcess(config, tmp_path / "d.log", env=env).start()
    try:
        daemon.wait_for_event("ready", timeout=120)
        speech = speak("Please send me the figures before Friday.", tmp_path / "s.wav")
        (inbox / "memo.wav").write_bytes(speech.read_bytes())
        wait_until((inbox / "memo.txt").exists, timeout=180, message="a local transcript")
        assert json.loads((inbox / "memo.json").read_text())["engine"] == "local"
        assert any(line.get("event") == "over_limit_to_local" for line in daemon.log_lines())
        assert sim.jobs() == []
        assert daemon.terminate() == 0
    finally:
        daemon.stop()
