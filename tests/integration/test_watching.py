"""Folder watching end to end: never miss a file, never count one twice.

Three groups: the filters and the watcher's events on their own; a real Worker fed by a real
Watcher in a background loop (settling, the close fast path, notes, storage that goes away);
and the real ``watcherd run`` subprocess against the Gladia simulator, driven by the file
operations that break other watch-folder tools (slow copies, renames into place, folders moved
in, rsync temp files, hard links, copies, deletions, rewrites, event storms, 10,000 files).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import shutil
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, wait_until, write_config
from tests.sim import GladiaSimulator, expected_transcript, make_wav
from tests.sim.media import wav_header
from watcherd.config import Config, GladiaConfig, WatchConfig
from watcherd.errors import JournalError
from watcherd.filters import SourceFilter
from watcherd.journal import Journal, Source
from watcherd.watcher import Watcher, storage_facts
from watcherd.worker import EngineRoutes, Worker
from watcherd.worker.intake import INTAKE_BACKLOG
from watcherd.worker.settling import UNSETTLED_BATCH

KEY = "sk-test-watching-0123456789"
DEADLINE = 10.0

# watchdog's inotify code warns when a folder made with mkdir -p races its own new watches;
# the events are still delivered, so the warning is noise here.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


def sha256(data: bytes) -> str:
    """Hex sha256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def read_source(journal_path: Path, path: Path) -> Source | None:
    """The journal row of ``path`` read through its own read-only connection, or None."""
    try:
        with Journal.open(journal_path, readonly=True) as journal:
            return journal.by_path(str(path))
    except JournalError:
        return None  # not created yet


def row_when(get: Callable[[], Source | None], test: Callable[[Source], bool]
             ) -> Callable[[], Source | None]:
    """A wait_until condition: the row ``get`` returns, once ``test`` holds for it."""
    def check() -> Source | None:
        source = get()
        return source if source is not None and test(source) else None
    return check


def read_all(journal_path: Path) -> list[Source]:
    """Every journal row, read through its own read-only connection ([] before it exists)."""
    try:
        with Journal.open(journal_path, readonly=True) as journal:
            return journal.all()
    except JournalError:
        return []


# --- filters: the issue's list of files that are never sources ---------------------------------


ROOT = Path("/srv/inbox")


@pytest.mark.parametrize(
    "rel",
    [
        "talk.mp3.part",  # Firefox, curl, wget
        "talk.mp3.crdownload",  # Chrome
        "talk.mp3.download",  # Safari, as a file
        "talk.mp4.download/talk.mp4",  # Safari's bundle folder holds the file being written
        "talk.mp3.filepart",  # WinSCP
        "talk.mp3.partial",  # rclone
        ".syncthing.talk.mp3.tmp",  # Syncthing
        "~syncthing~talk.mp3.tmp",  # Syncthing on Windows
        ".talk.mp3.AbC123",  # rsync's temp copy
        "._talk.mp3",  # macOS AppleDouble
        ".DS_Store",
        "@eaDir/talk.mp3",  # Synology thumbnails
        "deep/@eaDir/talk.mp3@SynoEAStream",
        ".stfolder/talk.mp3",
        ".stversions/talk~20240101.mp3",
        ".hidden.mp3",
        ".cache/talk.mp3",
        "talk.mp3.!sync",  # Resilio Sync
        "talk.mp4.part-Frag12",  # yt-dlp
        "talk.mp3.crswap",  # Chrome's File System Access
        "talk.txt",  # our outputs
        "talk.json",
        "talk.srt",
        "talk.vtt",
        "talk.fr.txt",
        "talk.txt.watcherd-tmp-0123abcd",  # our temp files
    ],
)
def test_issue_list_of_partial_system_and_output_files_is_never_a_source(rel: str) -> None:
    """Every kind of file the issue lists (in-progress copies, NAS and macOS clutter, hidden
    files, our outputs and temps) is refused, even by a watch whose include is "*"."""
    for include in ((), ("*",)):
        rules = SourceFilter(WatchConfig(path=ROOT, include=include))
        assert not rules.accepts(ROOT / rel), (rel, include)


def test_safari_download_bundle_folder_is_pruned_from_scans() -> None:
    """A NAME.download folder is never walked, so its half-written file is not even stat'ed."""
    rules = SourceFilter(WatchConfig(path=ROOT))
    assert rules.prunes(ROOT / "talk.mp4.download")
    assert not rules.prunes(ROOT / "downloads")


# --- the watcher's events -------------------------------------------------------------------


