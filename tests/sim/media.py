"""Small media helpers for the Gladia simulator and the tests: write test files, sniff formats."""

from __future__ import annotations

import hashlib
import math
import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

WAV_RATE = 16_000
WAV_BYTES_PER_SECOND = WAV_RATE * 2  # mono, 16-bit

# An MPEG-1 Layer III frame header: 128 kbit/s, 44.1 kHz, no padding, mono.
_MP3_HEADER = b"\xff\xfb\x90\xc4"
_MP3_FRAME_BYTES = 417  # 144 * 128000 / 44100
_MP3_FRAME_SECONDS = 1152 / 44_100


def wav_header(data_size: int, *, rate: int = WAV_RATE, channels: int = 1, bits: int = 16) -> bytes:
    """The 44-byte canonical PCM WAV header for `data_size` bytes of samples."""
    block_align = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block_align, block_align, bits)
        + b"data"
        + struct.pack("<I", data_size)
    )


def make_wav(path: Path, *, seconds: float = 1.0, salt: str = "") -> bytes:
    """Write a small valid 16 kHz mono 16-bit PCM WAV whose samples depend on `salt`.

    Returns the bytes written, so a test can compute the transcript the simulator will return.
    """
    count = max(1, round(seconds * WAV_RATE))
    rng = random.Random(f"watcherd-sim-wav:{salt}")
    freq = 180.0 + rng.random() * 600.0
    # One 0.1 s block of tone plus salt-seeded noise, repeated with a per-block shift: cheap to
    # build for long files and still unique per salt.
    block_len = WAV_RATE // 10
    block = [
        int(8000 * math.sin(2 * math.pi * freq * i / WAV_RATE) + rng.randint(-600, 600))
        for i in range(block_len)
    ]
    samples: list[int] = []
    index = 0
    while len(samples) < count:
        shift = (index * 37) % 200 - 100
        samples.extend(max(-32768, min(32767, s + shift)) for s in block)
        index += 1
    del samples[count:]
    pcm = struct.pack(f"<{count}h", *samples)
    data = wav_header(len(pcm)) + pcm
    path.write_bytes(data)
    return data


def make_sparse_wav(path: Path, size: int) -> None:
    """Write a WAV of about `size` bytes whose samples are a hole (zeros) in a sparse file."""
    data_size = max(0, size - 44)
    with path.open("wb") as f:
        f.write(wav_header(data_size))
        f.truncate(44 + data_size)


def make_mp3(path: Path, *, seconds: float = 1.0, salt: str = "") -> bytes:
    """Write an MPEG-1 Layer III stream of silent frames (payload bytes depend on `salt`)."""
    frames = max(1, round(seconds / _MP3_FRAME_SECONDS))
    rng = random.Random(f"watcherd-sim-mp3:{salt}")
    payload_len = _MP3_FRAME_BYTES - len(_MP3_HEADER)
    # Side info zeroed so decoders see silence; a salt-dependent tail keeps files distinct.
    chunks = []
    for _ in range(frames):
        body = bytearray(payload_len)
        body[-8:] = rng.randbytes(8)
        chunks.append(_MP3_HEADER + bytes(body))
    data = b"".join(chunks)
    path.write_bytes(data)
    return data


def make_corrupt(path: Path, *, size: int = 4096, salt: str = "") -> bytes:
    """Write bytes that no media sniffer recognises (text-like noise)."""
    rng = random.Random(f"watcherd-sim-corrupt:{salt}")
    data = b"this is not audio " + bytes(rng.choice(b"abcdefghij \n") for _ in range(size))
    path.write_bytes(data[:size])
    return data[:size]


def sniff_media(head: bytes) -> str | None:
    """The container/codec extension detected from the first bytes of a file, or None."""
    if len(head) >= 12 and head[:4] == b"RIFF":
        if head[8:12] == b"WAVE":
            return "wav"
        if head[8:12] == b"AVI ":
            return "avi"
        return None
    if head[:3] == b"ID3":
        return "mp3"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "opus" if b"OpusHead" in head[:128] else "ogg"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"M4A ":
            return "m4a"
        if brand == b"qt  ":
            return "mov"
        if brand.startswith(b"3g2"):
            return "3g2"
        if brand.startswith(b"3gp"):
            return "3gp"
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in head[:64] else "mkv"
    if head[:3] == b"FLV":
        return "flv"
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return "wmv"
    if head[:2] == b"\x0b\x77":
        return "ac3"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        layer = (head[1] >> 1) & 0x03
        version = (head[1] >> 3) & 0x03
        if layer == 0:
            return "aac"  # ADTS: the MPEG sync word with layer bits 00
        if version != 1:  # 01 is reserved
            return "mp3" if layer == 1 else "mp2"
    return None


