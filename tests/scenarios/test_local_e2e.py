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

from tests.daemon_harness import DaemonProcess, wait_until, watcherd, write_config
from tests.local_daemon import offline_env
from tests.speech import speak, word_error_rate

SENTENCE = ("The quick brown fox jumps over the lazy dog. "
            "Please send me the quarterly figures before Friday afternoon.")


@pytest.fixture
def no_key_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no key, no config, and every hub download poisoned."""
    return {**offline_env(tmp_path), "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9"}


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
        # Outputs appear one by one (each atomically): wait for the whole set.
        wait_until(lambda: txt.exists() and dropped.with_suffix(".json").exists(),
                   timeout=180, message="local transcript")
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


class TestPerFolderEngine:
    """A folder can insist on the local engine; a Gladia folder can fall back to it."""

    def test_private_folder_never_reaches_gladia(self, tmp_path: Path,
                                                 no_key_env: dict[str, str]) -> None:
        """engine = "local" in one watch: its file is transcribed locally and never uploaded,
        while the other folder's file goes to Gladia."""
        from tests.sim import GladiaSimulator, make_wav

        with GladiaSimulator(api_key="k-123456", job_seconds=0.2) as sim:
            private, shared = tmp_path / "private", tmp_path / "shared"
            private.mkdir()
            shared.mkdir()
            config = write_config(
                tmp_path / "c.toml", api_url=sim.base_url, api_key="k-123456",
                journal=tmp_path / "j.db", watches=[shared],
                extra=f'\n[[watch]]\npath = "{private}"\nengine = "local"\n')
            # The simulator is on loopback: keep the poisoned proxy for everything else.
            env = no_key_env | {"NO_PROXY": "127.0.0.1,localhost"}
            daemon = DaemonProcess(config, tmp_path / "d.log", env=env).start()
            try:
                daemon.wait_for_event("ready", timeout=120)
                speech = speak(SENTENCE, tmp_path / "s.wav")
                (private / "secret.wav").write_bytes(speech.read_bytes())
                make_wav(shared / "public.wav", seconds=0.3, salt="public")
                wait_until(lambda: (private / "secret.txt").exists()
                           and (shared / "public.txt").exists(), timeout=180,
                           message="both transcripts")
                assert json.loads((private / "secret.json").read_text())["engine"] == "local"
                assert word_error_rate(SENTENCE, (private / "secret.txt").read_text()) < 0.25
                assert [u["filename"] for u in sim.uploads()] == ["public.wav"]
                assert daemon.terminate() == 0
            finally:
                daemon.stop()

    def test_fallback_to_local_when_gladia_is_down(self, tmp_path: Path,
                                                   no_key_env: dict[str, str]) -> None:
        """fallback = "local": with the API down past fallback_after_seconds, the file is
        transcribed locally (the outputs say local) and no Gladia job is ever made."""
        from tests.sim import GladiaSimulator

        with GladiaSimulator(api_key="k-123456", job_seconds=0.2) as sim:
            inbox = tmp_path / "inbox"
            inbox.mkdir()
            config = write_config(
                tmp_path / "c.toml", api_url=sim.base_url, api_key="k-123456",
                journal=tmp_path / "j.db", watches=[],
                extra=(f'\n[engine]\nfallback_after_seconds = 1\n'
                       f'\n[[watch]]\npath = "{inbox}"\nfallback = "local"\n'))
            sim.set_outage(True)
            # The simulator is on loopback: keep the poisoned proxy for everything else.
            env = no_key_env | {"NO_PROXY": "127.0.0.1,localhost"}
            daemon = DaemonProcess(config, tmp_path / "d.log", env=env).start()
            try:
                daemon.wait_for_event("ready", timeout=120)
                speech = speak(SENTENCE, tmp_path / "s.wav")
                (inbox / "memo.wav").write_bytes(speech.read_bytes())
                wait_until((inbox / "memo.txt").exists, timeout=180, message="transcript")
                assert json.loads((inbox / "memo.json").read_text())["engine"] == "local"
                assert any(line.get("event") == "fallback_to_local"
                           for line in daemon.log_lines())
                sim.set_outage(False)
                assert sim.jobs() == []
                assert daemon.terminate() == 0
            finally:
                daemon.stop()

    def test_gladia_folder_without_key_refused(self, tmp_path: Path,
                                               no_key_env: dict[str, str]) -> None:
        """engine = "gladia" on a watch with no key: exit 2 naming the folder."""
        config = write_config(tmp_path / "c.toml", api_url=None, api_key=None,
                              journal=tmp_path / "j.db", watches=[],
                              extra=f'\n[[watch]]\npath = "{tmp_path}"\nengine = "gladia"\n')
        result = watcherd("run", "--config", str(config), env=no_key_env)
        assert result.returncode == 2
        assert "GLADIA_API_KEY" in result.stderr and str(tmp_path) in result.stderr