class Recorder:
    """Thread-safe record of the paths handed to ``hint`` and to ``on_complete``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hinted: list[Path] = []
        self.completed: list[Path] = []

    def hint(self, path: Path) -> None:
        """Record a plain hint (called from observer threads)."""
        with self._lock:
            self.hinted.append(path)

    def complete(self, path: Path) -> None:
        """Record a "this file is complete" hint (called from observer threads)."""
        with self._lock:
            self.completed.append(path)

    def seen(self, path: Path, *, complete: bool) -> bool:
        """Whether ``path`` was handed over on that channel."""
        with self._lock:
            return path in (self.completed if complete else self.hinted)


@pytest.fixture
def watch_folder(tmp_path: Path) -> Iterator[tuple[Path, Recorder, list[Watcher]]]:
    """A watched folder, a recorder, and the list of watchers to stop at teardown."""
    folder = tmp_path / "watched"
    folder.mkdir()
    watchers: list[Watcher] = []
    yield folder, Recorder(), watchers
    for watcher in watchers:
        watcher.stop()


def _start(folder: Path, recorder: Recorder, watchers: list[Watcher], *, wired: bool = True
           ) -> Watcher:
    watcher = Watcher([WatchConfig(path=folder)], recorder.hint,
                      on_complete=recorder.complete if wired else None)
    watchers.append(watcher)
    watcher.start()
    assert watcher.wait_ready(DEADLINE)
    return watcher


def test_close_after_write_goes_to_on_complete(
    watch_folder: tuple[Path, Recorder, list[Watcher]]
) -> None:
    """A file closed after writing is handed to on_complete; its writes to hint."""
    folder, recorder, watchers = watch_folder
    _start(folder, recorder, watchers)
    path = folder / "closed.wav"
    path.write_bytes(b"RIFF" + b"\0" * 100)
    wait_until(lambda: recorder.seen(path, complete=True), timeout=DEADLINE,
               message="close reported as complete")
    assert recorder.seen(path, complete=False)


def test_rename_into_place_goes_to_on_complete(
    watch_folder: tuple[Path, Recorder, list[Watcher]]
) -> None:
    """x.wav.part renamed to x.wav: the final name is complete; the .part never appears."""
    folder, recorder, watchers = watch_folder
    _start(folder, recorder, watchers)
    part = folder / "x.wav.part"
    part.write_bytes(b"RIFF" + b"\1" * 100)
    final = folder / "x.wav"
    part.rename(final)
    wait_until(lambda: recorder.seen(final, complete=True), timeout=DEADLINE,
               message="renamed file reported as complete")
    assert not recorder.seen(part, complete=False) and not recorder.seen(part, complete=True)


def test_mtime_change_without_writing_is_hinted(
    watch_folder: tuple[Path, Recorder, list[Watcher]]
) -> None:
    """touch (an attribute event, no write) is hinted: rsync sets the final mtime that way."""
    folder, recorder, watchers = watch_folder
    path = folder / "touched.wav"
    path.write_bytes(b"RIFF" + b"\2" * 100)
    _start(folder, recorder, watchers)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    wait_until(lambda: recorder.seen(path, complete=False), timeout=DEADLINE,
               message="utime hinted")


def test_without_on_complete_closes_are_plain_hints(
    watch_folder: tuple[Path, Recorder, list[Watcher]]
) -> None:
    """A Watcher built with hint alone still hears about closes and renames, as hints."""
    folder, recorder, watchers = watch_folder
    _start(folder, recorder, watchers, wired=False)
    part = folder / "y.wav.part"
    part.write_bytes(b"RIFF" + b"\3" * 100)
    final = folder / "y.wav"
    part.rename(final)
    wait_until(lambda: recorder.seen(final, complete=False), timeout=DEADLINE,
               message="renamed file hinted")
    assert recorder.completed == []


# --- storage that goes away is not deletion ---------------------------------------------------


def test_storage_away_when_the_root_is_gone(tmp_path: Path) -> None:
    """A source under a root that no longer exists is not deleted: its storage is away."""
    root = tmp_path / "share"
    reason = storage_facts(root / "a" / "x.wav", root).away(123)
    assert reason is not None and "unavailable" in reason and str(root) in reason


def test_storage_away_is_none_for_a_plain_deletion(tmp_path: Path) -> None:
    """A file deleted from a folder that is still there, on its device, is really gone."""
    root = tmp_path / "inbox"
    (root / "sub").mkdir(parents=True)
    dev = os.stat(root).st_dev
    assert storage_facts(root / "sub" / "x.wav", root).away(dev) is None
    assert storage_facts(root / "gone-folder" / "x.wav", root).away(dev) is None


def test_storage_away_when_the_file_system_was_unmounted(tmp_path: Path) -> None:
    """A source recorded on another device than its surviving folder now is (an unmounted
    share leaves its empty mount point) is away, not deleted."""
    root = tmp_path / "mnt"
    root.mkdir()
    other_dev = os.stat(root).st_dev + 1
    reason = storage_facts(root / "talks" / "x.wav", root).away(other_dev)
    assert reason is not None and "not mounted" in reason


# --- a real worker fed by a real watcher ------------------------------------------------------


class Rig:
    """A Worker (no engine: it settles and hashes only) and a Watcher wired as the daemon
    should wire them, running on an asyncio loop in a background thread."""

    def __init__(self, tmp_path: Path, *, settle: float, still_writing_after: float | None
                 ) -> None:
        self.inbox = tmp_path / "inbox"
        self.inbox.mkdir()
        self.journal_path = tmp_path / "journal.db"
        self.config = Config(
            source=None, gladia=GladiaConfig(api_key=None), engine="auto", local_model="base",
            journal_path=self.journal_path, log_format="json", log_level="info",
            watches=(WatchConfig(path=self.inbox, settle_seconds=settle),),
        )
        self._still_writing_after = still_writing_after
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.worker: Worker | None = None
        self._thread = threading.Thread(target=self._run, name="rig-loop", daemon=True)

    def start(self) -> Rig:
        """Start the loop thread; return once the observer watches the inbox."""
        self._thread.start()
        assert self._ready.wait(DEADLINE), "the rig did not start"
        if self._failure is not None:
            raise self._failure
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        journal = Journal.open(self.journal_path, exclusive=True)
        worker = Worker(self.config, journal,
                        EngineRoutes(no_engine_reason="no engine in this test"))
        if self._still_writing_after is not None:
            worker.still_writing_after = self._still_writing_after
        watcher = Watcher(self.config.watches, worker.hint_threadsafe,
                          on_complete=worker.complete_threadsafe)
        self._stop = asyncio.Event()
        try:
            watcher.start()
            assert await asyncio.to_thread(watcher.wait_ready, DEADLINE)
            self.worker, self._loop = worker, asyncio.get_running_loop()
            self._ready.set()
            await worker.run(self._stop)
        finally:
            watcher.stop()
            journal.close()

    def hint(self, path: Path) -> None:
        """Hand a path to the worker, as a scan would."""
        assert self.worker is not None
        self.worker.hint_threadsafe(path)

    def stop(self) -> None:
        """Stop the worker and the watcher and join the loop thread."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(DEADLINE)
        assert not self._thread.is_alive(), "the rig's loop did not stop"
        if self._failure is not None:
            raise self._failure

    def source(self, path: Path) -> Source | None:
        """The journal row of ``path`` (None before it is journaled)."""
        return read_source(self.journal_path, path)

    def hashed(self, path: Path) -> Source | None:
        """The row of ``path`` once settled and hashed, else None."""
        source = self.source(path)
        return source if source is not None and source.content_key is not None else None

    def wait_hashed(self, path: Path) -> Source:
        """Wait until ``path`` is settled and hashed; return its row."""
        return wait_until(lambda: self.hashed(path), timeout=DEADLINE,
                          message=f"{path.name} hashed")


