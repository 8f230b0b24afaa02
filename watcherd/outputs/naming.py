"""Output names: the base a source's outputs are named after, and what is ours in a folder.

Any source name works: outputs keep the raw stem (bytes that are not UTF-8 included), and a
stem too long for ``NAME.<lang>.txt`` plus the temp file to fit 255 bytes is shortened
deterministically (:func:`output_base`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from watcherd.display import printable
from watcherd.outputs.formats import FORMATS, TRANSLATED_FORMATS
from watcherd.outputs.job import LANGUAGE_MAX
from watcherd.outputs.settings import OutputSettings
from watcherd.outputs.summary import SUMMARY_SUFFIX
from watcherd.outputs.templates import DEFAULT_NAME, UNKNOWN_LANGUAGE, fill

TEMP_MARKER: str = ".watcherd-tmp"
OUTPUT_SUFFIXES: frozenset[str] = frozenset(f".{fmt}" for fmt in FORMATS)

# Most filesystems cap one name at 255 bytes; the temp name adds a prefix and a suffix.
NAME_MAX: int = 255
TEMP_RANDOM_HEX: int = 12
# What atomic_write adds around an output's name for its temp file: "." NAME ".watcherd-tmp-" HEX.
_TEMP_OVERHEAD = len(f".{TEMP_MARKER}-") + TEMP_RANDOM_HEX
# The longest suffix any job can add to a base: a translation such as ".<16-char lang>.txt".
_LONGEST_SUFFIX = max(
    *(len(f".{'x' * LANGUAGE_MAX}.{fmt}") for fmt in TRANSLATED_FORMATS),
    *(len(f".{suffix}") for suffix in (*FORMATS, SUMMARY_SUFFIX)),
)
# The longest base name (in bytes) for which every output AND its temp file fit in 255 bytes,
# whatever the job holds: 255 - 21 - 27 = 207. Longer bases are shortened (see _fit_name).
BASE_MAX_BYTES: int = NAME_MAX - _LONGEST_SUFFIX - _TEMP_OVERHEAD
# A shortened base ends in "~" and this many hex digits of the SHA-256 of the full name.
_HASH_CHARS = 12


def suffix_of(name: str) -> str:
    """A file name's last suffix with its dot, as :attr:`pathlib.PurePath.suffix` gives it
    ("" for ".hidden" or "name."), without making a Path (filters run it on every file)."""
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def is_output_or_temp(path: Path | str) -> bool:
    """True for our temp files and for any file whose suffix marks it as a transcript output."""
    name = os.path.basename(path)
    return TEMP_MARKER in name or suffix_of(name).lower() in OUTPUT_SUFFIXES


def is_our_temp(name: str) -> bool:
    """True for a file name :func:`watcherd.outputs.writing.atomic_write` gives its temp files."""
    return name.startswith(".") and f"{TEMP_MARKER}-" in name


def with_suffix(base: Path, suffix: str) -> Path:
    """``base`` with ".``suffix``" appended (an output such as NAME.fr.srt)."""
    # base may itself contain dots (talk.wav), so append rather than use Path.with_suffix.
    return base.with_name(f"{base.name}.{suffix}")


def _fs_bytes(name: str) -> bytes:
    """The bytes the filesystem sees for ``name``; ValueError when no file can have it."""
    try:
        return os.fsencode(name)
    except UnicodeEncodeError as exc:
        # A lone surrogate that surrogateescape did not produce: no file name decodes to it.
        raise ValueError(
            f"{printable(name)} cannot be a file name (it holds characters that do not encode "
            "to bytes); rename the source"
        ) from exc


def cut(name: str, room: int) -> str:
    """The longest prefix of ``name`` whose bytes fit in ``room``, cut between characters.

    A character is a whole UTF-8 sequence or one undecodable byte (a surrogate escape), so
    the prefix's bytes are a prefix of the original bytes and decode back to the same text.
    """
    used = 0
    for index, char in enumerate(name):
        used += len(_fs_bytes(char))
        if used > room:
            return name[:index]
    return name


def _fit_name(name: str) -> str:
    """``name`` itself when its outputs fit the filesystem, else a deterministic short form.

    The short form is the longest prefix of ``name`` that fits (cut between characters), "~",
    and the first 12 hex digits of the SHA-256 of the whole name's bytes: the same name gives
    the same short form, and distinct long names stay distinct.
    """
    raw = _fs_bytes(name)
    if len(raw) <= BASE_MAX_BYTES:
        return name
    tail = "~" + hashlib.sha256(raw).hexdigest()[:_HASH_CHARS]
    return cut(name, BASE_MAX_BYTES - len(tail)) + tail


@dataclass(frozen=True)
class Naming:
    """Where a source's outputs go and what they are called (``output_dir``, ``output_name``).

    ``folder``: the folder the outputs go to (the source's own when None). ``template``: the
    base's name from tokens (:mod:`watcherd.outputs.templates`), ``tokens`` the values of all
    but ``{stem}``, which each candidate fills in.
    """

    folder: Path | None = None
    template: str = DEFAULT_NAME
    tokens: Mapping[str, str] = field(default_factory=dict)

    def name(self, stem: str) -> str:
        """The base's name for this stem (shortened to fit, see :func:`_fit_name`)."""
        if self.template == DEFAULT_NAME:
            return _fit_name(stem)
        return _fit_name(fill(self.template, {**self.tokens, "stem": stem}))

    def base(self, source: Path, stem: str) -> Path:
        """The base for ``source`` under this naming, with ``stem``."""
        return (self.folder or source.parent) / self.name(stem)

    def owns(self, source: Path, base: Path) -> bool:
        """Whether ``base`` is one of the names :func:`output_base` can give ``source``
        under this naming (so a base recorded earlier is kept while the naming holds)."""
        if base in output_base_candidates(source, self):
            return True
        return any(base == self.base(source, f"{source.name}~{n}") for n in range(1, 100))


def naming_for(source: Path, root: Path | None, settings: OutputSettings, *,
               lang: str | None = None, date: str = "") -> Naming:
    """The naming of ``source`` (beneath the watch ``root``) under a watch's settings.

    With ``output_dir``, the source's folder below its root is mirrored beneath it
    (ROOT/a/b/x.mp3 -> OUT/a/b/x.*); a source outside its root (a named file) goes to the top.
    """
    folder: Path | None = None
    if settings.output_dir is not None:
        rel: tuple[str, ...] = ()
        if root is not None and source.parent.is_relative_to(root):
            rel = source.parent.relative_to(root).parts
        folder = settings.output_dir.joinpath(*rel)
    tokens = {"ext": source.suffix[1:], "lang": lang or UNKNOWN_LANGUAGE, "date": date,
              "watch": settings.watch_id}
    return Naming(folder, settings.name, tokens)


def output_base_candidates(source: Path, naming: Naming | None = None) -> list[Path]:
    """The bases outputs of ``source`` take unless another source owns them: stem, then name.

    Each is shortened by :func:`_fit_name` when needed, so this also tells where outputs of a
    long name are found after the journal is lost.
    """
    naming = naming or Naming()
    # "..wav" has the stem "." and "...wav" the stem "..": names of folders, not files.
    by_stem = source.suffix and source.stem not in (".", "..")
    found = [naming.base(source, source.stem)] if by_stem else []
    found.append(naming.base(source, source.name))
    return found


def output_base(source: Path, *, taken: Callable[[Path], bool],
                naming: Naming | None = None) -> Path:
    """The path outputs are named after: DIR/STEM, or DIR/NAME when another source owns DIR/STEM.

    Any name works: raw bytes that are not UTF-8, newlines, quotes, ':'. A base longer than
    :data:`BASE_MAX_BYTES` bytes is shortened deterministically (see :func:`_fit_name`), so
    every output (the longest suffix a job can produce, ".<lang>.txt") and its temp file fit
    the 255-byte name limit whatever the job holds; the formats are not needed. The caller
    records the result (the journal's ``output_base``) and passes it to
    :func:`watcherd.outputs.writing.write_outputs`. In the rare case that both are owned (a
    suffix-less "talk" after "talk.wav" took "talk"), "NAME~1", "NAME~2", ... are tried, so
    two sources never share outputs. ``naming``: the output folder and name template of the
    source's watch (beside it, named after it, when None).
    """
    naming = naming or Naming()
    candidates = output_base_candidates(source, naming)
    for candidate in candidates:
        if not taken(candidate):
            return candidate
    for n in range(1, 100):
        candidate = naming.base(source, f"{source.name}~{n}")
        if not taken(candidate):
            return candidate
    raise ValueError(
        f"every output name for {printable(source)} is used by another source; rename it"
    )


def base_fits(base: Path) -> bool:
    """True when every output of ``base`` (and its temp file) fits the 255-byte name limit.

    A base recorded before long names were shortened may not; compute a new one for it.
    """
    try:
        return len(_fs_bytes(base.name)) <= BASE_MAX_BYTES
    except ValueError:
        return False
