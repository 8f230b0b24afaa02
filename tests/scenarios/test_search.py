"""``watcherd search`` against what a real daemon transcribed (the simulator over real HTTP),
and the search index of a journal from before it, filled by the daemon after READY."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, wait_until, watcherd, write_config
from tests.sim import GladiaSimulator, make_wav

KEY = "sk-test-search-0123456789"
SIM_OPTIONS = {"job_seconds": 0.2, "concurrency": 3}


def _transcribed(tmp_path: Path, sim: GladiaSimulator, inbox: Path, names: list[str]
                 ) -> tuple[Path, DaemonProcess, dict[str, dict[str, Any]]]:
    """A daemon that transcribed ``names``; their jobs (NAME.json) by name."""
    config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                          journal=tmp_path / "state" / "journal.db", watches=[inbox])
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    daemon.wait_for_event("ready")
    for name in names:
        make_wav(inbox / name, seconds=0.5, salt=name)
    jobs = {}
    for name in names:
        js = (inbox / name).with_suffix(".json")
        wait_until(js.exists, timeout=60, message=f"{js.name}")
        jobs[name] = json.loads(js.read_text(encoding="utf-8"))
    wait_until(lambda: sum(r["state"] == "done" for r in daemon.status()) == len(names),
               timeout=30, message="all done")
    return config, daemon, jobs


def _search(config: Path, *args: str) -> tuple[int, Any, str]:
    result = watcherd("search", "--config", str(config), "--json", *args)
    return result.returncode, (json.loads(result.stdout) if result.stdout.strip() else None), \
        result.stderr


def test_search_finds_the_file_and_the_time_it_is_said(
        tmp_path: Path, sim: GladiaSimulator, inbox: Path) -> None:
    config, daemon, jobs = _transcribed(tmp_path, sim, inbox, ["réunion.wav", "other.wav"])
    try:
        utterances = jobs["réunion.wav"]["result"]["transcription"]["utterances"]
        said = utterances[-1]
        phrase = " ".join(said["text"].split()[:3])
        code, hits, _ = _search(config, f'"{phrase}"')
        assert code == 0
        mine = [h for h in hits if h["path"] == str((inbox / "réunion.wav").resolve())]
        assert mine, hits
        # The first utterance that says the phrase (the hit knows where in the recording).
        starts = [u["start"] for u in utterances if phrase.lower() in u["text"].lower()]
        assert mine[0]["start"] in starts
        plain, [(a, b), *_] = mine[0]["snippet"], mine[0]["matches"]
        assert " ".join(plain[a:b].split()).lower() == " ".join(phrase.split()).lower() \
            .rstrip(".?!")
        # Plain output: the time and the path on one line, the snippet marked on the next.
        text = watcherd("search", "--config", str(config), f'"{phrase}"')
        assert text.returncode == 0 and "réunion.wav" in text.stdout and "[" in text.stdout
        # Only files under a folder; since a date in the future: nothing, exit 1.
        assert _search(config, "--folder", str(tmp_path / "elsewhere"), f'"{phrase}"')[:2] \
            == (1, [])
        assert _search(config, "--since", "2999-01-01", f'"{phrase}"')[:2] == (1, [])
    finally:
        assert daemon.terminate() == 0


@pytest.mark.parametrize("query", ["-", '"', "-budget", "*"])
def test_a_query_with_nothing_to_find_is_a_clear_message(
        tmp_path: Path, query: str) -> None:
    config = write_config(tmp_path / "config.toml", api_url=None, api_key=None,
                          journal=tmp_path / "journal.db", watches=[tmp_path])
    from watcherd.journal import Journal

    Journal.open(tmp_path / "journal.db", exclusive=True).close()
    result = watcherd("search", "--config", str(config), "--", query)
    assert result.returncode == 2
    assert result.stderr.startswith("watcherd: the search")
    assert "Traceback" not in result.stderr
    bad_date = watcherd("search", "--config", str(config), "--since", "last tuesday", "x")
    assert bad_date.returncode == 2 and "YYYY-MM-DD" in bad_date.stderr


def test_an_upgraded_journal_is_indexed_after_ready(
        tmp_path: Path, sim: GladiaSimulator, inbox: Path) -> None:
    """Transcripts stored before the index are found once the daemon filled it, after READY."""
    config, daemon, jobs = _transcribed(tmp_path, sim, inbox, ["a.wav", "b.wav"])
    assert daemon.terminate() == 0
    db = sqlite3.connect(tmp_path / "state" / "journal.db")
    db.execute("UPDATE results SET doc_id = NULL")  # as a journal from before the index
    db.commit()
    db.close()
    word = jobs["a.wav"]["result"]["transcription"]["utterances"][0]["text"].split()[0]
    assert _search(config, word)[0] == 1
    again = DaemonProcess(config, tmp_path / "daemon2.log").start()
    try:
        filled = again.wait_for_event("search_index_filled")
        assert filled["transcripts"] == 2
        events = [line.get("event") for line in again.log_lines()]
        assert events.index("ready") < events.index("search_index_filled")
        code, hits, _ = _search(config, word)
        assert code == 0 and str((inbox / "a.wav").resolve()) in {h["path"] for h in hits}
    finally:
        assert again.terminate() == 0


def test_doctor_checks_the_search_index(tmp_path: Path) -> None:
    """In step, behind (a backlog), or missing (a journal from before the index)."""
    from watcherd.journal import FileStat, Journal

    config = write_config(tmp_path / "config.toml", api_url="http://127.0.0.1:9",
                          api_key=KEY, journal=tmp_path / "journal.db", watches=[tmp_path])
    with Journal.open(tmp_path / "journal.db", exclusive=True) as j:
        [s] = j.observe_many([(str(tmp_path / "a.wav"), str(tmp_path), FileStat(1, 1, 1, 1),
                               "{}")])
        s = j.transition(s, "pending", actor="t", content_key="k", sha256="k")
        j.store_result(s, {"result": {"transcription": {"utterances": [
            {"start": 1.0, "end": 2.0, "text": "budget"}]}}})

    def line() -> str:
        out = watcherd("doctor", "--config", str(config)).stdout
        return next(x for x in out.splitlines() if "search index" in x)

    assert "in step with the journal: 1 transcripts" in line()
    db = sqlite3.connect(tmp_path / "journal.db")
    db.execute("UPDATE results SET doc_id = NULL")
    db.commit()
    assert "1 of 1 stored transcripts are not indexed yet" in line()
    for statement in ("DROP TABLE search_fts", "DROP INDEX results_docs",
                      "ALTER TABLE results DROP COLUMN utterances",
                      "ALTER TABLE results DROP COLUMN doc_id", "PRAGMA user_version = 4"):
        db.execute(statement)
    db.commit()
    db.close()
    assert "none yet" in line()
