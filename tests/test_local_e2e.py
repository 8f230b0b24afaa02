"""The offline engine end to end: no API key, no config file, `watcherd run --watch DIR`."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import DaemonProcess, wait_until, watcherd
from tests.speech import speak, word_error_rate

SENTENCE = ("The quick brown fox jumps over the lazy dog. "
            "Please send me the quarterly figures before Friday afternoon.")


@pytest.fixture
def no_key_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no key, no config, and every hub download poisoned."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }


@pytest.fixture
def daemon_proc() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started by the test, killed afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


_SRT_TIME = re.compile(r"(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)")


def _srt_times(text: str) -> list[tuple[float, float]]:
    times = []
    for m in _SRT_TIME.finditer(text):
        h1, m1, s1, ms1, h2, m2, s2, ms2 = (int(g) for g in m.groups())
        times.append((h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000))
    return times


class TestOffline:
    """With no API key the daemon transcribes locally."""

    def test_run_watch_dir_transcribes_offline(
        self, tmp_path: Path, no_key_env: dict[str, str],
        daemon_proc: list[subprocess.Popen[bytes]],
    ) -> None:
        """`watcherd run --watch DIR` with no key: a real spoken sentence becomes a transcript
        with WER < 25%, outputs say the local engine made it, status shows done."""
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        log_path = tmp_path / "daemon.log"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("WATCHERD_", "GLADIA_"))} | no_key_env
        with log_path.open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "watcherd", "run", "--watch",
                                     str(inbox)], stdout=log, stderr=subprocess.STDOUT, env=env)
        daemon_proc.append(proc)
        daemon = DaemonProcess(tmp_path / "none.toml", log_path)
        daemon.proc = proc
        daemon.wait_for_event("ready", timeout=120)
        audio = speak(SENTENCE, tmp_path / "speech.wav")
        dropped = inbox / "memo.wav"
        dropped.write_bytes(audio.read_bytes())
        txt = dropped.with_suffix(".txt")
        wait_until(txt.exists, timeout=180, message="local transcript")
        assert word_error_rate(SENTENCE, txt.read_text()) < 0.25
        job = json.loads(dropped.with_suffix(".json").read_text())
        assert job["engine"] == "local" and job["status"] == "done"
        status = watcherd("status", "--json", env=no_key_env)
        [row] = json.loads(status.stdout)
        assert row["state"] == "done" and row["engine"] == "local"
        assert daemon.terminate() == 0
        assert not any("worker_bug" in str(line) for line in daemon.log_lines())

    def test_transcribe_offline_with_srt(self, tmp_path: Path,
                                         no_key_env: dict[str, str]) -> None:
        """`watcherd transcribe` offline writes a valid SRT with increasing timestamps."""
        config = tmp_path / "c.toml"
        config.write_text(f'[journal]\npath = "{tmp_path / "j.db"}"\n'
                          '[defaults]\noutputs = ["txt", "srt"]\n')
        audio = speak(SENTENCE, tmp_path / "talk.wav")
        result = watcherd("transcribe", str(audio), "--config", str(config), env=no_key_env,
                          timeout=300)
        assert result.returncode == 0, result.stderr
        srt = (tmp_path / "talk.srt").read_text()
        times = _srt_times(srt)
        assert times and all(start < end for start, end in times)
        assert all(a[0] <= b[0] for a, b in itertools.pairwise(times))
        assert srt.startswith("1\n")
