"""Tests for watcherd.filters: which paths may be sources and which folders are pruned."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path, PurePath

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from watcherd.config import WatchConfig
from watcherd.filters import AUDIO_VIDEO_EXTENSIONS, SourceFilter, _Globs, has_audio_video_suffix
from watcherd.outputs.naming import suffix_of
from watcherd.watcher import watch_for

ROOT = Path("/srv/inbox")


def rules(**overrides: object) -> SourceFilter:
    """A filter for a watch on ROOT with the given WatchConfig overrides."""
    return SourceFilter(WatchConfig(path=ROOT, **overrides))  # type: ignore[arg-type]


# --- extensions ----------------------------------------------------------------------------------


def test_extension_set_covers_every_documented_format() -> None:
    """Every format listed in docs/gladia-contract.md, and the extra common ones, is known."""
    documented = {
        "aac", "ac3", "eac3", "flac", "m4a", "mp2", "mp3", "ogg", "opus", "wav",
        "3g2", "3gp", "avi", "flv", "m4v", "mkv", "mov", "mp4", "wmv",
        "webm", "oga", "wma", "amr", "aiff", "aif", "mpeg", "mpg", "mts",
    }  # fmt: skip
    assert documented <= AUDIO_VIDEO_EXTENSIONS
    assert all(ext == ext.lower() and not ext.startswith(".") for ext in AUDIO_VIDEO_EXTENSIONS)


@pytest.mark.parametrize("name", ["talk.mp3", "clip.mkv", "memo.m4a", "x.3gp", "a.b.flac"])
def test_default_accepts_audio_and_video(name: str) -> None:
    """With no include globs, a file with an audio or video extension is accepted."""
    assert rules().accepts(ROOT / name)
    assert rules().reason_ignored(ROOT / name) is None


@pytest.mark.parametrize("name", ["TALK.MP3", "Clip.Mp4", "memo.WAV"])
def test_extension_match_ignores_case(name: str) -> None:
    """Extensions match whatever their case."""
    assert rules().accepts(ROOT / name)
    assert has_audio_video_suffix(Path(name))


@pytest.mark.parametrize("name", ["notes.pdf", "README", "photo.jpg", "mp3"])
def test_default_rejects_other_files_with_a_reason(name: str) -> None:
    """Without include globs, anything that is not audio or video is refused, and says why."""
    reason = rules().reason_ignored(ROOT / name)
    assert reason is not None and "extension" in reason


# --- outputs, temp and partial files -------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "talk.txt",
        "talk.json",
        "talk.srt",
        "talk.vtt",
        "talk.md",
        "talk.fr.txt",
        "talk.wav.txt",
        "TALK.JSON",
        ".talk.txt.watcherd-tmp-3f2a",
        "talk.mp3.watcherd-tmp-1",
    ],
)
def test_outputs_and_our_temp_files_are_never_sources(name: str) -> None:
    """Transcripts and watcherd's temp files are refused even when include accepts everything."""
    assert not rules().accepts(ROOT / name)
    assert not rules(include=("*",)).accepts(ROOT / name)


@pytest.mark.parametrize(
    "name",
    [
        "talk.mp3.part",
        "talk.mp3.crdownload",
        "talk.mp3.download",
        "talk.mp3.filepart",
        "talk.mp3.partial",
        "talk.mp3.tmp",
        "~syncthing~talk.mp3.tmp",
        ".syncthing.talk.mp3.tmp",
        "._talk.mp3",
        ".DS_Store",
        "Thumbs.db",
        "THUMBS.DB",
        "desktop.ini",
        "talk.mp3.PART",
    ],
)
def test_partial_and_system_files_are_never_sources(name: str) -> None:
    """Files other tools are still writing, and OS clutter, are refused even with include "*"."""
    assert not rules(include=("*",)).accepts(ROOT / name)
    assert rules(include=("*",)).reason_ignored(ROOT / name) is not None


@pytest.mark.parametrize("name", [".talk.mp3", ".talk.mp3.AbC123", "sub/.hidden.wav"])
def test_hidden_files_are_ignored(name: str) -> None:
    """Hidden files (rsync's in-progress copies among them) are never sources."""
    assert not rules().accepts(ROOT / name)
    assert not rules(include=("*",)).accepts(ROOT / name)


