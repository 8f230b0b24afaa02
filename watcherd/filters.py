"""Which paths under a watch root may be sources, and which folders are never worth a look."""

from __future__ import annotations

import os
import re
from fnmatch import translate
from pathlib import Path

from watcherd.config import WatchConfig
from watcherd.outputs import is_output_or_temp
from watcherd.outputs.naming import suffix_of

#: Extensions (lower case, without the dot) of the formats Gladia accepts (its limits, in
#: docs/gladia-contract.md), plus common ones its content-based detection also reads.
AUDIO_VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {
        # audio, as documented
        "aac", "ac3", "eac3", "flac", "m4a", "mp2", "mp3", "ogg", "opus", "wav",
        # video, as documented
        "3g2", "3gp", "avi", "flv", "m4v", "mkv", "mov", "mp4", "wmv",
        # detected by content, common in the wild
        "webm", "oga", "wma", "amr", "aiff", "aif", "mpeg", "mpg", "mts",
    }
)  # fmt: skip

#: Name globs (lower case) of files that other tools are still writing or that are not recordings.
_PARTIAL_FILE_GLOBS: tuple[str, ...] = (
    "*.part",  # Firefox, curl, wget and many others
    "*.crdownload",  # Chrome
    "*.download",  # Safari (a folder, but some tools make a file)
    "*.filepart",  # WinSCP
    "*.partial",  # rclone, Internet Explorer, some NAS apps
    "*.tmp",
    "~syncthing~*.tmp",
    ".syncthing.*.tmp",
    "*.!ut",  # uTorrent
    "*.!qb",  # qBittorrent
    "*.!bt",  # BitComet and others
    "*.!sync",  # Resilio Sync
    "*.aria2",
    "*.opdownload",  # Opera
    "*.crswap",  # Chrome's File System Access writes
    "*.part-frag*",  # yt-dlp fragments
    "*.ytdl",  # yt-dlp state
    "*.swp",
    "*~",  # editors' backups
    "._*",  # macOS AppleDouble
    ".ds_store",
    "thumbs.db",
    "desktop.ini",
)

#: Folder names (lower case; globs allowed) never descended into: NAS metadata, recycle bins,
#: Syncthing's own folders, file system bookkeeping.
_PRUNED_FOLDER_GLOBS: tuple[str, ...] = (
    "@eadir",  # Synology thumbnails
    "#recycle",  # Synology recycle bin
    "@recycle",  # QNAP
    "@recently-snapshot",  # QNAP
    "#snapshot",
    ".stfolder",
    ".stversions",
    "*.download",  # Safari keeps the file being downloaded inside NAME.download/
    ".trash-*",
    "$recycle.bin",
    "system volume information",
    "lost+found",
)


def has_audio_video_suffix(path: Path | str) -> bool:
    """True when the file name ends in one of AUDIO_VIDEO_EXTENSIONS (any case)."""
    return suffix_of(os.path.basename(path))[1:].lower() in AUDIO_VIDEO_EXTENSIONS


class _Globs:
    """Globs matched case-blind, the first that matches named as it was spelled.

    One regular expression of them all answers "none matches" (nearly every file, for the
    system-file and exclude globs) in one call instead of one per glob: at 100,000 files that
    was a tenth of a first start's time (issue 22 item 3).
    """

    def __init__(self, spelled: tuple[str, ...]) -> None:
        self.spelled = spelled
        self._each = tuple(re.compile(translate(glob.lower())) for glob in spelled)
        self._any = re.compile("|".join(p.pattern for p in self._each)) if spelled else None

    def __bool__(self) -> bool:
        return bool(self.spelled)

    def first(self, *texts: str) -> str | None:
        """The first glob (in order) matching any of ``texts`` (any case), or None."""
        if self._any is None:
            return None
        lowered = [text.lower() for text in texts]
        if not any(self._any.match(text) for text in lowered):
            return None
        for glob, pattern in zip(self.spelled, self._each, strict=True):
            if any(pattern.match(text) for text in lowered):
                return glob
        return None  # pragma: no cover - the joined expression matched, so one of them does


