"""Any name the filesystem allows gets outputs next to it: raw bytes, long names, permissions."""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcherd.outputs import (
    BASE_MAX_BYTES,
    FORMATS,
    SUMMARY_SUFFIX,
    TEMP_MARKER,
    atomic_write,
    base_fits,
    output_base,
    output_base_candidates,
    output_paths,
    write_outputs,
)
from watcherd.outputs.writing import temp_name

# The longest language code a translation may carry: its outputs have the longest suffix.
LONG_LANG = "abcdefghijklmnop"

# A done job that produces every kind of output: all formats, the longest translation
# suffixes (".<16-char lang>.srt" etc.) and NAME.summary.md.
JOB: dict[str, Any] = {
    "id": "job-1",
    "status": "done",
    "file": {"filename": ""},
    "result": {
        "transcription": {
            "full_transcript": "hello there",
            "utterances": [{"text": "hello there", "start": 0.0, "end": 1.0, "speaker": 0}],
        },
        "translation": {
            "success": True,
            "results": [{"languages": [LONG_LANG], "full_transcript": "bonjour",
                         "utterances": [{"text": "bonjour", "start": 0.0, "end": 1.0}]}],
        },
        "summarization": {"success": True, "results": "A greeting."},
    },
}

# One name component: any bytes but "/" and NUL, at most 255 of them, never "." or "..".
names = st.one_of(
    st.binary(min_size=1, max_size=255),
    st.binary(min_size=200, max_size=255),  # long ones: where shortening happens
).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_")).filter(
    lambda b: b not in (b".", b"..")
)


@contextmanager
def folder() -> Iterator[Path]:
    """A fresh temporary folder per Hypothesis example (a pytest fixture is shared by all)."""
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def make_source(where: Path, raw: bytes) -> Path:
    """A real file named by the raw bytes ``raw`` in ``where``, as the path Python gives for it."""
    path = os.path.join(os.fsencode(where), raw)
    with open(path, "wb") as f:
        f.write(b"RIFF not really audio")
    return Path(os.fsdecode(path))


def temp_files(where: Path) -> list[str]:
    """Names of watcherd temp files left in ``where``."""
    return [n for n in os.listdir(where) if TEMP_MARKER in n]


@given(names)
def test_any_name_gets_every_output_next_to_it(raw: bytes) -> None:
    """Outputs of any source name exist beside it, fit 255 bytes, and are the same on a re-run."""
    with folder() as where:
        source = make_source(where, raw)
        base = output_base(source, taken=lambda b: False)
        assert base.parent == source.parent
        assert base_fits(base)
        written = write_outputs(base, FORMATS, JOB)
        expected = output_paths(base, FORMATS, JOB)
        assert written == expected
        assert len(written) == len(FORMATS) + 3 + 1  # 3 translation files, the summary
        for path in written:
            assert path.parent == source.parent
            assert len(os.fsencode(path.name)) <= 255
            assert path.is_file()
        # The same source name gives the same base and the same files: nothing new appears.
        before = sorted(os.listdir(os.fsencode(where)))
        assert output_base(source, taken=lambda b: False) == base
        assert write_outputs(base, FORMATS, JOB) == written
        assert sorted(os.listdir(os.fsencode(where))) == before
        assert temp_files(where) == []
        assert source.read_bytes() == b"RIFF not really audio"


@given(names)
def test_a_base_keeps_the_raw_stem_or_a_prefix_of_it(raw: bytes) -> None:
    """A short base is the raw stem (or name) byte for byte; a long one its prefix plus a hash."""
    source = Path(os.fsdecode(b"/inbox/" + raw))
    [*_, full] = output_base_candidates(source)
    base = output_base(source, taken=lambda b: False)
    natural = source.stem if source.suffix and source.stem not in (".", "..") else source.name
    natural_bytes = os.fsencode(natural)
    base_bytes = os.fsencode(base.name)
    if len(natural_bytes) <= BASE_MAX_BYTES:
        assert base_bytes == natural_bytes
    else:
        prefix, _, digest = base_bytes.rpartition(b"~")
        assert natural_bytes.startswith(prefix) and len(digest) == 12
        assert len(base_bytes) <= BASE_MAX_BYTES
        # The prefix is a whole-character cut: it decodes to a prefix of the decoded name.
        assert natural.startswith(os.fsdecode(prefix))
    assert os.fsencode(full.name) == raw or len(raw) > BASE_MAX_BYTES