RigFactory = Callable[..., Rig]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[RigFactory]:
    """Build and start one Rig; stopped at teardown."""
    made: list[Rig] = []

    def make(*, settle: float, still_writing_after: float | None = None) -> Rig:
        built = Rig(tmp_path, settle=settle, still_writing_after=still_writing_after)
        made.append(built)
        return built.start()

    yield make
    for built in made:
        built.stop()


class TestSettling:
    """When a source counts as complete, in a worker fed by real events."""

    def test_closed_file_skips_the_long_settle_but_an_open_one_waits(self, rig: RigFactory
                                                                     ) -> None:
        """With settle_seconds 60, a file closed after writing is hashed (with its whole
        content) while one written earlier but still open is not; closing it settles it."""
        r = rig(settle=60.0)
        open_path = r.inbox / "still-open.wav"
        writer = open_path.open("wb")
        try:
            writer.write(b"RIFF-open" + b"\0" * 5000)
            writer.flush()
            wait_until(lambda: r.source(open_path), timeout=DEADLINE, message="open file seen")
            closed = r.inbox / "closed.wav"
            data = make_wav(closed, seconds=0.2, salt="closed")
            source = r.wait_hashed(closed)
            assert source.sha256 == sha256(data)
            waiting = r.source(open_path)
            assert waiting is not None
            assert waiting.state == "pending" and waiting.content_key is None
            writer.write(b"tail")
        finally:
            writer.close()
        source = r.wait_hashed(open_path)
        assert source.sha256 == sha256(b"RIFF-open" + b"\0" * 5000 + b"tail")

    def test_writer_that_reopens_after_closing_is_not_cut_short(self, rig: RigFactory) -> None:
        """A file closed, then reopened and appended to, loses its fast path: a later closed
        file is hashed first, and the reopened one is hashed whole once it closes again."""
        r = rig(settle=60.0)
        reopened = r.inbox / "reopened.wav"
        reopened.write_bytes(b"RIFF-first-part" + b"\1" * 4000)
        writer = reopened.open("ab")
        try:
            writer.write(b"\2" * 4000)
            writer.flush()
            control = r.inbox / "control.wav"
            make_wav(control, seconds=0.2, salt="control")
            r.wait_hashed(control)
            after = r.source(reopened)
            assert after is not None and after.content_key is None
        finally:
            writer.close()
        source = r.wait_hashed(reopened)
        assert source.sha256 == sha256(b"RIFF-first-part" + b"\1" * 4000 + b"\2" * 4000)

    def test_plain_hint_after_complete_takes_it_back(self, tmp_path: Path) -> None:
        """A close whose stat was read after a later write, then that write's own event:
        the file waits the full settle, while a file completed afterwards is hashed."""
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        config = Config(
            source=None, gladia=GladiaConfig(api_key=None), engine="auto", local_model="base",
            journal_path=tmp_path / "journal.db", log_format="json", log_level="info",
            watches=(WatchConfig(path=inbox, settle_seconds=60.0),),
        )
        late = inbox / "late-event.wav"
        control = inbox / "control.wav"

        async def scenario() -> tuple[Source | None, Source | None]:
            with Journal.open(config.journal_path, exclusive=True) as journal:
                worker = Worker(config, journal, EngineRoutes(no_engine_reason="none here"))
                late.write_bytes(b"RIFF" + b"\1" * 1000)
                worker.hint(late, complete=True)
                await worker.tick()
                with late.open("ab") as out:
                    out.write(b"\2" * 1000)
                worker.hint(late, complete=True)  # the close, stat'ed after the append
                await worker.tick()
                worker.hint(late)  # the append's own event, arriving last
                control.write_bytes(b"RIFF" + b"\3" * 1000)
                worker.hint(control, complete=True)

                def control_hashed() -> bool:
                    row = journal.by_path(str(control))
                    return row is not None and row.content_key is not None

                deadline = time.monotonic() + DEADLINE
                while not control_hashed():
                    assert time.monotonic() < deadline, "control never hashed"
                    await worker.tick()
                    await asyncio.sleep(0.05)
                return journal.by_path(str(late)), journal.by_path(str(control))

        late_row, control_row = asyncio.run(scenario())
        assert control_row is not None and control_row.content_key is not None
        assert late_row is not None and late_row.content_key is None

    def test_files_found_by_a_scan_keep_at_most_a_window_of_clocks(self, tmp_path: Path
                                                                     ) -> None:
        """Issue 22 item 3: 2,500 files hinted as a scan hints them are all journaled and
        queued, each with its own digest, while the worker never holds more settle clocks
        than the window of unsettled rows it reads (the rows are the state, not a clock per
        file)."""
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        config = Config(
            source=None, gladia=GladiaConfig(api_key=None), engine="auto", local_model="base",
            journal_path=tmp_path / "journal.db", log_format="json", log_level="info",
            watches=(WatchConfig(path=inbox, settle_seconds=0.3),),
        )
        total = 2_500
        expected = {}
        for i in range(total):
            path = inbox / f"s{i:04d}.wav"
            data = wav_header(8) + struct.pack("<Q", i)
            path.write_bytes(data)
            expected[str(path)] = sha256(data)

        async def scenario() -> tuple[list[Source], int]:
            with Journal.open(config.journal_path, exclusive=True) as journal:
                worker = Worker(config, journal, EngineRoutes(no_engine_reason="none here"))
                worker.hints_threadsafe(sorted(inbox.iterdir()))  # as the start-up scan does
                most = 0
                deadline = time.monotonic() + 60

                def all_queued() -> list[Source] | None:
                    rows = journal.all()
                    done = len(rows) == total and all(s.content_key for s in rows)
                    return rows if done else None

                while (rows := all_queued()) is None:
                    assert time.monotonic() < deadline, "the files were never all queued"
                    await worker.tick()
                    most = max(most, len(worker.settling.clocks))
                    await asyncio.sleep(0.02)
                return rows, most

        rows, most = asyncio.run(scenario())
        assert {s.path: s.sha256 for s in rows} == expected
        assert 0 < most <= UNSETTLED_BATCH, f"{most} clocks for {total} files"

    def test_rows_left_pending_by_an_earlier_run_need_no_clock_each(self, tmp_path: Path
                                                                     ) -> None:
        """Issue 22 item 3: 2,500 files left pending (unchanged) by an earlier run, found
        again by the next start's scan, are timed from their rows: the worker holds at most
        a window of clocks, and every row is still there, pending."""
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        config = Config(
            source=None, gladia=GladiaConfig(api_key=None), engine="auto", local_model="base",
            journal_path=tmp_path / "journal.db", log_format="json", log_level="info",
            watches=(WatchConfig(path=inbox, settle_seconds=600.0),),
        )
        total = 2_500
        for i in range(total):
            (inbox / f"p{i:04d}.wav").write_bytes(wav_header(8) + struct.pack("<Q", i))

        async def scenario() -> tuple[int, list[Source]]:
            with Journal.open(config.journal_path, exclusive=True) as journal:
                earlier = Worker(config, journal, EngineRoutes(no_engine_reason="none here"))
                earlier.hints_threadsafe(sorted(inbox.iterdir()))
                deadline = time.monotonic() + 60
                while len(journal.all()) < total:
                    assert time.monotonic() < deadline, "the first run never journaled all"
                    await earlier.tick()
                    await asyncio.sleep(0.01)
                worker = Worker(config, journal, EngineRoutes(no_engine_reason="none here"))
                worker.hints_threadsafe(sorted(inbox.iterdir()))  # the next start's scan
                await asyncio.sleep(0)
                most = 0
                while True:
                    assert time.monotonic() < deadline, "the scan's hints were never taken"
                    await worker.tick()
                    most = max(most, len(worker.settling.clocks))
                    if worker.idle():
                        break
                    await asyncio.sleep(0.01)
                return most, journal.all()

        most, rows = asyncio.run(scenario())
        assert len(rows) == total and all(
            s.state == "pending" and s.content_key is None for s in rows)
        assert most <= UNSETTLED_BATCH, f"{most} clocks for {total} rows"

    def test_a_scan_waits_while_the_worker_has_a_backlog_and_loses_no_file(
        self, tmp_path: Path
    ) -> None:
        """Issue 22 item 3: a scan thread handing over 12,000 paths, 1,000 at a time, to a
        worker that is not taking them stops at a backlog of INTAKE_BACKLOG (each waiting
        path costs memory); once the worker ticks, every file is journaled and queued; a
        worker that stops releases a waiting scan."""
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        config = Config(
            source=None, gladia=GladiaConfig(api_key=None), engine="auto", local_model="base",
            journal_path=tmp_path / "journal.db", log_format="json", log_level="info",
            watches=(WatchConfig(path=inbox, settle_seconds=0.2),),
        )
        total, batch = 12_000, 1_000
        assert total > INTAKE_BACKLOG + batch
        paths = [inbox / f"q{i:05d}.wav" for i in range(total)]
        for i, path in enumerate(paths):
            path.write_bytes(wav_header(8) + struct.pack("<Q", i))

        async def scenario() -> tuple[int, int, list[Source], bool]:
            with Journal.open(config.journal_path, exclusive=True) as journal:
                worker = Worker(config, journal, EngineRoutes(no_engine_reason="none here"))

                def scan(todo: list[Path]) -> None:
                    for start in range(0, len(todo), batch):
                        worker.hints_threadsafe(todo[start:start + batch])

                scanner = threading.Thread(target=scan, args=(paths,), daemon=True)
                scanner.start()
                deadline = time.monotonic() + 60
                # Not ticking: the scan fills the backlog, then must wait (on main it hands
                # over all 12,000).
                while scanner.is_alive() and len(worker.intake.hints) < INTAKE_BACKLOG:
                    assert time.monotonic() < deadline, "the scan never handed paths over"
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0)  # run any hand-over already posted
                held = len(worker.intake.hints)
                while len(rows := journal.all()) < total or not all(
                    s.content_key for s in rows
                ):
                    assert time.monotonic() < deadline, "the files were never all queued"
                    await worker.tick()
                    await asyncio.sleep(0.01)
                await asyncio.to_thread(scanner.join, DEADLINE)
                # A scan waiting on a worker that stops is let go.
                more = [tmp_path / f"elsewhere{i}.wav" for i in range(INTAKE_BACKLOG + batch)]
                late = threading.Thread(target=scan, args=(more,), daemon=True)
                late.start()
                while late.is_alive() and len(worker.intake.hints) < INTAKE_BACKLOG:
                    assert time.monotonic() < deadline, "the late scan never handed over"
                    await asyncio.sleep(0.01)
                stop = asyncio.Event()
                stop.set()
                await worker.run(stop)
                await asyncio.to_thread(late.join, DEADLINE)
                return held, total, rows, late.is_alive()

        held, total, rows, late_alive = asyncio.run(scenario())
        assert held <= INTAKE_BACKLOG + batch, f"{held} paths waiting at once"
        assert len(rows) == total and len({s.sha256 for s in rows}) == total
        assert not late_alive, "the scan still waits after the worker stopped"

    def test_rename_into_place_skips_the_long_settle(self, rig: RigFactory) -> None:
        """x.wav.part renamed to x.wav is complete: hashed without the 60 s settle, and the
        .part name never enters the journal."""
        r = rig(settle=60.0)
        part = r.inbox / "x.wav.part"
        data = make_wav(part, seconds=0.2, salt="renamed")
        final = r.inbox / "x.wav"
        part.rename(final)
        assert r.wait_hashed(final).sha256 == sha256(data)
        assert r.source(part) is None

    def test_file_that_keeps_growing_says_so_in_its_note(self, rig: RigFactory) -> None:
        """A file still being appended to stays pending with a note that counts its size
        changes; once the writer stops it settles, whole, and is queued."""
        r = rig(settle=0.5, still_writing_after=0.5)
        path = r.inbox / "growing.wav"
        stop = threading.Event()
        written = bytearray()

        def grow() -> None:
            with path.open("wb") as out:
                deadline = time.monotonic() + 20
                while not stop.is_set() and time.monotonic() < deadline:
                    chunk = random.randbytes(2048)
                    out.write(chunk)
                    out.flush()
                    written.extend(chunk)
                    stop.wait(0.1)

        writer = threading.Thread(target=grow, daemon=True)
        writer.start()
        try:
            noted = wait_until(
                row_when(lambda: r.source(path),
                         lambda s: "still being written" in (s.note or "")),
                timeout=DEADLINE, message="still-writing note",
            )
            assert noted.state == "pending" and noted.content_key is None
            assert re.fullmatch(
                r"still being written \(size changed \d+ times in the last \d+ seconds?\)",
                noted.note or "",
            ), noted.note
        finally:
            stop.set()
            writer.join(DEADLINE)
        source = r.wait_hashed(path)
        assert source.sha256 == sha256(bytes(written))
        assert source.note is not None and "still being written" not in source.note

    def test_many_files_are_hashed_in_batches_each_with_its_own_digest(self, rig: RigFactory
                                                                       ) -> None:
        """300 files (several hashing batches) all settle, each with its own content's sha256."""
        r = rig(settle=0.2)
        expected = {}
        for i in range(300):
            path = r.inbox / f"b{i:03d}.wav"
            data = wav_header(8) + struct.pack("<Q", i)
            path.write_bytes(data)
            expected[str(path)] = sha256(data)

        def all_hashed() -> bool:
            rows = read_all(r.journal_path)
            return len(rows) == 300 and all(s.content_key for s in rows)

        wait_until(all_hashed, timeout=30, message="300 files hashed")
        assert {s.path: s.sha256 for s in read_all(r.journal_path)} == expected

    def test_file_deleted_while_settling_is_gone(self, rig: RigFactory) -> None:
        """A source deleted before it settled becomes gone, with a reason."""
        r = rig(settle=60.0)
        path = r.inbox / "short-lived.wav"
        with path.open("wb") as out:
            out.write(b"RIFF" + b"\5" * 1000)
            out.flush()
            wait_until(lambda: r.source(path), timeout=DEADLINE, message="journaled")
            path.unlink()
            gone = wait_until(row_when(lambda: r.source(path), lambda s: s.state == "gone"),
                              timeout=DEADLINE, message="gone")
        assert gone.last_error is not None and "disappeared" in gone.last_error

    def test_missing_root_does_not_make_its_sources_gone(self, rig: RigFactory,
                                                         tmp_path: Path) -> None:
        """While the watch folder is away (an unmounted share), its pending sources stay
        pending with a note saying why; when it returns they settle as usual."""
        r = rig(settle=60.0)
        path = r.inbox / "on-the-share.wav"
        away = tmp_path / "inbox-away"
        with path.open("wb") as out:
            out.write(b"RIFF" + b"\6" * 1000)
            out.flush()
            wait_until(lambda: r.source(path), timeout=DEADLINE, message="journaled")
            r.inbox.rename(away)
            try:
                r.hint(path)  # what the periodic reconcile does for every unfinished source
                noted = wait_until(
                    row_when(lambda: r.source(path), lambda s: "unavailable" in (s.note or "")),
                    timeout=DEADLINE, message="storage-away note",
                )
                assert noted.state == "pending"
            finally:
                away.rename(r.inbox)
            r.hint(path)  # what the watcher's rescan of a returning root does
        source = r.wait_hashed(path)
        assert source.state == "pending" and source.sha256 == sha256(b"RIFF" + b"\6" * 1000)


