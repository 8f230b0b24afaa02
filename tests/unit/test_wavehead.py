"""A WAV's duration read from its first bytes: always mutagen's answer, or none at all; and a
WAV whose header says it is too long is still refused before hashing, without mutagen."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import mutagen
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.sim.media import make_wav, wav_header
from watcherd import media
from watcherd.errors import SourceError
from watcherd.wavehead import HEAD_BYTES, wave_duration


class _Named(io.BytesIO):
    """Bytes with a file name, as mutagen weighs the name when it picks a format."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


def _mutagen_length(data: bytes, name: str) -> float | None:
    """What watcherd took from mutagen before: its length when positive, else nothing."""
    try:
        info = mutagen.File(_Named(data, name))
    except Exception:
        return None
    length = getattr(getattr(info, "info", None), "length", None)
    if isinstance(length, int | float) and length > 0:
        return float(length)
    return None


def _chunk(chunk_id: bytes, payload: bytes, *, size: int | None = None) -> bytes:
    declared = len(payload) if size is None else size
    return chunk_id + struct.pack("<I", declared) + payload + b"\x00" * (len(payload) % 2)


_FMT = st.builds(
    lambda tag, ch, rate, rate_b, align, bits, extra: struct.pack(
        "<HHIIHH", tag, ch, rate, rate_b, align, bits) + extra,
    st.sampled_from([1, 3, 0xFFFE, 0x55, 0]), st.integers(0, 8),
    st.sampled_from([16000, 44100, 48000, 8000, 1, 0, 2**32 - 1]),
    st.integers(0, 2**32 - 1), st.sampled_from([2, 4, 1, 6, 2**16 - 1, 0]),
    st.sampled_from([0, 8, 16, 24, 32]), st.sampled_from([b"", b"\x00\x00", b"\x16\x00" * 12]),
)
_CHUNKS = st.one_of(
    st.builds(lambda f: _chunk(b"fmt ", f), _FMT),
    st.builds(lambda n: _chunk(b"data", b"", size=n), st.integers(0, 2**32 - 1)),
    st.builds(lambda p: _chunk(b"data", p), st.binary(max_size=64)),
    st.builds(lambda i, p: _chunk(i, p),
              st.sampled_from([b"bext", b"LIST", b"id3 ", b"ID3 ", b"fact", b"junk", b"JUNK",
                               b"\xff\xfe\x00\x01", b"    ", b"fmt\x00", b"data"]),
              st.binary(max_size=700)),
    st.binary(min_size=1, max_size=16),  # garbage between chunks
)


@st.composite
def _riff_files(draw: Any) -> tuple[bytes, str]:
    """Files that start like a WAV: real chunk layouts (mostly), odd sizes and fields, tags,
    nested lists, garbage between chunks, truncation, other forms and names."""
    chunks = draw(st.lists(_CHUNKS, max_size=5))
    if draw(st.booleans()):  # a layout recorders write: fmt, maybe others, data
        fmt = _chunk(b"fmt ", draw(_FMT))
        data = _chunk(b"data", b"", size=draw(st.integers(0, 2**32 - 1)))
        at = draw(st.integers(0, len(chunks)))
        chunks = [fmt, *chunks[:at], data, *chunks[at:]]
    body = b"".join(chunks)
    riff_size = draw(st.one_of(st.just(4 + len(body)), st.integers(0, 2**32 - 1)))
    form = draw(st.sampled_from([b"WAVE", b"WAVE", b"WAVE", b"AVI ", b"wave"]))
    data = b"RIFF" + struct.pack("<I", riff_size) + form + body
    if draw(st.integers(0, 3)) == 0:
        data = data[:draw(st.integers(0, len(data)))]
    name = draw(st.sampled_from(["a.wav", "b.WAV", "c.wave", "a.wav", "d.mp3", "e.aiff", "f",
                                 "g.wv", "h.wav.part"]))
    return data, name