@given(st.lists(names, min_size=2, max_size=8, unique=True))
def test_distinct_sources_never_share_a_base(raws: list[bytes]) -> None:
    """Sources named one after another (bases recorded as taken) all get distinct bases."""
    owned: set[Path] = set()
    for raw in raws:
        base = output_base(Path(os.fsdecode(b"/inbox/" + raw)), taken=owned.__contains__)
        assert base not in owned
        owned.add(base)
    assert len(owned) == len(raws)


@given(st.lists(names, min_size=2, max_size=8, unique=True))
def test_distinct_long_names_stay_distinct_when_shortened(raws: list[bytes]) -> None:
    """The full-name base (used when the stem is taken) differs for every distinct name."""
    fulls = {output_base_candidates(Path(os.fsdecode(b"/inbox/" + raw)))[-1] for raw in raws}
    assert len(fulls) == len(raws)


def test_shortening_is_deterministic_and_cut_between_characters() -> None:
    """A 250-byte accented name is cut before a whole "é" and gets the same base every time."""
    name = "é" * 123 + ".wav"  # 250 bytes
    source = Path("/inbox") / name
    base = output_base(source, taken=lambda b: False)
    assert base == output_base(source, taken=lambda b: False)
    head, _, digest = base.name.rpartition("~")
    assert set(head) == {"é"} and len(digest) == 12
    assert len(os.fsencode(base.name)) <= BASE_MAX_BYTES
    other = output_base(Path("/inbox") / ("é" * 122 + "e.wav"), taken=lambda b: False)
    assert other != base


def test_a_base_that_fits_is_never_changed() -> None:
    """Names up to BASE_MAX_BYTES keep their exact stem, the old rule."""
    name = "x" * BASE_MAX_BYTES
    assert output_base(Path(f"/inbox/{name}.mp3"), taken=lambda b: False).name == name
    assert output_base(Path(f"/inbox/{name}x.mp3"), taken=lambda b: False).name != name + "x"


def test_longest_outputs_and_their_temp_files_fit_exactly() -> None:
    """A base of BASE_MAX_BYTES plus the longest suffix plus the temp marker is 255 bytes."""
    longest = max(
        len(f".{suffix}")
        for suffix in (*FORMATS, SUMMARY_SUFFIX, f"{LONG_LANG}.txt", f"{LONG_LANG}.srt")
    )
    temp = len(temp_name("x")) - 1
    assert BASE_MAX_BYTES + longest + temp == 255


def test_base_fits_refuses_an_old_overlong_base() -> None:
    """A base recorded before shortening existed is reported so the caller renames it."""
    assert base_fits(Path("/inbox/talk"))
    assert not base_fits(Path("/inbox/" + "x" * (BASE_MAX_BYTES + 1)))
    assert not base_fits(Path("/inbox/\ud800"))


def test_a_name_no_file_can_have_is_a_value_error() -> None:
    """A lone surrogate that is not a surrogate escape cannot be a file name: clear ValueError."""
    with pytest.raises(ValueError, match="cannot be a file name"):
        output_base(Path("/inbox/" + "\ud800" * 300 + ".wav"), taken=lambda b: False)


def test_newline_quote_and_colon_names_work(tmp_path: Path) -> None:
    """A name with a newline, quotes, ':' and a Latin-1 byte gets outputs with the same stem."""
    source = make_source(tmp_path, b'a\nb "c" \'d\':e \xe9t\xe9.wav')
    base = output_base(source, taken=lambda b: False)
    written = write_outputs(base, ["txt", "json"], JOB)
    assert [os.fsencode(p.name) for p in written] == [
        b'a\nb "c" \'d\':e \xe9t\xe9.txt', b'a\nb "c" \'d\':e \xe9t\xe9.json',
        b'a\nb "c" \'d\':e \xe9t\xe9.abcdefghijklmnop.txt',
        b'a\nb "c" \'d\':e \xe9t\xe9.summary.md']
    # The Markdown title shows the undecodable bytes as U+FFFD, never a lone surrogate.
    md = write_outputs(base, ["md"], {**JOB, "file": {}})[0]
    assert md.read_text(encoding="utf-8").startswith('# a b "c" \'d\':e \ufffdt\ufffd\n')


# -- language codes from the API ----------------------------------------------------------

# What a hostile or broken job could put where a translation's language code goes: separators,
# line ends, dots, NUL, and good codes with something after them ("en\n" passed a match()).
_ODD_CODES = ["en\n", "en\n/../x", "en/../../x", "fr\r", "de\x00", "..", ".", "en.", "a\\b",
              "en\u2028", "e\u0301n", "", "-en", "en" + "x" * 20]