# --- the real daemon against the simulator -----------------------------------------------------


class Env:
    """One test's inbox, simulator, config and daemons (a fresh config per start)."""

    def __init__(self, tmp_path: Path, sim: GladiaSimulator) -> None:
        self.tmp = tmp_path
        self.sim = sim
        self.inbox = tmp_path / "inbox"
        self.inbox.mkdir()
        self.journal = tmp_path / "state" / "journal.db"
        self.daemons: list[DaemonProcess] = []

    def start(self, *, settle: float = 0.3, max_jobs: int = 3) -> DaemonProcess:
        """Start ``watcherd run`` on the inbox and wait until its observers are up."""
        config = write_config(self.tmp / "config.toml", api_url=self.sim.base_url, api_key=KEY,
                              journal=self.journal, watches=[self.inbox],
                              settle_seconds=settle, max_concurrent_jobs=max_jobs)
        daemon = DaemonProcess(config, self.tmp / "daemon.log")
        self.daemons.append(daemon)
        daemon.start()
        daemon.wait_for_event("ready", timeout=30)
        return daemon

    def source(self, path: Path) -> Source | None:
        """The journal row of ``path``."""
        return read_source(self.journal, path)

    def wait_done(self, path: Path, data: bytes, *, timeout: float = 30.0) -> Source:
        """Wait until ``path`` is done with the transcript of ``data`` next to it."""
        def done() -> Source | None:
            source = self.source(path)
            if source is None or source.state != "done":
                return None
            return source if transcript_of(path) == expected_transcript(data) else None
        return wait_until(done, timeout=timeout, message=f"{path.name} done")

    def wait_state(self, path: Path, state: str, *, timeout: float = 30.0) -> Source:
        """Wait until the row of ``path`` is in ``state``."""
        return wait_until(row_when(lambda: self.source(path), lambda s: s.state == state),
                          timeout=timeout, message=f"{path.name} {state}")


