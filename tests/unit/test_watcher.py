"""Tests for watcherd.watcher: real folders, real watchdog observers, hints from real threads."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyObserver

from watcherd import watcher as watcher_module
from watcherd.config import WatchConfig
from watcherd.watcher import (
    Watcher,
    fstype_of,
    is_network_filesystem,
    is_network_fstype,
    parse_bsd_mount_output,
    parse_mountinfo,
    parse_proc_mounts,
    scan,
    scan_folder,
)

DEADLINE = 10.0

# watchdog's inotify code warns when a folder made with mkdir -p races its own new watches;
# the events are still delivered (the tests prove it), so the warning is noise here.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


class Hints:
    """A thread-safe hint callable that remembers every path and lets a test wait for some."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._paths: list[Path] = []

    def __call__(self, path: Path) -> None:
        """Record one hint (called from watcher threads)."""
        with self._changed:
            self._paths.append(path)
            self._changed.notify_all()

    def all(self) -> list[Path]:
        """Every hint so far, in order."""
        with self._changed:
            return list(self._paths)

    def wait_for(self, *paths: Path, timeout: float = DEADLINE) -> None:
        """Return once every path was hinted; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not set(paths) <= set(self._paths):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = sorted(str(p) for p in set(paths) - set(self._paths))
                    raise AssertionError(f"not hinted within {timeout}s: {missing}")
                self._changed.wait(remaining)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``condition`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


StartWatcher = Callable[..., Watcher]


@pytest.fixture
def start_watcher() -> Iterator[StartWatcher]:
    """Start Watchers on demand; stop each at teardown so no observer thread outlives a test."""
    started: list[Watcher] = []

    def start(
        *watches: WatchConfig, hint: Callable[[Path], None], ready: bool = True,
        poll_interval: float = 2.0, root_retry_seconds: float = 30.0,
    ) -> Watcher:
        watcher = Watcher(list(watches), hint, poll_interval=poll_interval,
                          root_retry_seconds=root_retry_seconds)
        started.append(watcher)
        watcher.start()
        if ready:
            assert watcher.wait_ready(DEADLINE)
        return watcher

    yield start
    for watcher in started:
        watcher.stop()


def write_in_chunks(path: Path, chunks: int = 5, size: int = 4096) -> None:
    """Write a file piece by piece, flushing each piece, the way a slow copy does."""
    with path.open("wb") as out:
        for _ in range(chunks):
            out.write(b"\0" * size)
            out.flush()
            os.fsync(out.fileno())


def sentinel_after(hints: Hints, folder: Path) -> None:
    """Create a source and wait for it: events before it on the same observer were handled."""
    marker = folder / "zz-sentinel.mp3"
    marker.write_bytes(b"x")
    hints.wait_for(marker)


def ignored_hints(hints: Hints, *names: str) -> list[Path]:
    """The hints whose name is one of ``names`` (which should never be hinted)."""
    return [path for path in hints.all() if path.name in names]


# --- native observer ----------------------------------------------------------------------------


def test_new_file_is_hinted(tmp_path: Path, start_watcher: StartWatcher) -> None:
    """A recording dropped into the root is hinted with its path, and reported as native."""
    hints = Hints()
    watcher = start_watcher(WatchConfig(path=tmp_path), hint=hints)
    assert watcher.root_modes() == {tmp_path: "native"}
    assert watcher.root_problems() == {}
    source = tmp_path / "talk.mp3"
    source.write_bytes(b"audio")
    hints.wait_for(source)


def test_file_written_in_chunks_is_hinted(tmp_path: Path, start_watcher: StartWatcher) -> None:
    """A file written slowly in pieces is hinted (the worker settles it, not the watcher)."""
    hints = Hints()
    start_watcher(WatchConfig(path=tmp_path), hint=hints)
    source = tmp_path / "long meeting.wav"
    write_in_chunks(source)
    hints.wait_for(source)
    assert set(hints.all()) == {source}


def test_modified_existing_file_is_hinted(tmp_path: Path, start_watcher: StartWatcher) -> None:
    """Appending to a file that existed before the watch started hints it."""
    source = tmp_path / "talk.mp3"
    source.write_bytes(b"first")
    hints = Hints()
    start_watcher(WatchConfig(path=tmp_path), hint=hints)
    with source.open("ab") as out:
        out.write(b"more")
    hints.wait_for(source)


def test_rename_from_part_is_hinted_with_final_name(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """A browser-style download (file.part renamed to file.mp3) is hinted only by its final name."""
    hints = Hints()
    start_watcher(WatchConfig(path=tmp_path), hint=hints)
    partial = tmp_path / "talk.mp3.part"
    write_in_chunks(partial)
    final = tmp_path / "talk.mp3"
    partial.rename(final)
    hints.wait_for(final)
    assert partial not in hints.all()


def test_rsync_style_hidden_temp_rename_is_hinted(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """rsync writes .NAME.XXXXXX then renames it: only the final name is hinted."""
    hints = Hints()
    start_watcher(WatchConfig(path=tmp_path), hint=hints)
    temp = tmp_path / ".talk.mp3.AbC123"
    write_in_chunks(temp)
    final = tmp_path / "talk.mp3"
    temp.rename(final)
    hints.wait_for(final)
    assert all(not path.name.startswith(".") for path in hints.all())


def test_folder_moved_in_from_outside_hints_all_its_files(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """A folder moved in from outside the root gets every accepted file inside it hinted."""
    root, outside = tmp_path / "inbox", tmp_path / "outside"
    root.mkdir()
    batch = outside / "batch"
    (batch / "day 2").mkdir(parents=True)
    (batch / "@eaDir").mkdir()
    for rel in ["a.mp3", "b.wav", "day 2/c.m4a", "notes.txt", "@eaDir/thumb.mp3"]:
        (batch / rel).write_bytes(b"x")
    hints = Hints()
    start_watcher(WatchConfig(path=root), hint=hints)
    shutil.move(str(batch), str(root / "batch"))
    moved = root / "batch"
    hints.wait_for(moved / "a.mp3", moved / "b.wav", moved / "day 2" / "c.m4a")
    sentinel_after(hints, root)
    assert ignored_hints(hints, "notes.txt", "thumb.mp3") == []


def test_folder_renamed_within_root_hints_new_paths(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """Renaming a folder inside the root hints its files under their new paths."""
    (tmp_path / "old name").mkdir()
    (tmp_path / "old name" / "talk.mp3").write_bytes(b"x")
    hints = Hints()
    start_watcher(WatchConfig(path=tmp_path), hint=hints)
    (tmp_path / "old name").rename(tmp_path / "new name")
    hints.wait_for(tmp_path / "new name" / "talk.mp3")


def test_deleted_file_is_hinted(tmp_path: Path, start_watcher: StartWatcher) -> None:
    """Deleting a source hints its path so the worker can notice it is gone."""
    source = tmp_path / "talk.mp3"
    source.write_bytes(b"x")
    hints = Hints()
    start_watcher(WatchConfig(path=tmp_path), hint=hints)
    source.unlink()
    hints.wait_for(source)


def test_file_moved_out_of_root_hints_its_old_path(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """A source moved out of the root is hinted by its old path (it is gone from the root)."""
    root = tmp_path / "inbox"
    root.mkdir()
    source = root / "talk.mp3"
    source.write_bytes(b"x")
    hints = Hints()
    start_watcher(WatchConfig(path=root), hint=hints)
    source.rename(tmp_path / "talk.mp3")
    hints.wait_for(source)
    assert tmp_path / "talk.mp3" not in hints.all()


def test_outputs_and_temp_files_are_never_hinted(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """Transcripts, our temp files and other tools' partial files never produce a hint."""
    hints = Hints()
    start_watcher(WatchConfig(path=tmp_path), hint=hints)
    names = [
        "talk.txt",
        "talk.json",
        "talk.srt",
        "talk.vtt",
        ".talk.txt.watcherd-tmp-ab12",
        "talk.mp3.crdownload",
        "~syncthing~talk.mp3.tmp",
        ".DS_Store",
        "Thumbs.db",
    ]
    for name in names:
        write_in_chunks(tmp_path / name, chunks=2)
    (tmp_path / ".talk.txt.watcherd-tmp-ab12").rename(tmp_path / "talk.fr.txt")
    (tmp_path / "@eaDir").mkdir()
    (tmp_path / "@eaDir" / "talk.mp3").write_bytes(b"x")
    sentinel_after(hints, tmp_path)
    assert [path.name for path in hints.all()] == ["zz-sentinel.mp3"] * len(hints.all())


