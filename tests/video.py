"""Test videos made with PyAV: small frames and a tone or a spoken track, or a large file fast.

A large video is made by muxing one intra-coded (MJPEG) frame of noise over and over: every
packet is a whole picture, so repeating it is a valid stream, and the file grows at disk
speed instead of encoder speed.
"""

from __future__ import annotations

import math
import wave
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

AUDIO_RATE = 16_000


def tone(seconds: float, *, rate: int = AUDIO_RATE, freq: float = 440.0) -> Any:
    """A mono float32 sine at a third of full scale."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def wav_samples(path: Path) -> tuple[Any, int]:
    """The samples of a 16-bit mono WAV (espeak-ng's) as float32, and its rate."""
    with wave.open(str(path), "rb") as reader:
        rate = reader.getframerate()
        frames = reader.readframes(reader.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0, rate


def make_video(path: Path, *, seconds: float = 3.0, audio: Any = None,
               audio_rate: int = AUDIO_RATE, audio_codec: str | None = "aac",
               size: tuple[int, int] = (320, 240), fps: int = 10,
               frame_bytes: int | None = None, container: str | None = None) -> Path:
    """Write a video of ``seconds`` with one audio track (``audio``: float32 mono samples at
    ``audio_rate``, looped to the length; default a tone), or none (``audio_codec=None``).

    The picture is one MJPEG frame of noise repeated at ``fps``. ``frame_bytes`` pads each
    frame's packet to that size (a JPEG decoder ignores bytes after the image's end marker),
    so a large file costs no encoding time.
    """
    import av

    samples = tone(seconds, rate=audio_rate) if audio is None else audio
    with av.open(str(path), "w", format=container) as out:
        video = out.add_stream("mjpeg", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuvj420p"
        picture = np.random.default_rng(7).integers(0, 255, (size[1], size[0], 3),
                                                    dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        [packet] = video.encode(frame)
        payload = bytes(packet)
        if frame_bytes is not None and frame_bytes > len(payload):
            payload += bytes(frame_bytes - len(payload))
        sound = None
        if audio_codec is not None:
            added = out.add_stream(audio_codec, rate=audio_rate)
            assert isinstance(added, av.audio.stream.AudioStream)
            sound = added
            sound.layout = "mono"
        frames = int(seconds * fps)
        audio_pts = 0
        total = int(seconds * audio_rate)
        chunk = audio_rate // fps
        for index in range(frames):
            copy = av.Packet(payload)
            copy.stream = video
            copy.pts = copy.dts = index
            copy.time_base = Fraction(1, fps)
            copy.is_keyframe = True
            out.mux(copy)
            if sound is None:
                continue
            end = min(total, (index + 1) * chunk)
            while audio_pts < end:
                size_now = min(1024, end - audio_pts)
                block = np.take(samples, range(audio_pts, audio_pts + size_now), mode="wrap")
                piece = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="flt",
                                                   layout="mono")
                piece.rate = audio_rate
                piece.pts = audio_pts
                audio_pts += size_now
                for encoded in sound.encode(piece):
                    out.mux(encoded)
        if sound is not None:
            for encoded in sound.encode(None):
                out.mux(encoded)
    return path


def stream_kinds(path: Path) -> list[str]:
    """The kinds of stream a file holds, in order ("video", "audio")."""
    import av

    with av.open(str(path)) as container:
        return [s.type for s in container.streams]