_PARTIAL_FILES = _Globs(_PARTIAL_FILE_GLOBS)
_PRUNED_FOLDERS = _Globs(_PRUNED_FOLDER_GLOBS)


class SourceFilter:
    """The rules of one watch: which files under its root may be sources, which folders to skip."""

    def __init__(self, watch: WatchConfig) -> None:
        self.watch = watch
        self.root = Path(os.path.abspath(watch.path))
        self._root_text = str(self.root)
        # Globs keep the user's spelling for messages but match lower-cased.
        self._include = _Globs(watch.include)
        self._exclude = _Globs(watch.exclude)

    def relative(self, path: Path) -> str | None:
        """``path`` relative to the root with "/" separators, "" for the root, None if outside."""
        text = os.path.abspath(path)
        if text == self._root_text:
            return ""
        prefix = self._root_text if self._root_text.endswith(os.sep) else self._root_text + os.sep
        if not text.startswith(prefix):
            return None
        return text[len(prefix) :].replace(os.sep, "/")

    def accepts(self, path: Path) -> bool:
        """True for a file under the root that may be a source (the worker still checks it)."""
        return self.reason_ignored(path) is None

    def prunes(self, folder: Path) -> bool:
        """True for a folder under the root never to descend into (the root itself is never)."""
        rel = self.relative(folder)
        if rel is None:
            return True
        if rel == "":
            return False
        return self._folder_reason(rel) is not None

    def reason_ignored(self, path: Path) -> str | None:
        """Why ``path`` is not a possible source (for logs and ``doctor``); None if accepted."""
        rel = self.relative(path)
        if rel is None:
            return f"outside the watch root {self.root}"
        if rel == "":
            return "the watch root itself"
        folders, _, name = rel.rpartition("/")
        if folders:
            parts = folders.split("/")
            if not self.watch.recursive:
                return "in a subfolder, and this watch has recursive = false"
            for depth in range(len(parts)):
                reason = self._folder_reason("/".join(parts[: depth + 1]))
                if reason is not None:
                    return f"inside {parts[depth]!r}: {reason}"
        return self.file_reason(rel, name)

    def file_reason(self, rel: str, name: str) -> str | None:
        """Why a file is ignored judging by its own name only (its folders already passed)."""
        if name.startswith("."):
            return "a hidden file"
        if is_output_or_temp(name):
            return "a transcript output or a temp file of watcherd"
        partial = _PARTIAL_FILES.first(name)
        if partial is not None:
            return f"a partial, temporary or system file ({partial})"
        excluded = self._excluded(rel, name)
        if excluded is not None:
            return f"excluded by {excluded!r}"
        if self._include:
            if self._include.first(rel, name) is None:
                return "matches no include glob"
        elif not has_audio_video_suffix(name):
            return "not an audio or video file extension (set include to accept it)"
        return None

    def _folder_reason(self, rel: str) -> str | None:
        """Why the folder at ``rel`` (not the root) is skipped, None if it is walked."""
        _, _, name = rel.rpartition("/")
        if not self.watch.recursive:
            return "a subfolder, and this watch has recursive = false"
        if name.startswith("."):
            return "a hidden folder"
        pruned = _PRUNED_FOLDERS.first(name)
        if pruned is not None:
            return "a system, recycle-bin or sync-tool folder"
        # "archive", "archive/*" and "*/old/*" all exclude a whole folder: a trailing "/" lets
        # a glob written for the files below it match the folder itself.
        excluded = self._excluded(rel, name) or self._exclude.first(rel + "/")
        if excluded is not None:
            return f"excluded by {excluded!r}"
        return None

    def _excluded(self, rel: str, name: str) -> str | None:
        """The exclude glob (as the user wrote it) that matches, or None."""
        return self._exclude.first(rel, name)