# --- folders -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "folder",
    [
        "@eaDir",
        "@EADIR",
        "#recycle",
        ".stfolder",
        ".stversions",
        ".Trash-1000",
        "$RECYCLE.BIN",
        "lost+found",
        ".git",
        "System Volume Information",
    ],
)
def test_system_and_hidden_folders_are_pruned(folder: str) -> None:
    """Ignored folders are pruned, and files anywhere below them are refused."""
    assert rules().prunes(ROOT / folder)
    assert rules().prunes(ROOT / "deep" / folder)
    assert not rules().accepts(ROOT / folder / "talk.mp3")
    assert not rules().accepts(ROOT / "deep" / folder / "more" / "talk.mp3")
    reason = rules().reason_ignored(ROOT / folder / "talk.mp3")
    assert reason is not None and folder in reason


def test_ordinary_folders_are_walked() -> None:
    """A normal subfolder is not pruned and its media files are accepted."""
    assert not rules().prunes(ROOT / "2024" / "March")
    assert rules().accepts(ROOT / "2024" / "March" / "meeting.mp3")


def test_root_is_never_pruned_even_if_hidden(tmp_path: Path) -> None:
    """Only names below the root count: a root that is itself a hidden folder still works."""
    hidden_root = tmp_path / ".inbox"
    source_filter = SourceFilter(WatchConfig(path=hidden_root))
    assert not source_filter.prunes(hidden_root)
    assert source_filter.accepts(hidden_root / "talk.mp3")


def test_paths_outside_the_root_and_the_root_itself_are_refused() -> None:
    """A path outside the root (or a sibling sharing its prefix) and the root are not sources."""
    assert not rules().accepts(Path("/srv/other/talk.mp3"))
    assert not rules().accepts(Path("/srv/inbox2/talk.mp3"))
    assert not rules().accepts(ROOT)
    assert rules().prunes(Path("/srv/other"))
    assert not rules().prunes(ROOT)
    reason = rules().reason_ignored(Path("/srv/other/talk.mp3"))
    assert reason is not None and "outside" in reason


def test_unnormalised_paths_are_judged_by_where_they_point() -> None:
    """A path with ".." or "." components is normalised before the rules apply."""
    assert rules().accepts(Path("/srv/inbox/a/../talk.mp3"))
    assert not rules().accepts(Path("/srv/inbox/../talk.mp3"))


# --- include and exclude -------------------------------------------------------------------------


def test_include_matches_bare_name_or_relative_path() -> None:
    """Include globs are tried on the name and on the "/"-separated path from the root."""
    by_name = rules(include=("*.dat",))
    assert by_name.accepts(ROOT / "deep" / "x.dat")
    assert not by_name.accepts(ROOT / "x.mp3")
    by_path = rules(include=("interviews/*",))
    assert by_path.accepts(ROOT / "interviews" / "anything.bin")
    assert by_path.accepts(ROOT / "interviews" / "2024" / "talk.mp3")
    assert not by_path.accepts(ROOT / "music" / "song.mp3")
    reason = by_path.reason_ignored(ROOT / "music" / "song.mp3")
    assert reason is not None and "include" in reason


def test_include_and_exclude_ignore_case() -> None:
    """Globs match regardless of the case of the glob or of the file name."""
    source_filter = rules(include=("*.MP3",), exclude=("*DRAFT*",))
    assert source_filter.accepts(ROOT / "talk.mp3")
    assert source_filter.accepts(ROOT / "Talk.Mp3")
    assert not source_filter.accepts(ROOT / "draft-talk.mp3")


def test_exclude_wins_over_include_and_names_the_glob() -> None:
    """A file matching both include and exclude is refused, and the reason quotes the glob."""
    source_filter = rules(include=("*.mp3",), exclude=("secret-*",))
    assert source_filter.accepts(ROOT / "talk.mp3")
    assert not source_filter.accepts(ROOT / "secret-talk.mp3")
    assert source_filter.reason_ignored(ROOT / "secret-talk.mp3") == "excluded by 'secret-*'"


@pytest.mark.parametrize("glob", ["archive", "archive/*", "*/old/*", "ARCHIVE"])
def test_exclude_globs_prune_whole_folders(glob: str) -> None:
    """An exclude glob naming a folder, or everything below it, prunes that folder."""
    source_filter = rules(exclude=(glob,))
    folder = ROOT / "archive" if "old" not in glob else ROOT / "x" / "old"
    assert source_filter.prunes(folder)
    assert not source_filter.accepts(folder / "talk.mp3")
    assert not source_filter.prunes(ROOT / "current")
    assert source_filter.accepts(ROOT / "current" / "talk.mp3")


