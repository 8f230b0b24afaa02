"""A wild folder: every kind of odd input dropped at once beside ordinary recordings.

The real daemon runs against the simulator. Ordinary files must all be transcribed, each odd
one must end in a clear state with a reason, the daemon must stay alive without a traceback or
an unforeseen error, and no file may cause a hot loop of requests.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, wait_until, write_config
from tests.sim import GladiaSimulator, expected_transcript, make_sparse_wav, make_wav

KEY = "sk-wild-folder-test-key-1"


def _named(folder: Path, raw: bytes) -> Path:
    return Path(os.fsdecode(os.path.join(os.fsencode(folder), raw)))


def _cut_emoji(job: dict[str, Any]) -> dict[str, Any]:
    """The simulator's GET for the file named emoji-cut: a transcript cut mid-emoji."""
    if "emoji-cut" in str((job.get("file") or {}).get("filename")):
        job["result"]["transcription"]["full_transcript"] += " \ud83d"
    return job


@pytest.fixture
def sim() -> Iterator[GladiaSimulator]:
    """A simulator whose plan lacks diarization and that cuts one transcript mid-emoji."""
    with GladiaSimulator(api_key=KEY, job_seconds=0.2, concurrency=3,
                         forbidden_features=("diarization",), job_transform=_cut_emoji) as s:
        yield s


def test_wild_folder(tmp_path: Path, sim: GladiaSimulator) -> None:
    """Ordinary files finish; every odd one ends clearly; no traceback, no hot loop."""
    inbox, fancy = tmp_path / "inbox", tmp_path / "fancy"
    inbox.mkdir()
    fancy.mkdir()
    config = write_config(
        tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
        journal=tmp_path / "state" / "journal.db", watches=[inbox], settle_seconds=0.2,
        extra=f'\n[[watch]]\npath = {json.dumps(str(fancy))}\n'
              '[watch.options]\ndiarization = true\n',
    )
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    daemon.start().wait_for_event("watch_root_started")
    sock = socket.socket(socket.AF_UNIX)
    try:
        started = time.monotonic()
        ordinary = {inbox / f"meeting-{i}.wav": b"" for i in range(8)}
        for path in ordinary:
            ordinary[path] = make_wav(path, seconds=0.3, salt=path.name)

        odd_names = [_named(inbox, raw) for raw in (
            b"caf\xe9 from a windows share.wav", b"two\nlines.wav", b"\x1b[31mred\x1b[0m.wav",
            b'colon: "quoted".wav', b"x" * 244 + b".wav", b"emoji-cut.wav",
        )]
        for i, path in enumerate(odd_names):
            make_wav(path, seconds=0.3, salt=f"odd-{i}")

        fifo = inbox / "pipe.wav"
        os.mkfifo(fifo)
        sock.bind(str(inbox / "sock.mp3"))
        (inbox / "link-to-pipe.wav").symlink_to(fifo)
        (inbox / "loop.wav").symlink_to(inbox / "loop.wav")
        (inbox / "folder.wav").mkdir()
        (inbox / "empty.wav").write_bytes(b"")
        (inbox / "notes.mp3").write_text("meeting notes, not a recording\n" * 20)
        make_sparse_wav(inbox / "huge.wav", 2 * 1024 ** 3)
        make_wav(fancy / "diarize-me.wav", seconds=0.3, salt="fancy")

        expected_failures = {
            inbox / "pipe.wav": "named pipe",
            inbox / "sock.mp3": "socket",
            inbox / "link-to-pipe.wav": "named pipe",
            inbox / "loop.wav": "link",
            inbox / "empty.wav": "empty",
            inbox / "notes.mp3": "not an audio or video file",
            inbox / "huge.wav": "1000 MB",
            fancy / "diarize-me.wav": "plan does not include diarization",
        }

        def rows() -> dict[str, dict[str, Any]]:
            daemon._check_alive()
            return {row["path"]: row for row in daemon.status()}

        def ordinary_done() -> bool:
            have = rows()
            return all(have.get(str(p), {}).get("state") == "done" for p in ordinary)

        wait_until(ordinary_done, timeout=90, message="ordinary files done")
        ordinary_seconds = time.monotonic() - started

        def all_settled() -> dict[str, dict[str, Any]] | None:
            have = rows()
            done = all(have.get(str(p), {}).get("state") == "done" for p in odd_names)
            failed = all(have.get(str(p), {}).get("state") == "failed"
                         for p in expected_failures)
            return have if done and failed else None

        final = wait_until(all_settled, timeout=90, message="every odd file in its end state")
        print(f"ordinary files done after {ordinary_seconds:.1f} s; "
              f"everything settled after {time.monotonic() - started:.1f} s")

        for path, data in ordinary.items():
            text = path.with_suffix(".txt").read_text(encoding="utf-8")
            assert " ".join(text.split()) == expected_transcript(data)
        for path, words in expected_failures.items():
            assert words in (final[str(path)]["error"] or ""), (path, final[str(path)])
        assert str(inbox / "folder.wav") not in final
        # Odd names: their outputs sit next to them under the same raw stem, or shortened.
        for path in odd_names[:4] + odd_names[5:]:
            stem = os.fsencode(path)[: -len(b".wav")]
            assert os.path.exists(stem + b".txt"), path
        long_outputs = [n for n in os.listdir(os.fsencode(inbox))
                        if n.startswith(b"x" * 100) and n.endswith(b".txt")]
        assert len(long_outputs) == 1 and len(long_outputs[0]) <= 255

        # The daemon is alive and calm: no traceback, no unforeseen error, no hot loop.
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert daemon.tracebacks() == []
        events = [line.get("event") for line in daemon.log_lines()]
        assert "source_attempt_failed" not in events
        assert "source_quarantined" not in events
        assert max(sim.creates_per_content().values()) == 1
        gets = [r for r in sim.requests() if r.endpoint == "get"]
        assert len(gets) <= 10 * len(sim.jobs())
        assert daemon.terminate() == 0
    finally:
        sock.close()
        daemon.stop()
