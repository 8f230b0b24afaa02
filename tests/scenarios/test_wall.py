"""The watch root is a wall, in the real daemon: links out are not sent, a folder swapped for a
link mid-job gets no outputs, and the page does not read through a swapped folder.

Each test runs ``watcherd run`` as a subprocess against the simulator, on real folders.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import httpx
import pytest

from tests.daemon_harness import DaemonProcess, free_port, wait_until, write_config
from tests.sim import GladiaSimulator, expected_transcript, make_wav

KEY = "sk-wall-secret-0123456789abcdef"
SIM_OPTIONS = {"job_seconds": 0.2, "concurrency": 3}
OUTSIDE_REASON = "a link to a place outside the watched folders"


def _daemon(tmp_path: Path, sim: GladiaSimulator, inbox: Path, daemons: list[DaemonProcess],
            *, extra: str = "", http_listen: str = "", log: str = "daemon.log"
            ) -> DaemonProcess:
    config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                          journal=tmp_path / "state" / "journal.db", watches=[inbox],
                          extra=extra, http_listen=http_listen)
    daemon = DaemonProcess(config, tmp_path / log)
    daemons.append(daemon)
    return daemon.start()


def _transcribed(path: Path, data: bytes) -> bool:
    txt = path.with_suffix(".txt")
    return txt.exists() and " ".join(txt.read_text().split()) == expected_transcript(data)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rows(daemon: DaemonProcess) -> dict[str, dict[str, object]]:
    return {str(row["path"]): row for row in daemon.status()}


def test_links_out_of_the_root_are_not_sent_and_status_says_why(
        tmp_path: Path, sim: GladiaSimulator, inbox: Path,
        daemons: list[DaemonProcess]) -> None:
    """Links to a private file (at the top, three folders deep, through a link to a link) and
    to a private folder are never uploaded; links inside the root are transcribed."""
    private = tmp_path / "private"
    (private / "meetings").mkdir(parents=True)
    secret = make_wav(private / "secret.wav", salt="wall-secret")
    deep_secret = make_wav(private / "meetings" / "board.wav", salt="wall-board")
    (inbox / "a" / "b" / "c").mkdir(parents=True)
    real = inbox / "a" / "real.wav"
    mine = make_wav(real, salt="wall-mine")
    (inbox / "out.wav").symlink_to(private / "secret.wav")
    (inbox / "a" / "b" / "c" / "deep.wav").symlink_to("../../../../private/secret.wav")
    (inbox / "a" / "hop.wav").symlink_to(inbox / "out.wav")
    (inbox / "a" / "b" / "meetings").symlink_to(private / "meetings")
    (inbox / "a" / "b" / "inside.wav").symlink_to(real)
    daemon = _daemon(tmp_path, sim, inbox, daemons)
    wait_until(lambda: _transcribed(real, mine), timeout=60, message="the real file")

    def all_ignored() -> dict[str, dict[str, object]] | None:
        rows = _rows(daemon)
        wanted = [inbox / "out.wav", inbox / "a" / "b" / "c" / "deep.wav",
                  inbox / "a" / "hop.wav", inbox / "a" / "b" / "meetings"]
        ok = all(OUTSIDE_REASON in str(rows.get(str(p), {}).get("error")) for p in wanted)
        return rows if ok else None
    rows = wait_until(all_ignored, timeout=60, message="every link out shown as ignored")
    assert rows[str(inbox / "out.wav")]["state"] == "failed"
    uploaded = {u["sha256"] for u in sim.uploads()}
    assert _sha(secret) not in uploaded and _sha(deep_secret) not in uploaded
    assert _sha(mine) in uploaded
    # Nothing was written into the private folder, nor next to the links.
    assert sorted(p.name for p in private.rglob("*")) == ["board.wav", "meetings",
                                                          "secret.wav"]
    assert not (inbox / "out.txt").exists()
    assert daemon.terminate() == 0
    assert daemon.tracebacks() == []


def test_follow_links_anywhere_restores_following(
        tmp_path: Path, sim: GladiaSimulator, inbox: Path,
        daemons: list[DaemonProcess]) -> None:
    private = tmp_path / "elsewhere"
    private.mkdir()
    data = make_wav(private / "shared.wav", salt="wall-anywhere")
    (inbox / "shared.wav").symlink_to(private / "shared.wav")
    config_extra = 'follow_links = "anywhere"\n'
    daemon = _daemon(tmp_path, sim, inbox, daemons, extra=config_extra)
    wait_until(lambda: _transcribed(inbox / "shared.wav", data), timeout=60,
               message="the linked file transcribed")
    assert _sha(data) in {u["sha256"] for u in sim.uploads()}
    assert daemon.terminate() == 0


@pytest.mark.parametrize("moved_to", ["inside", "outside"])
def test_a_folder_swapped_for_a_link_mid_job_gets_no_outputs_there(
        tmp_path: Path, sim: GladiaSimulator, inbox: Path,
        daemons: list[DaemonProcess], moved_to: str) -> None:
    """While the job runs, ``sub`` is moved away (within the root, or out of it) and replaced
    by a link to another folder: nothing is ever written into that folder. Moved within the
    root, the transcript lands next to the source where it is now."""
    sim.job_seconds = 4.0
    (inbox / "sub").mkdir()
    source = inbox / "sub" / "talk.wav"
    data = make_wav(source, salt=f"wall-swap-{moved_to}")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "talk.txt").write_text("the victim's own file\n")
    daemon = _daemon(tmp_path, sim, inbox, daemons)
    wait_until(lambda: len(sim.jobs()) >= 1, timeout=60, message="the job created")
    moved = inbox / "moved" if moved_to == "inside" else tmp_path / "moved"
    os.rename(inbox / "sub", moved)
    (inbox / "sub").symlink_to(victim)
    if moved_to == "inside":
        wait_until(lambda: _transcribed(moved / "talk.wav", data), timeout=90,
                   message="the transcript next to the moved source")
    else:
        wait_until(lambda: sim.jobs()[0]["status"] == "done", timeout=60,
                   message="the job done")

        def settled() -> bool:
            row = _rows(daemon).get(str(source))
            return row is not None and row["state"] in ("gone", "failed")
        wait_until(settled, timeout=60, message="the source no longer in flight")
    assert (victim / "talk.txt").read_text() == "the victim's own file\n"
    assert sorted(p.name for p in victim.iterdir()) == ["talk.txt"]
    assert set(sim.creates_per_content().values()) == {1}
    assert daemon.terminate() == 0
    assert daemon.tracebacks() == []


def test_the_page_does_not_read_through_a_swapped_folder(
        tmp_path: Path, sim: GladiaSimulator, inbox: Path,
        daemons: list[DaemonProcess]) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    (inbox / "sub").mkdir()
    source = inbox / "sub" / "note.wav"
    data = make_wav(source, salt="wall-page")
    daemon = _daemon(tmp_path, sim, inbox, daemons, http_listen=f"127.0.0.1:{port}")
    wait_until(lambda: _transcribed(source, data), timeout=60, message="the transcript")
    daemon.wait_for_event("http_started")
    link = wait_until(lambda: re.search(r'href="(/transcript/\d+/txt)"',
                                        httpx.get(base + "/", timeout=10).text),
                      timeout=30, message="the transcript link on the page")[1]
    assert httpx.get(base + link, timeout=10).text.split() == expected_transcript(data).split()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "note.txt").write_text("PRIVATE NOTES\n")
    # Stop the daemon from tracking the move, so the journal still names sub/note.wav.
    daemon.kill()
    os.rename(inbox / "sub", tmp_path / "gone-sub")
    (inbox / "sub").symlink_to(victim)
    daemon = _daemon(tmp_path, sim, inbox, daemons, http_listen=f"127.0.0.1:{port}",
                     log="again.log")
    daemon.wait_for_event("http_started")
    answer = httpx.get(base + link, timeout=10)
    assert "PRIVATE" not in answer.text
    assert answer.status_code == 404
    assert daemon.tracebacks() == []
    daemon.terminate()