@dataclass(frozen=True)
class MediaInfo:
    """What the simulator learns from an uploaded file's content."""

    extension: str | None  # None: not recognised (corrupt)
    audio_duration: float
    number_of_channels: int
    # Channels whose content differs: Gladia bills each of them (docs/gladia-contract.md).
    distinct_channels: int = 1


def wav_info(path: Path) -> MediaInfo | None:
    """Exact duration and channels from a WAV's fmt and data chunks; None if ill-formed."""
    size = path.stat().st_size
    with path.open("rb") as f:
        riff = f.read(12)
        if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            return None
        channels = 0
        byte_rate = 0
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            header = f.read(8)
            chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:8])[0]
            if chunk_id == b"fmt ":
                fmt = f.read(16)
                if len(fmt) < 16:
                    return None
                _tag, channels, _rate, byte_rate, _align, bits = struct.unpack("<HHIIHH", fmt)
            elif chunk_id == b"data":
                if not byte_rate or not channels:
                    return None
                # Streaming writers leave the size as 0 or 0xFFFFFFFF: trust the file instead.
                available = size - pos - 8
                if chunk_size in (0, 0xFFFFFFFF) or chunk_size > available:
                    chunk_size = available
                f.seek(pos + 8)
                distinct = _distinct_channels(f, chunk_size, channels, bits)
                return MediaInfo("wav", chunk_size / byte_rate, channels, distinct)
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


def _distinct_channels(f: BinaryIO, size: int, channels: int, bits: int) -> int:
    """How many of the interleaved channels carry different samples (a copied mono is one),
    streamed: a hash per channel, never the whole file in memory."""
    width = bits // 8
    if channels <= 1 or width <= 0:
        return max(1, channels)
    frame = width * channels
    digests = [hashlib.sha256() for _ in range(channels)]
    left = size - size % frame
    step = frame * 65536
    while left > 0:
        block = f.read(min(step, left))
        block = block[:len(block) - len(block) % frame]
        if not block:
            break
        left -= len(block)
        for c, digest in enumerate(digests):
            digest.update(b"".join(block[i + c * width:i + (c + 1) * width]
                                   for i in range(0, len(block), frame)))
    return len({d.digest() for d in digests})


def probe_media(path: Path, head: bytes) -> MediaInfo:
    """Sniff and measure an uploaded file: exact for WAV, mutagen when it can, else an estimate."""
    extension = sniff_media(head)
    size = path.stat().st_size
    if extension is None:
        return MediaInfo(None, 0.0, 1)
    if extension == "wav":
        info = wav_info(path)
        return info if info is not None else MediaInfo(None, 0.0, 1)
    duration: float | None = None
    channels = 1
    try:
        import mutagen

        found: Any = mutagen.File(str(path))
        if found is not None and getattr(found, "info", None) is not None:
            length = getattr(found.info, "length", None)
            if isinstance(length, int | float) and length > 0:
                duration = float(length)
            found_channels = getattr(found.info, "channels", None)
            if isinstance(found_channels, int) and found_channels > 0:
                channels = found_channels
    except Exception:
        duration = None
    if duration is None:
        # About 128 kbit/s: a plausible figure for compressed audio we cannot parse.
        duration = size / 16_000
    return MediaInfo(extension, duration, channels)


def stream_kinds(path: Path) -> tuple[str, ...] | None:
    """The kinds of stream an uploaded container holds ("audio", "video", cover art not
    counted), or None when PyAV is not installed or cannot read the file."""
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as container:
            return tuple(
                s.type for s in container.streams
                if s.type != "video" or not int(s.disposition) & 0x400  # attached picture
            )
    except Exception:
        return None