def test_nested_folders_with_spaces_and_non_ascii(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """Files created deep in new folders with spaces and accents are hinted by their real path."""
    hints = Hints()
    start_watcher(WatchConfig(path=tmp_path), hint=hints)
    deep = tmp_path / "Réunions 2024" / "équipe — été" / "jour n°1"
    deep.mkdir(parents=True)
    source = deep / "Entretien avec Zoë.m4a"
    source.write_bytes(b"x")
    hints.wait_for(source)


def test_non_recursive_watch_ignores_subfolders(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """With recursive = false, only files directly in the root are hinted."""
    (tmp_path / "sub").mkdir()
    hints = Hints()
    start_watcher(WatchConfig(path=tmp_path, recursive=False), hint=hints)
    (tmp_path / "sub" / "deep.mp3").write_bytes(b"x")
    (tmp_path / "newsub").mkdir()
    (tmp_path / "newsub" / "deeper.mp3").write_bytes(b"x")
    sentinel_after(hints, tmp_path)
    assert ignored_hints(hints, "deep.mp3", "deeper.mp3") == []


def test_failing_hint_does_not_stop_the_observer(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """If the daemon's hint raises once, later events are still delivered."""
    hints = Hints()
    failures: list[Path] = []

    def flaky(path: Path) -> None:
        if not failures:
            failures.append(path)
            raise RuntimeError("loop is busy")
        hints(path)

    start_watcher(WatchConfig(path=tmp_path), hint=flaky)
    (tmp_path / "first.mp3").write_bytes(b"x")
    wait_until(lambda: bool(failures), "the first hint to fail")
    second = tmp_path / "second.mp3"
    second.write_bytes(b"x")
    hints.wait_for(second)


# --- polling -----------------------------------------------------------------------------------


def test_poll_always_uses_polling_and_still_hints(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """poll = "always" watches by polling, and creations, renames and deletions are hinted."""
    doomed = tmp_path / "old.mp3"
    doomed.write_bytes(b"x")
    hints = Hints()
    watcher = start_watcher(
        WatchConfig(path=tmp_path, poll="always"), hint=hints, poll_interval=0.05
    )
    assert watcher.root_modes()[tmp_path].startswith("polling")
    created = tmp_path / "sub dir" / "new.mp3"
    created.parent.mkdir()
    created.write_bytes(b"x")
    partial = tmp_path / "dl.mp3.part"
    partial.write_bytes(b"x")
    doomed.unlink()
    hints.wait_for(created, doomed)
    partial.rename(tmp_path / "dl.mp3")
    hints.wait_for(tmp_path / "dl.mp3")
    assert partial not in hints.all()


def test_polling_never_hints_ignored_files(tmp_path: Path, start_watcher: StartWatcher) -> None:
    """The polling observer applies the same rules: outputs and pruned folders stay silent."""
    hints = Hints()
    start_watcher(WatchConfig(path=tmp_path, poll="always"), hint=hints, poll_interval=0.05)
    (tmp_path / "talk.txt").write_bytes(b"x")
    (tmp_path / "#recycle").mkdir()
    (tmp_path / "#recycle" / "old.mp3").write_bytes(b"x")
    sentinel_after(hints, tmp_path)
    assert ignored_hints(hints, "talk.txt", "old.mp3") == []


def test_auto_polls_a_root_on_a_network_filesystem(
    tmp_path: Path, start_watcher: StartWatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """poll = "auto" polls a root whose mount is NFS (mount table substituted), and hints."""
    real = os.path.realpath(tmp_path)
    monkeypatch.setattr(watcher_module, "_mount_table", lambda: [("/", "ext4"), (real, "nfs4")])
    hints = Hints()
    watcher = start_watcher(WatchConfig(path=tmp_path), hint=hints, poll_interval=0.05)
    assert watcher.root_modes() == {tmp_path: "polling: network file system (nfs4)"}
    source = tmp_path / "talk.mp3"
    source.write_bytes(b"x")
    hints.wait_for(source)


def test_poll_never_keeps_native_events_on_network_filesystem(
    tmp_path: Path, start_watcher: StartWatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """poll = "never" uses native events even where auto would poll."""
    real = os.path.realpath(tmp_path)
    monkeypatch.setattr(watcher_module, "_mount_table", lambda: [(real, "cifs")])
    watcher = start_watcher(WatchConfig(path=tmp_path, poll="never"), hint=Hints())
    assert watcher.root_modes() == {tmp_path: "native"}


class _ExhaustedInotify(InotifyObserver):
    """An inotify observer that fails to start as when fs.inotify.max_user_watches is reached."""

    def start(self) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


def test_inotify_limit_falls_back_to_polling_with_advice(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """ENOSPC from inotify switches the root to polling and logs how to raise the limit."""
    hints = Hints()
    watcher = Watcher([WatchConfig(path=tmp_path)], hints, poll_interval=0.05)
    watcher._make_native_observer = _ExhaustedInotify
    with capture_logs() as logs:
        watcher.start()
        try:
            assert watcher.wait_ready(DEADLINE)
            assert watcher.root_modes() == {tmp_path: "polling: inotify limit reached"}
            source = tmp_path / "talk.mp3"
            source.write_bytes(b"x")
            hints.wait_for(source)
        finally:
            watcher.stop()
    advice = [entry for entry in logs if entry["event"] == "watch_root_polling"]
    assert advice and advice[0]["log_level"] == "warning"
    assert "fs.inotify.max_user_watches=524288" in advice[0]["advice"]
    assert "/etc/sysctl.d/" in advice[0]["advice"]


# --- roots that come and go --------------------------------------------------------------------


def test_missing_root_is_reported_then_watched_when_it_appears(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """A root missing at start is reported; once created, its files are all hinted and watched."""
    root = tmp_path / "later"
    hints = Hints()
    with capture_logs() as logs:
        watcher = start_watcher(WatchConfig(path=root), hint=hints, root_retry_seconds=0.05)
    assert "missing" in watcher.root_problems()[root]
    assert any(entry["event"] == "watch_root_missing" for entry in logs)
    staging = tmp_path / "staging"
    (staging / "sub").mkdir(parents=True)
    (staging / "early.mp3").write_bytes(b"x")
    (staging / "sub" / "early2.wav").write_bytes(b"x")
    staging.rename(root)
    hints.wait_for(root / "early.mp3", root / "sub" / "early2.wav")
    wait_until(lambda: watcher.root_problems() == {}, "the root to be watched")
    late = root / "late.mp3"
    late.write_bytes(b"x")
    hints.wait_for(late)


def test_vanished_root_is_not_reported_as_deleted_files(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """A root moved away (like an unmounted share) is reported missing; its files are not hinted."""
    root = tmp_path / "inbox"
    root.mkdir()
    for name in ["a.mp3", "b.mp3"]:
        (root / name).write_bytes(b"x")
    hints = Hints()
    watcher = start_watcher(
        WatchConfig(path=root, poll="always"),
        hint=hints,
        poll_interval=0.05,
        root_retry_seconds=0.05,
    )
    root.rename(tmp_path / "away")
    wait_until(lambda: root in watcher.root_problems(), "the root to be reported missing")
    assert hints.all() == []


def test_root_replaced_by_empty_folder_hints_no_deletions(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """Like a share unmounted over its empty mount point: files seem gone but are not hinted."""
    root = tmp_path / "inbox"
    root.mkdir()
    for name in ["a.mp3", "b.mp3"]:
        (root / name).write_bytes(b"x")
    hints = Hints()
    watcher = start_watcher(
        WatchConfig(path=root, poll="always"),
        hint=hints,
        poll_interval=0.02,
        root_retry_seconds=0.3,
    )
    first_observer = watcher._roots[0].observer
    root.rename(tmp_path / "away")
    root.mkdir()
    wait_until(
        lambda: watcher._roots[0].observer not in (None, first_observer),
        "the observer to be restarted on the new folder",
    )
    sentinel_after(hints, root)
    assert ignored_hints(hints, "a.mp3", "b.mp3") == []


def test_root_deleted_and_recreated_is_watched_again(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """After the root folder is removed and made again, new files in it are hinted."""
    root = tmp_path / "inbox"
    root.mkdir()
    hints = Hints()
    watcher = start_watcher(WatchConfig(path=root), hint=hints, root_retry_seconds=0.05)
    root.rmdir()
    wait_until(lambda: root in watcher.root_problems(), "the root to be reported missing")
    root.mkdir()
    wait_until(lambda: watcher.root_problems() == {}, "the root to be watched again")
    source = root / "talk.mp3"
    source.write_bytes(b"x")
    hints.wait_for(source)


def test_root_that_is_a_file_is_a_problem(tmp_path: Path, start_watcher: StartWatcher) -> None:
    """A root path naming a file is not watched, and root_problems says so."""
    not_a_folder = tmp_path / "inbox"
    not_a_folder.write_bytes(b"")
    watcher = start_watcher(WatchConfig(path=not_a_folder), hint=Hints())
    assert "not a folder" in watcher.root_problems()[not_a_folder]
    assert watcher.root_modes() == {}


def test_dead_observer_is_restarted_and_root_rescanned(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """An observer thread that dies is replaced, the root is scanned, and new files are hinted."""
    existing = tmp_path / "existing.mp3"
    existing.write_bytes(b"x")
    hints = Hints()
    watcher = start_watcher(WatchConfig(path=tmp_path), hint=hints, root_retry_seconds=0.05)
    observer = watcher._roots[0].observer
    assert isinstance(observer, BaseObserver)
    with capture_logs() as logs:
        observer.stop()
        observer.join(DEADLINE)
        hints.wait_for(existing)
    assert any(entry["event"] == "observer_restarted" for entry in logs)
    wait_until(lambda: watcher._roots[0].observer not in (None, observer), "a new observer")
    source = tmp_path / "after.mp3"
    source.write_bytes(b"x")
    hints.wait_for(source)


def test_wait_ready_with_one_root_missing(tmp_path: Path, start_watcher: StartWatcher) -> None:
    """wait_ready is true when every existing root is watched, even if another root is missing."""
    present = tmp_path / "present"
    present.mkdir()
    watcher = start_watcher(
        WatchConfig(path=present), WatchConfig(path=tmp_path / "absent"), hint=Hints(), ready=False
    )
    assert watcher.wait_ready(DEADLINE)
    assert list(watcher.root_problems()) == [tmp_path / "absent"]
    assert list(watcher.root_modes()) == [present]


def test_wait_ready_is_false_before_start(tmp_path: Path) -> None:
    """A watcher that was never started is not ready."""
    watcher = Watcher([WatchConfig(path=tmp_path)], Hints())
    assert watcher.wait_ready(0.05) is False


def test_stop_ends_every_thread_and_hints_stop(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """stop() joins every keeper and observer thread, whatever state each root was in."""
    before = set(threading.enumerate())
    (tmp_path / "polled").mkdir()
    hints = Hints()
    watcher = start_watcher(
        WatchConfig(path=tmp_path / "polled", poll="always"),
        WatchConfig(path=tmp_path / "native"),
        WatchConfig(path=tmp_path / "missing"),
        hint=hints,
        poll_interval=0.05,
    )
    assert len(set(threading.enumerate()) - before) >= 3
    watcher.stop()
    # No thread of ours is left, so nothing can hint any more.
    assert [t.name for t in set(threading.enumerate()) - before if t.is_alive()] == []


# --- scanning ----------------------------------------------------------------------------------


def test_scan_finds_ten_thousand_files_and_prunes_ignored_folders(tmp_path: Path) -> None:
    """scan() returns every accepted file of a 10,000-file tree and nothing from pruned folders."""
    expected: set[Path] = set()
    for group in range(20):
        folder = tmp_path / f"group {group}" / "inner"
        folder.mkdir(parents=True)
        for index in range(500):
            path = folder / f"rec-{index}.mp3"
            path.touch()
            expected.add(path)
    for pruned in ["@eaDir", ".stversions", "#recycle", "lost+found"]:
        (tmp_path / "group 0" / pruned).mkdir()
        (tmp_path / "group 0" / pruned / "copy.mp3").touch()
    (tmp_path / "group 1" / "inner" / "rec-0.txt").touch()
    found = list(scan(WatchConfig(path=tmp_path)))
    assert len(found) == len(set(found)) == 10_000
    assert set(found) == expected


def test_scan_does_not_follow_symlinked_folders(tmp_path: Path) -> None:
    """A symlink loop or a link to another folder is not followed; linked files are listed."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.mp3").touch()
    (tmp_path / "real" / "loop").symlink_to(tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "b.mp3").touch()
    (tmp_path / "elsewhere").symlink_to(outside)
    (tmp_path / "link.mp3").symlink_to(tmp_path / "real" / "a.mp3")
    (tmp_path / "broken.mp3").symlink_to(tmp_path / "nowhere.mp3")
    try:
        found = set(scan(WatchConfig(path=tmp_path)))
        anywhere = set(scan(WatchConfig(path=tmp_path, follow_links="anywhere")))
    finally:
        shutil.rmtree(outside)
    # The link out is not walked into; it is listed itself, so that status says why its
    # files are not transcribed (unless the watch follows links anywhere).
    assert found == {tmp_path / "real" / "a.mp3", tmp_path / "link.mp3", tmp_path / "elsewhere"}
    assert anywhere == {tmp_path / "real" / "a.mp3", tmp_path / "link.mp3"}


def test_scan_survives_a_folder_vanishing_mid_walk(tmp_path: Path) -> None:
    """A folder deleted while scan() walks is logged and skipped; the rest is still returned."""
    (tmp_path / "a.mp3").touch()
    for folder in ["b", "c"]:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{folder}.mp3").touch()
    walk = scan(WatchConfig(path=tmp_path))
    with capture_logs() as logs:
        first = next(walk)
        shutil.rmtree(tmp_path / "c")
        rest = list(walk)
    assert first == tmp_path / "a.mp3"
    assert rest == [tmp_path / "b" / "b.mp3"]
    assert [entry["event"] for entry in logs] == ["scan_folder_unreadable"]
    assert logs[0]["folder"] == str(tmp_path / "c")


def test_scan_of_missing_root_is_empty(tmp_path: Path) -> None:
    """Scanning a root that does not exist yields nothing instead of raising."""
    with capture_logs():
        assert list(scan(WatchConfig(path=tmp_path / "absent"))) == []


def test_scan_respects_recursive_false(tmp_path: Path) -> None:
    """With recursive = false, scan lists only the root's own files."""
    (tmp_path / "top.mp3").touch()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.mp3").touch()
    assert list(scan(WatchConfig(path=tmp_path, recursive=False))) == [tmp_path / "top.mp3"]


def test_scan_folder_inside_pruned_folder_is_empty(tmp_path: Path) -> None:
    """scan_folder lists a subfolder's files, but nothing below a pruned ancestor."""
    (tmp_path / "ok" / "x").mkdir(parents=True)
    (tmp_path / "ok" / "x" / "a.mp3").touch()
    (tmp_path / "@eaDir" / "x").mkdir(parents=True)
    (tmp_path / "@eaDir" / "x" / "a.mp3").touch()
    watch = WatchConfig(path=tmp_path)
    assert list(scan_folder(watch, tmp_path / "ok")) == [tmp_path / "ok" / "x" / "a.mp3"]
    assert list(scan_folder(watch, tmp_path / "@eaDir" / "x")) == []
    assert list(scan_folder(watch, tmp_path.parent)) == []


# --- network file system detection ----------------------------------------------------------------

MOUNTINFO = """\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:40 / /srv rw,relatime shared:5 - xfs /dev/vdb rw
31 30 0:41 / /srv/nas rw,relatime shared:6 master:2 - nfs4 server:/export rw,vers=4.2
32 22 0:42 / /home/me/remote\\040box rw,nosuid - fuse.sshfs me@host:/ rw
33 22 0:43 / /mnt/win rw - cifs //pc/share rw
"""


def test_parse_mountinfo_reads_fstype_after_optional_fields() -> None:
    """mountinfo lines with optional fields and escaped spaces give (mount point, fstype)."""
    mounts = parse_mountinfo(MOUNTINFO)
    assert ("/srv/nas", "nfs4") in mounts
    assert ("/home/me/remote box", "fuse.sshfs") in mounts
    assert len(mounts) == 5


def test_longest_mount_point_decides_the_fstype() -> None:
    """The deepest mount containing a path gives its type; a mere name prefix does not count."""
    mounts = parse_mountinfo(MOUNTINFO)
    assert fstype_of("/srv/nas/inbox", mounts) == "nfs4"
    assert fstype_of("/srv/nasty", mounts) == "xfs"
    assert fstype_of("/srv", mounts) == "xfs"
    assert fstype_of("/home/me/remote box/in", mounts) == "fuse.sshfs"
    assert fstype_of("/tmp/x", mounts) == "ext4"
    assert fstype_of("/x", []) is None


def test_other_mount_table_formats() -> None:
    """/proc/mounts and the BSD/macOS `mount` output are parsed too."""
    proc = "server:/export /srv/nas nfs rw 0 0\n/dev/sda1 / ext4 rw 0 0\n"
    assert parse_proc_mounts(proc) == [("/srv/nas", "nfs"), ("/", "ext4")]
    bsd = (
        "/dev/disk3s1 on / (apfs, sealed, local, read-only, journaled)\n"
        "//me@nas/share on /Volumes/My Share (smbfs, nodev, nosuid, mounted by me)\n"
    )
    assert parse_bsd_mount_output(bsd) == [("/", "apfs"), ("/Volumes/My Share", "smbfs")]


@pytest.mark.parametrize(
    ("fstype", "network"),
    [
        ("nfs", True),
        ("NFS4", True),
        ("cifs", True),
        ("smb3", True),
        ("9p", True),
        ("virtiofs", True),
        ("fuse", True),
        ("fuse.rclone", True),
        ("ceph", True),
        ("ext4", False),
        ("btrfs", False),
        ("tmpfs", False),
        ("apfs", False),
    ],
)
def test_network_fstype_classification(fstype: str, network: bool) -> None:
    """Network and FUSE file systems are flagged; local disk file systems are not."""
    assert is_network_fstype(fstype) is network


def test_local_tmp_path_is_not_network(tmp_path: Path) -> None:
    """The test's own temp folder is on a local file system with a known type."""
    network, fstype = is_network_filesystem(tmp_path)
    assert network is False
    assert fstype != "unknown"
