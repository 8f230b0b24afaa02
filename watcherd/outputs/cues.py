"""Subtitle cues generated from a transcription's utterances, for NAME.srt and NAME.vtt.

Cues are readable: at most two rows of 42 characters and 7 seconds on screen, never
overlapping, every one visible (start < end), within what an HH:MM:SS.mmm stamp can show.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from watcherd.outputs.job import Transcription, Utterance, Word

# Subtitle readability limits: two rows of 42 characters, at most 7 seconds on screen.
_MAX_CUE_SECONDS: float = 7.0
_MAX_LINE_CHARS: int = 42
_MAX_CUE_LINES: int = 2

# 99:59:59.999, the largest time the HH:MM:SS.mmm stamp can show.
_MAX_MS = ((99 * 60 + 59) * 60 + 59) * 1000 + 999
_MAX_CUE_MS = round(_MAX_CUE_SECONDS * 1000)


@dataclass(frozen=True)
class Cue:
    """One subtitle: shown from ``start_ms`` to ``end_ms``, its rows joined by newlines."""

    start_ms: int
    end_ms: int
    text: str


def stamp(ms: int, separator: str) -> str:
    """``ms`` as HH:MM:SS<separator>mmm ("," for SubRip, "." for WebVTT)."""
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def cues(transcription: Transcription) -> list[Cue]:
    """The transcription's cues in time order, each visible and none overlapping the next."""
    diarized = transcription.diarized
    raw: list[Cue] = []
    for utterance in transcription.utterances:
        speaker = utterance.speaker
        prefix = f"[{transcription.label(speaker)}] " if diarized and speaker is not None else ""
        raw.extend(_cues_of_utterance(_words_of(utterance), prefix))
    raw.sort(key=lambda c: c.start_ms)
    # Make every cue visible (start < end), never longer than the limit, and never
    # overlapping the one before it: overlapping speech shortens the earlier cue.
    placed: list[Cue] = []
    for cue in raw:
        start = cue.start_ms
        if placed:
            prev = placed[-1]
            if start < prev.end_ms:
                prev = placed[-1] = Cue(prev.start_ms, max(start, prev.start_ms + 1), prev.text)
                start = max(start, prev.end_ms)
        end = min(max(cue.end_ms, start + 1), start + _MAX_CUE_MS)
        if end > _MAX_MS:
            if start >= _MAX_MS:
                continue  # beyond what a stamp can show
            end = _MAX_MS
        placed.append(Cue(start, end, cue.text))
    return placed


def _ms(seconds: float) -> int:
    return max(0, min(_MAX_MS, round(seconds * 1000)))


def _words_of(utterance: Utterance) -> list[Word]:
    """The utterance's words; synthesised from its text when it has no word times."""
    if utterance.words:
        return [piece for word in utterance.words for piece in _split_long_word(word)]
    # No word times: spread the text over the utterance by character count, so a long
    # utterance still splits into readable cues and a short one stays a single cue.
    start, end = utterance.start, utterance.end
    tokens = utterance.text.split()
    total = sum(len(t) + 1 for t in tokens)
    spread: list[Word] = []
    done = 0
    for token in tokens:
        t_start = start + (end - start) * done / total
        done += len(token) + 1
        spread.append(Word(token, t_start, start + (end - start) * done / total))
    return [piece for word in spread for piece in _split_long_word(word)]


def _split_long_word(word: Word) -> list[Word]:
    """A word wider than a row (a URL, say) as row-sized pieces sharing its time span."""
    pieces = _hard_split(word.text)
    if len(pieces) == 1:
        return [word]
    step = (word.end - word.start) / len(word.text)
    return [
        Word(piece, word.start + step * i * _MAX_LINE_CHARS,
             word.start + step * (i * _MAX_LINE_CHARS + len(piece)))
        for i, piece in enumerate(pieces)
    ]


def _hard_split(token: str) -> list[str]:
    return [token[i : i + _MAX_LINE_CHARS] for i in range(0, len(token), _MAX_LINE_CHARS)] or [""]


def _lines(tokens: Sequence[str]) -> list[str]:
    """Break tokens into as few rows of <= 42 characters as possible, balancing two rows."""
    pieces = [piece for token in tokens for piece in _hard_split(token)]
    joined = " ".join(pieces)
    if len(joined) <= _MAX_LINE_CHARS:
        return [joined]
    best: tuple[int, int] | None = None
    for cut in range(1, len(pieces)):
        first, second = " ".join(pieces[:cut]), " ".join(pieces[cut:])
        longest = max(len(first), len(second))
        if longest <= _MAX_LINE_CHARS and (best is None or longest < best[0]):
            best = (longest, cut)
    if best is not None:
        cut = best[1]
        return [" ".join(pieces[:cut]), " ".join(pieces[cut:])]
    rows: list[str] = []
    for piece in pieces:
        if rows and len(rows[-1]) + 1 + len(piece) <= _MAX_LINE_CHARS:
            rows[-1] += " " + piece
        else:
            rows.append(piece)
    return rows


def _cues_of_utterance(words: Sequence[Word], prefix: str) -> Iterator[Cue]:
    prefix_tokens = [prefix.strip()] if prefix else []
    current: list[Word] = []

    def cue_of(group: Sequence[Word]) -> Cue:
        text = "\n".join(_lines(prefix_tokens + [w.text for w in group]))
        return Cue(_ms(group[0].start), _ms(group[-1].end), text)

    for word in words:
        if current:
            candidate = prefix_tokens + [w.text for w in current] + [word.text]
            too_long = len(_lines(candidate)) > _MAX_CUE_LINES
            too_slow = _ms(word.end) - _ms(current[0].start) > _MAX_CUE_MS
            if too_long or too_slow:
                yield cue_of(current)
                current = []
        current.append(word)
    if current:
        yield cue_of(current)