class TestSameAsMutagen:
    """The fast read never disagrees with mutagen: it answers as mutagen did, or defers."""

    @given(_riff_files())
    def test_agrees_or_defers(self, file: tuple[bytes, str]) -> None:
        """For any file that starts like a WAV, the answer is mutagen's length or None."""
        data, name = file
        seconds = wave_duration(data[:HEAD_BYTES], name)
        if seconds is not None:
            assert seconds == _mutagen_length(data, name)

    @given(rate=st.integers(1, 384_000), channels=st.integers(1, 8),
           bits=st.sampled_from([8, 16, 24, 32]), data_size=st.integers(1, 2**32 - 45),
           name=st.sampled_from(["x.wav", "X.WAV", "rec.wave"]))
    def test_canonical_headers_are_read(self, rate: int, channels: int, bits: int,
                                        data_size: int, name: str) -> None:
        """A canonical PCM header (what recorders write) is read without mutagen, exactly."""
        head = wav_header(data_size, rate=rate, channels=channels, bits=bits)
        seconds = wave_duration(head, name)
        assert seconds is not None
        assert seconds == _mutagen_length(head, name)

    def test_other_names_are_left_to_mutagen(self) -> None:
        """A WAV named as another format is left to mutagen's scoring of every format."""
        head = wav_header(32_000)
        assert wave_duration(head, "x.mp3") is None
        assert wave_duration(head, "x.wav") == pytest.approx(1.0)


class TestLimitsWithoutMutagen:
    """Before hashing, a WAV's header alone decides: too long is refused, short passes."""

    @pytest.fixture
    def no_mutagen(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """mutagen.File made to fail loudly: a call to it is recorded (and would lose the
        duration), so a test can check the WAV never needed it."""
        calls: list[str] = []

        def refuse(*args: Any, **kwargs: Any) -> None:
            calls.append(str(args[0]))
            raise RuntimeError("mutagen was asked")

        monkeypatch.setattr(mutagen, "File", refuse)
        return calls

    def test_header_claiming_136_minutes_is_refused(self, tmp_path: Path,
                                                     no_mutagen: list[str]) -> None:
        """A 44-byte WAV whose header says 136 minutes is refused as too long, permanently,
        and mutagen is never asked."""
        path = tmp_path / "long.wav"
        path.write_bytes(wav_header(136 * 60 * 32_000))
        with pytest.raises(SourceError) as caught:
            media.check_before_hash(path, path.stat().st_size)
        assert "136 minutes" in caught.value.message
        assert "135-minute limit" in caught.value.message
        assert caught.value.transient is False
        with pytest.raises(SourceError, match="135-minute limit"):
            media.check_source(path, path.stat().st_size)
        assert no_mutagen == []

    def test_short_wav_passes_and_keeps_its_duration(self, tmp_path: Path,
                                                     no_mutagen: list[str]) -> None:
        """A real short WAV passes, and its duration (the poll cap's input) is still read."""
        path = tmp_path / "short.wav"
        make_wav(path, seconds=1.5)
        media.check_before_hash(path, path.stat().st_size)
        assert media.audio_duration(path) == pytest.approx(1.5)
        assert no_mutagen == []

    @given(seconds=st.floats(1.0, 4 * 3600.0), rate=st.sampled_from([8000, 16000, 48000]),
           channels=st.integers(1, 2))
    def test_refused_exactly_when_over_the_limit(self, tmp_path_factory: pytest.TempPathFactory,
                                                 seconds: float, rate: int,
                                                 channels: int) -> None:
        """Whatever length a header declares, the file is refused iff it is over 135 minutes."""
        align = 2 * channels
        data_size = round(seconds * rate) * align
        assume(data_size + 36 < 2**32)
        path = tmp_path_factory.mktemp("wav") / "claimed.wav"
        path.write_bytes(wav_header(data_size, rate=rate, channels=channels) + b"\x00" * 64)
        length = data_size / align / rate
        if length > media.MAX_SECONDS:
            with pytest.raises(SourceError, match="135-minute limit"):
                media.check_before_hash(path, path.stat().st_size)
        else:
            media.check_before_hash(path, path.stat().st_size)