def transcript_of(path: Path) -> str | None:
    """The words of the .txt next to a source, or None if there is none."""
    txt = path.with_suffix(".txt")
    try:
        return " ".join(txt.read_text(encoding="utf-8").split())
    except FileNotFoundError:
        return None


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """A simulator with quick jobs and an empty inbox; daemons are killed at teardown."""
    with GladiaSimulator(api_key=KEY, job_seconds=0.2, concurrency=5) as sim:
        environment = Env(tmp_path, sim)
        try:
            yield environment
        finally:
            for daemon in environment.daemons:
                daemon.stop()
        assert sim.internal_errors() == []


def _finish(env: Env, daemon: DaemonProcess) -> None:
    """Stop the daemon cleanly and check it logged no traceback."""
    assert daemon.terminate() == 0
    assert daemon.tracebacks() == []
    env.daemons.remove(daemon)


def _uploads_of(sim: GladiaSimulator, data: bytes) -> list[dict[str, Any]]:
    return [u for u in sim.uploads() if u["sha256"] == sha256(data)]


class TestDaemonFileOperations:
    """Each awkward file operation ends in the right state with the right number of jobs."""

    def test_slow_copy_of_20_mb_is_uploaded_once_and_whole(self, env: Env) -> None:
        """A 20 MB WAV written in 40 chunks over about 4 s (settle 1 s) is uploaded exactly
        once, with its full size and sha256, and transcribed by one job."""
        daemon = env.start(settle=1.0)
        path = env.inbox / "slow copy.wav"
        size = 20 * 1024 * 1024
        rng = random.Random("slow-copy")
        data = wav_header(size - 44) + rng.randbytes(size - 44)
        chunk = size // 40
        with path.open("wb") as out:
            for offset in range(0, size, chunk):
                out.write(data[offset:offset + chunk])
                out.flush()
                time.sleep(0.1)  # pacing the writer, not waiting for a result
        env.wait_done(path, data, timeout=60)
        uploads = env.sim.uploads()
        assert [(u["size"], u["sha256"]) for u in uploads] == [(size, sha256(data))]
        assert len(env.sim.jobs()) == 1
        _finish(env, daemon)

    def test_rename_into_place_is_transcribed_once(self, env: Env) -> None:
        """x.wav.part renamed to x.wav is transcribed once; the .part is never journaled."""
        daemon = env.start()
        part = env.inbox / "x.wav.part"
        data = make_wav(part, seconds=0.5, salt="part")
        final = env.inbox / "x.wav"
        part.rename(final)
        env.wait_done(final, data)
        assert env.source(part) is None
        assert len(env.sim.jobs()) == 1 and len(_uploads_of(env.sim, data)) == 1
        _finish(env, daemon)

    def test_folder_moved_in_is_scanned(self, env: Env) -> None:
        """A folder tree built outside and moved into the inbox in one rename: every file in
        it, nested ones included, is transcribed once."""
        daemon = env.start()
        album = env.tmp / "outside" / "album"
        (album / "disc 2").mkdir(parents=True)
        files = {album / name: b"" for name in ("a.wav", "b.wav", "disc 2/c.wav")}
        for path in files:
            files[path] = make_wav(path, seconds=0.4, salt=str(path.name))
        album.rename(env.inbox / "album")
        for path, data in files.items():
            moved = env.inbox / "album" / path.relative_to(album)
            env.wait_done(moved, data)
        assert len(env.sim.jobs()) == 3
        assert set(env.sim.creates_per_content().values()) == {1}
        _finish(env, daemon)

    def test_rsync_style_temp_then_rename(self, env: Env) -> None:
        """rsync writes .x.wav.AbC123, sets its mtime, renames it to x.wav: one job, and the
        hidden temp name never enters the journal."""
        daemon = env.start()
        temp = env.inbox / ".x.wav.AbC123"
        data = make_wav(temp, seconds=0.5, salt="rsync")
        os.utime(temp, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
        final = env.inbox / "x.wav"
        temp.rename(final)
        env.wait_done(final, data)
        assert env.source(temp) is None
        assert len(env.sim.jobs()) == 1
        _finish(env, daemon)

    def test_hard_link_of_a_done_file_makes_no_new_job(self, env: Env) -> None:
        """A hard link of a done source gets its own transcript from the cached result."""
        daemon = env.start()
        original = env.inbox / "original.wav"
        data = make_wav(original, seconds=0.5, salt="link")
        env.wait_done(original, data)
        link = env.inbox / "linked.wav"
        os.link(original, link)
        env.wait_done(link, data)
        assert len(env.sim.jobs()) == 1 and len(env.sim.uploads()) == 1
        assert env.wait_state(original, "done").job_id is not None
        _finish(env, daemon)

    def test_copy_of_a_done_file_elsewhere_makes_no_new_job(self, env: Env) -> None:
        """A copy in another folder (same options) gets its outputs with no upload, no job."""
        daemon = env.start()
        original = env.inbox / "first.wav"
        data = make_wav(original, seconds=0.5, salt="copy")
        env.wait_done(original, data)
        (env.inbox / "elsewhere").mkdir()
        copy = env.inbox / "elsewhere" / "copied.wav"
        shutil.copy2(original, copy)
        env.wait_done(copy, data)
        assert len(env.sim.jobs()) == 1 and len(env.sim.uploads()) == 1
        _finish(env, daemon)

    def test_file_deleted_while_settling_is_gone_with_no_job(self, env: Env) -> None:
        """A file deleted before it settled ends gone; nothing was uploaded."""
        daemon = env.start(settle=30.0)
        path = env.inbox / "deleted early.wav"
        with path.open("wb") as out:
            out.write(wav_header(32000) + b"\7" * 32000)
            out.flush()
            env.wait_state(path, "pending")
            path.unlink()
            gone = env.wait_state(path, "gone")
        assert gone.last_error is not None
        assert env.sim.uploads() == [] and env.sim.jobs() == []
        _finish(env, daemon)

    def test_content_changed_after_done_is_a_new_version(self, env: Env) -> None:
        """Rewriting a done source with new content makes a new job and new outputs."""
        daemon = env.start()
        path = env.inbox / "rewritten.wav"
        first = make_wav(path, seconds=0.5, salt="v1")
        env.wait_done(path, first)
        second = make_wav(path, seconds=0.6, salt="v2")
        source = env.wait_done(path, second)
        assert source.sha256 == sha256(second)
        assert len(env.sim.jobs()) == 2
        assert env.sim.creates_per_content() == {sha256(first): 1, sha256(second): 1}
        _finish(env, daemon)

    def test_done_file_deleted_stays_done_and_keeps_its_outputs(self, env: Env) -> None:
        """Deleting a source after it was done leaves its row done and its outputs in place."""
        daemon = env.start()
        path = env.inbox / "finished.wav"
        data = make_wav(path, seconds=0.5, salt="finished")
        env.wait_done(path, data)
        outputs = [path.with_suffix(".txt"), path.with_suffix(".json")]
        path.unlink()
        # The observer reports events in order: once a later file is done, the deletion was
        # handled too.
        later = env.inbox / "later.wav"
        later_data = make_wav(later, seconds=0.5, salt="later")
        env.wait_done(later, later_data)
        source = env.source(path)
        assert source is not None and source.state == "done"
        assert all(output.exists() for output in outputs)
        assert transcript_of(path) == expected_transcript(data)
        _finish(env, daemon)

    def test_event_storm_on_one_file_makes_one_job(self, env: Env) -> None:
        """Touching the same file 200 times while it settles queues it once: one upload,
        one job."""
        daemon = env.start()
        path = env.inbox / "stormy.wav"
        data = make_wav(path, seconds=0.5, salt="storm")
        for _ in range(200):
            path.touch()
        env.wait_done(path, data)
        # A sentinel after the storm: its transcript means every storm event was handled.
        sentinel = env.inbox / "after the storm.wav"
        sentinel_data = make_wav(sentinel, seconds=0.5, salt="sentinel")
        env.wait_done(sentinel, sentinel_data)
        assert len(_uploads_of(env.sim, data)) == 1
        assert env.sim.creates_per_content()[sha256(data)] == 1
        _finish(env, daemon)


def test_ten_thousand_files_present_at_startup_are_all_queued(tmp_path: Path) -> None:
    """10,000 tiny recordings already in the inbox: the startup scan finds them all, and
    every one is journaled and settled (queued); jobs are slow, so this checks queuing."""
    inbox = tmp_path / "inbox"
    total = 10_000
    for i in range(total):
        folder = inbox / f"batch {i // 1000}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"rec{i:05d}.wav").write_bytes(wav_header(8) + struct.pack("<Q", i))
    journal = tmp_path / "journal.db"
    with GladiaSimulator(api_key=KEY, job_seconds=600, concurrency=3) as sim:
        config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                              journal=journal, watches=[inbox], settle_seconds=0.5)
        daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
        try:
            finished = daemon.wait_for_event("scan_finished", timeout=60)
            assert finished["files"] == total

            def queued() -> list[Source] | None:
                rows = read_all(journal)
                return rows if len(rows) == total and all(s.content_key for s in rows) else None

            rows = wait_until(queued, timeout=120, interval=0.5, message="10,000 queued")
            assert len({s.sha256 for s in rows}) == total
            assert {s.state for s in rows} <= {"pending", "uploading", "uploaded",
                                               "submitting", "submitted"}
            # The plan's 3 jobs and as many queued ahead (queue_ahead's default), no more.
            assert len(sim.jobs()) <= 3 + 3
            assert daemon.terminate() == 0
            assert daemon.tracebacks() == []
        finally:
            daemon.stop()
