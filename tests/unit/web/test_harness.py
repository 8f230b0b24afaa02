"""The status page's test harness: a populated journal and a real server on its own loop.

Shared by tests/test_web*.py (the ``web_page`` fixture in conftest.py starts it); it holds no
tests itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from watcherd import outputs
from watcherd.config import HttpConfig
from watcherd.journal import FileStat, Journal, Source
from watcherd.progress import ProgressBoard
from watcherd.web import WebServer, build

_T = TypeVar("_T")
# A name that tries everything a name can: markup, a newline, a bidi override, a non-UTF-8 byte.
NASTY_NAME = "<b>x</b>\n\u202etxt.wav\udce9.wav"


def web_job(text: str = "hello from the status page", *, audio: float = 60.0,
            spent: float = 8.0) -> dict[str, Any]:
    """A finished job object as the journal stores it (local-engine shaped)."""
    return {
        "id": "local-0001", "status": "done", "engine": "local",
        "result": {
            "metadata": {"audio_duration": audio, "transcription_time": spent},
            "transcription": {"full_transcript": text, "languages": ["en"], "utterances": [
                {"start": 0.0, "end": 1.5, "text": text, "language": "en", "speaker": 0,
                 "confidence": 0.9, "channel": 0, "words": []}]},
        },
    }


@dataclass
class WebFiles:
    """The ids of the sources :func:`populate_web_journal` made, by role."""

    failed: int
    nasty: int
    waiting: int
    working: int
    submitted: int
    done: int
    pending: int
    root: Path


def populate_web_journal(journal: Journal, root: Path) -> WebFiles:
    """One source in each interesting situation, with a real transcript for the done one."""
    root.mkdir(parents=True, exist_ok=True)
    st = FileStat(1000, 1, 1, 1)
    names = ["broken.mp3", NASTY_NAME, "offline.wav", "talk.wav", "remote.m4a", "done.wav",
             "new.wav"]
    made = journal.observe_many([(str(root / n), str(root), st, "{}") for n in names])
    failed, nasty, waiting, working, submitted, done, pending = made
    journal.transition(failed, "failed", actor="test",
                       last_error="it cannot be decoded as audio (corrupt); replace the file")
    journal.transition(nasty, "failed", actor="test", last_error="bad <script>alert(1)</script>")
    journal.transition(waiting, "waiting", actor="test", last_error="cannot reach the API",
                       next_attempt_at=time.time() + 120, attempts=2, content_key="kw")
    journal.transition(working, "transcribing", actor="test", engine="local",
                       content_key="kt")
    journal.transition(submitted, "submitted", actor="test", engine="gladia",
                       content_key="ks", job_id="45463597-20b7-4af7-b3b3-f5fb778203ab")
    job = web_job()
    done = journal.transition(done, "pending", actor="test", content_key="kd",
                              sha256="d" * 64)
    journal.store_result(done, job)
    base = root / "done"
    outputs.write_outputs(base, ("txt", "json"), job)
    journal.transition(done, "transcribing", actor="test")
    journal.transition(journal.get(done.id), "done", actor="test", engine="local",
                       done_at=time.time(), output_base=str(base))
    return WebFiles(failed.id, nasty.id, waiting.id, working.id, submitted.id, done.id,
                    pending.id, root)


class RunningWeb:
    """A status page served by a real server on 127.0.0.1, on its own loop in a thread.

    The journal is opened (exclusively, as the daemon does) and used only on that loop's
    thread; tests reach it through :meth:`call`.
    """

    def __init__(self, journal_path: Path, http: HttpConfig, *,
                 setup: Callable[[Journal], Any] | None = None) -> None:
        self.journal_path = journal_path
        self.http = http
        self.setup = setup
        self.progress = ProgressBoard()
        self.retried: list[Path] = []
        self.loop = asyncio.new_event_loop()
        self.server: WebServer | None = None
        self.journal: Journal | None = None
        self.setup_result: Any = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> RunningWeb:
        """Start the loop, open the journal, populate it, bind the server."""
        self._thread.start()

        async def begin() -> None:
            self.journal = Journal.open(self.journal_path, exclusive=True)
            if self.setup is not None:
                self.setup_result = self.setup(self.journal)
            self.server = build(self.http, self.journal_path, journal=self.journal,
                                progress=self.progress, on_retried=self.retried.append,
                                port=0)
            await self.server.start()

        self.run(begin())
        return self

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 30.0) -> _T:
        """Run a coroutine on the server's loop and wait for its result."""
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def call(self, func: Callable[[Journal], _T]) -> _T:
        """Run ``func(journal)`` on the loop's thread (the journal's only thread)."""
        async def wrapped() -> _T:
            assert self.journal is not None
            return func(self.journal)
        return self.run(wrapped())

    @property
    def port(self) -> int:
        """The bound port."""
        assert self.server is not None
        return self.server.address[1]

    @property
    def url(self) -> str:
        """The page's URL, http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Close the server and the journal, end the loop."""
        async def end() -> None:
            if self.server is not None:
                await self.server.close()
            if self.journal is not None:
                self.journal.close()
        try:
            self.run(end())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


def source_state(web: RunningWeb, source_id: int) -> str:
    """The journal state of one source, read on the server's loop."""
    return web.call(lambda journal: journal.get(source_id).state)


def all_sources(web: RunningWeb) -> list[Source]:
    """Every source, read on the server's loop."""
    return web.call(lambda journal: journal.all())
