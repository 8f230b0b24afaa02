"""Failure reasons name the cause and the one action that helps (issue 25, item 5).

A file that holds no recording is "not an audio or video file", never a disk problem, and no
reason suggests `watcherd retry` where trying the same bytes again cannot help. The table
goes through the reasons the daemon gives, each made by the code that makes it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.daemon_harness import watcherd, write_config
from tests.sim import GladiaSimulator
from tests.sim.media import make_wav
from watcherd import media, outcomes
from watcherd.config import Secret
from watcherd.engines.gladia.client import GladiaClient
from watcherd.engines.gladia.refusals import refusal_reason
from watcherd.engines.local import local_engine_installed
from watcherd.errors import PermanentGladiaError, SourceError
from watcherd.identity import options_json
from watcherd.journal import FileStat, Journal
from watcherd.retry import RetryPolicy

KEY = "sk-reasons-test-key-25"
TEXT = "Meeting notes\n- budget\n- schedule\n"


def _source_error(call: Callable[[], object]) -> str:
    with pytest.raises(SourceError) as caught:
        call()
    return caught.value.message


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "fake.mp3"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _wav(path: Path, seconds: float) -> Path:
    make_wav(path, seconds=seconds)
    return path


def _recorded(tmp_path: Path, exc: OSError, doing: str) -> str:
    """The reason outcomes.file_problem records for ``exc`` in a real journal."""
    audio = tmp_path / "a.wav"
    make_wav(audio, seconds=0.2)
    with Journal.open(tmp_path / "journal.db") as journal:
        (source,) = journal.observe_many([(str(audio), str(tmp_path),
                                           FileStat.of(os.stat(audio)), options_json({}))])
        outcomes.file_problem(journal, source.id, exc, doing=doing, policy=RetryPolicy())
        recorded = journal.get(source.id)
    assert recorded.last_error is not None
    return recorded.last_error


def _status_error(status: int, body: dict[str, object]) -> str:
    client = GladiaClient("http://127.0.0.1:9", Secret("sk-x"))
    error = client._status_error(httpx.Response(status, json=body), "POST", "job", None)
    assert isinstance(error, PermanentGladiaError)
    return refusal_reason(error)


def _local_decode(path: Path) -> str:
    from watcherd.engines.local import runner

    with pytest.raises(runner._Refused) as caught, path.open("rb") as source:
        runner._decode(source)
    return str(caught.value)


# (name, reason maker, words naming the cause, words of the action, does a retry help?)
Row = tuple[str, Callable[[Path], str], tuple[str, ...], tuple[str, ...], bool]
TABLE: list[Row] = [
    ("text named .mp3, before upload",
     lambda t: _source_error(lambda: media.check_source(_text_file(t), len(TEXT))),
     ("not an audio or video file", "text"), ("replace it",), False),
    ("empty file", lambda t: _source_error(
        lambda: media.check_before_hash(t / "x.wav", 0)), ("empty",), ("replace it",), False),
    ("over the size limit", lambda t: _source_error(
        lambda: media.check_before_hash(_text_file(t), 2000, max_bytes=1000)),
     ("over",), ("split it",), False),
    ("over the length limit", lambda t: _source_error(
        lambda: media.check_before_hash(_wav(t / "long.wav", 3.0), 10_000, max_seconds=1.0)),
     ("lasts",), ("split it",), False),
    ("permission denied", lambda t: media.read_error(PermissionError(errno.EACCES, "x")).message,
     ("permission denied",), ("read access",), True),
    ("I/O error", lambda t: media.read_error(OSError(errno.EIO, "x")).message,
     ("Input/output error",), ("retrying later by itself",), False),
    ("a link loop", lambda t: media.read_error(OSError(errno.ELOOP, "x")).message,
     ("points back at itself",), ("fix or remove the link",), False),
    ("a name the storage refuses, reading", lambda t: _recorded(
        t, OSError(errno.ENAMETOOLONG, "x"), "cannot read the source"),
     ("File name too long",), ("check it (and the storage it is on)",), True),
    ("a FIFO", lambda t: media.not_regular(stat.S_IFIFO | 0o644) or "",
     ("named pipe",), ("ignores it",), False),
    ("disk full writing outputs", lambda t: _recorded(
        t, OSError(errno.ENOSPC, "x"), "cannot write the transcript next to the source"),
     ("No space left",), ("free some space",), False),
    ("a folder in the way of an output", lambda t: _recorded(
        t, IsADirectoryError(errno.EISDIR, "x"), "cannot write the transcript next to the source"),
     ("in the way",), ("move it away",), False),
    ("Gladia: over its upload size", lambda t: _status_error(413, {"message": "too big"}),
     ("larger than Gladia accepts",), ("split it",), False),
    ("Gladia: a plan without the feature", lambda t: _status_error(403, {"message": "plan"}),
     ("plan",), ("change the folder's options",), True),
    ("Gladia: invalid options", lambda t: _status_error(
        422, {"message": "bad", "validation_errors": ["language: unknown"]}),
     ("language: unknown",), ("fix the options",), True),
    ("Gladia: a refusal with no known cause", lambda t: refusal_reason(
        PermanentGladiaError("Gladia refused the job request: nope", status=400)),
     ("nope",), ("fix what Gladia names",), True),
]
if local_engine_installed():
    TABLE.append(("text named .mp3, local engine", lambda t: _local_decode(_text_file(t)),
                  ("not an audio or video file (no audio stream found)",), ("replace it",),
                  False))


@pytest.mark.parametrize(("name", "make", "cause", "action", "retry_helps"), TABLE,
                         ids=[row[0] for row in TABLE])
def test_each_reason_names_the_cause_and_the_action_that_helps(
        tmp_path: Path, name: str, make: Callable[[Path], str], cause: tuple[str, ...],
        action: tuple[str, ...], retry_helps: bool) -> None:
    """Cause and action are both there; `watcherd retry` only where trying again can help."""
    reason = make(tmp_path)
    for words in (*cause, *action):
        assert words in reason, f"{name}: {words!r} missing from {reason!r}"
    assert ("watcherd retry" in reason) is retry_helps, f"{name}: {reason!r}"


@pytest.mark.skipif(not local_engine_installed(), reason="needs the local engine")
def test_text_named_mp3_says_not_audio_locally(tmp_path: Path) -> None:
    """`watcherd transcribe fake.mp3` (local): not audio, not a disk problem, no retry."""
    fake = _text_file(tmp_path)
    config = write_config(tmp_path / "config.toml", api_url=None, api_key=None,
                          journal=tmp_path / "journal.db", watches=[],
                          extra='[engine]\nname = "local"\n')
    result = watcherd("transcribe", str(fake), "--config", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not an audio or video file (no audio stream found)" in result.stdout
    assert "storage" not in result.stdout and "watcherd retry" not in result.stdout
    assert "EINVAL" not in result.stdout


def test_text_named_mp3_says_not_audio_for_gladia(tmp_path: Path, sim: GladiaSimulator) -> None:
    """The same file for Gladia: refused before upload with the same words."""
    fake = _text_file(tmp_path)
    config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                          journal=tmp_path / "journal.db", watches=[])
    result = watcherd("transcribe", str(fake), "--config", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not an audio or video file" in result.stdout
    assert "watcherd retry" not in result.stdout and "storage" not in result.stdout
    assert sim.uploads() == []
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(line.get("event") == "source_failed" for line in lines)