def test_exclude_on_file_suffix_does_not_prune_folders() -> None:
    """An exclude meant for files leaves ordinary folders walkable."""
    source_filter = rules(exclude=("*.wav",))
    assert not source_filter.prunes(ROOT / "recordings")
    assert source_filter.accepts(ROOT / "recordings" / "a.mp3")
    assert not source_filter.accepts(ROOT / "recordings" / "a.wav")


# --- recursive -----------------------------------------------------------------------------------


def test_non_recursive_watch_sees_only_direct_children() -> None:
    """With recursive = false, direct children are accepted and every subfolder is pruned."""
    flat = rules(recursive=False)
    assert flat.accepts(ROOT / "talk.mp3")
    assert flat.prunes(ROOT / "sub")
    assert not flat.accepts(ROOT / "sub" / "talk.mp3")
    reason = flat.reason_ignored(ROOT / "sub" / "talk.mp3")
    assert reason is not None and "recursive" in reason


def test_spaces_and_non_ascii_names_are_ordinary() -> None:
    """Spaces and non-ASCII letters in folders and names change nothing."""
    source_filter = rules(include=("réunions/*",))
    path = ROOT / "réunions" / "été 2024" / "Entretien n°1 — Zoë.MP3"
    assert source_filter.relative(path) == "réunions/été 2024/Entretien n°1 — Zoë.MP3"
    assert source_filter.accepts(path)


# --- watch_for -----------------------------------------------------------------------------------


def test_watch_for_picks_the_innermost_root_that_contains_the_path(tmp_path: Path) -> None:
    """The longest containing root owns a path; paths outside every root belong to none."""
    outer = WatchConfig(path=tmp_path / "a")
    inner = WatchConfig(path=tmp_path / "a" / "b", include=("*.dat",))
    watches = [outer, inner]
    assert watch_for(tmp_path / "a" / "talk.mp3", watches) is outer
    assert watch_for(tmp_path / "a" / "b" / "talk.dat", watches) is inner
    assert watch_for(tmp_path / "elsewhere" / "talk.mp3", watches) is None


def test_watch_for_returns_none_for_ignored_paths(tmp_path: Path) -> None:
    """A path inside a root that its filter refuses (an output, a hidden file) has no watch."""
    watches = [WatchConfig(path=tmp_path)]
    assert watch_for(tmp_path / "talk.txt", watches) is None
    assert watch_for(tmp_path / ".talk.mp3", watches) is None
    assert watch_for(tmp_path / "@eaDir" / "talk.mp3", watches) is None
    assert watch_for(tmp_path / "talk.mp3", watches) is watches[0]


# -- the globs as one expression: the same answers as fnmatch, glob by glob ------------------

_GLOB_CHARS = st.sampled_from(list("ab.*?[]!-/~ A"))
_NAME_CHARS = st.sampled_from(list("ab.-/~ AB"))


@given(globs=st.lists(st.text(_GLOB_CHARS, max_size=6), max_size=5),
       texts=st.lists(st.text(_NAME_CHARS, max_size=8), min_size=1, max_size=2))
def test_the_joined_globs_name_the_same_first_match_as_fnmatch(globs: list[str],
                                                               texts: list[str]) -> None:
    """_Globs.first is the first glob, in the order written, that fnmatchcase matches
    (case-blind) against any of the texts: the joined expression only answers "none" sooner."""
    expected = next((glob for glob in globs
                     if any(fnmatchcase(text.lower(), glob.lower()) for text in texts)), None)
    assert _Globs(tuple(globs)).first(*texts) == expected


@given(name=st.text(st.characters(blacklist_characters="/\x00"), max_size=12))
def test_a_suffix_is_read_as_pathlib_reads_it(name: str) -> None:
    """suffix_of, used on every file name a scan finds, agrees with PurePath.suffix."""
    assume(name not in ("", ".", ".."))
    assert suffix_of(name) == PurePath(name).suffix
    assert has_audio_video_suffix(name) == has_audio_video_suffix(Path(name))