lang_codes = st.one_of(
    st.sampled_from(_ODD_CODES),
    st.text(max_size=24),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}", fullmatch=True),
    st.tuples(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}", fullmatch=True),
              st.sampled_from(["\n", "\r\n", "/", "/../x", "\x00", ".", "\n/../x"]))
    .map("".join),
)
_CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}")


def _translated(codes: list[str]) -> dict[str, Any]:
    results = [{"languages": [code], "full_transcript": "bonjour",
                "utterances": [{"text": "bonjour", "start": 0.0, "end": 1.0}]} for code in codes]
    return {**JOB, "result": {**JOB["result"], "translation": {"success": True,
                                                              "results": results}}}


@given(st.lists(lang_codes, max_size=4))
def test_language_codes_never_bring_a_separator_into_an_output_name(codes: list[str]) -> None:
    """Every output of a job with any language codes is one plain name beside the source."""
    job = _translated(codes)
    with folder() as where:
        base = output_base(make_source(where, b"talk.wav"), taken=lambda b: False)
        written = write_outputs(base, FORMATS, job)
        assert written == output_paths(base, FORMATS, job)
        assert sorted(p.name for p in written) == sorted(
            n for n in os.listdir(where) if n != "talk.wav")
        codes_used = set()
        for path in written:
            assert path.parent == where
            assert not any(c in path.name for c in "/\\\n\r\x00")
            suffix = path.name[len("talk."):]
            if suffix.count(".") == 1 and suffix.endswith((".txt", ".srt", ".vtt")):
                code = suffix.rsplit(".", 1)[0]
                if code != "summary":
                    assert _CODE_RE.fullmatch(code), code
                    codes_used.add(code)
        # Nothing is dropped that is a code: each whole, code-like value gets its outputs.
        assert codes_used == {c for c in codes if _CODE_RE.fullmatch(c)}


def test_a_code_with_a_newline_after_it_is_skipped(tmp_path: Path) -> None:
    """"en\n" is not "en": no output is named after it (match() let it through)."""
    base = output_base(make_source(tmp_path, b"talk.wav"), taken=lambda b: False)
    written = write_outputs(base, ["txt"], _translated(["en\n", "fr"]))
    assert [p.name for p in written] == ["talk.txt", "talk.fr.txt", "talk.summary.md"]


# -- permissions -------------------------------------------------------------------------


@contextmanager
def umask(value: int) -> Iterator[None]:
    """Run with this umask, then put the old one back."""
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    ("source_mode", "mask", "expected"),
    [
        (0o600, 0o022, 0o600),  # a private recording stays private
        (0o640, 0o022, 0o640),
        (0o644, 0o022, 0o644),
        (0o666, 0o022, 0o644),  # never more open than the umask allows
        (0o755, 0o022, 0o644),  # never executable
        (0o4777, 0o000, 0o666),  # no set-id or sticky bits
        (0o040, 0o022, 0o440),  # the owner can always read (NAME.json is read back)
    ],
)
def test_outputs_take_the_source_permission_bits(
    tmp_path: Path, source_mode: int, mask: int, expected: int
) -> None:
    """Outputs get the source's rw bits, within the umask, without x or special bits."""
    source = make_source(tmp_path, b"private.wav")
    os.chmod(source, source_mode)
    with umask(mask):
        written = write_outputs(tmp_path / "private", list(FORMATS), JOB,
                                mode=source.stat().st_mode)
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == expected, path.name


def test_rewriting_follows_the_current_source_mode(tmp_path: Path) -> None:
    """A rewrite replaces the file, so outputs follow a source made private afterwards."""
    with umask(0o022):
        atomic_write(tmp_path / "t.txt", b"one", mode=0o100644)
        assert stat.S_IMODE((tmp_path / "t.txt").stat().st_mode) == 0o644
        atomic_write(tmp_path / "t.txt", b"two", mode=0o100600)
    assert stat.S_IMODE((tmp_path / "t.txt").stat().st_mode) == 0o600
    assert (tmp_path / "t.txt").read_bytes() == b"two"


def test_without_a_mode_outputs_get_the_usual_default(tmp_path: Path) -> None:
    """No source mode means 0o666 minus the umask, as before."""
    with umask(0o027):
        atomic_write(tmp_path / "t.txt", b"x")
    assert stat.S_IMODE((tmp_path / "t.txt").stat().st_mode) == 0o640
