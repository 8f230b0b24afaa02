"""Job objects shaped like Gladia's, for measuring how the journal stores them.

``short_job`` is the simulator's full job object for a short recording (what the daemon
stores for each of the issue's 1,500 half-second files); ``hour_job`` is a one-hour
recording's: about 9,000 words, each with its own timings and confidence, in utterances of
irregular length, with the SRT subtitles a subtitled job carries. Words follow a Zipf-like
frequency over a few hundred common words (speech repeats its words; a uniform draw would
compress unrealistically badly, a tiny vocabulary unrealistically well).
"""

from __future__ import annotations

import random
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.sim import build_result  # noqa: E402
from tests.sim.jobs import subtitles  # noqa: E402

_COMMON = (
    "the", "be", "to", "of", "and", "a", "in", "that", "have", "I", "it", "for", "not", "on",
    "with", "he", "as", "you", "do", "at", "this", "but", "his", "by", "from", "they", "we",
    "say", "her", "she", "or", "an", "will", "my", "one", "all", "would", "there", "their",
    "what", "so", "up", "out", "if", "about", "who", "get", "which", "go", "me", "when", "make",
    "can", "like", "time", "no", "just", "him", "know", "take", "people", "into", "year", "your",
    "good", "some", "could", "them", "see", "other", "than", "then", "now", "look", "only",
    "come", "its", "over", "think", "also", "back", "after", "use", "two", "how", "our", "work",
    "first", "well", "way", "even", "new", "want", "because", "any", "these", "give", "day",
    "most", "us", "is", "was", "are", "been", "has", "had", "were", "said", "did", "going",
    "really", "right", "yeah", "okay", "so", "um", "uh", "actually", "basically", "meeting",
    "budget", "project", "team", "schedule", "quarter", "report", "numbers", "plan", "next",
    "week", "call", "client", "draft", "final", "version", "update", "notes", "share", "everyone",
    "should", "check", "results", "before", "friday", "morning", "office", "question", "answer",
    "data", "model", "launch", "market", "sales", "growth", "risk", "cost", "customer", "product",
    "design", "review", "release", "feature", "issue", "support", "contract", "deadline",
    "invoice", "payment", "server", "database", "deploy", "testing", "feedback", "marketing",
    "campaign", "revenue", "forecast", "hiring", "interview", "training", "policy", "security",
    "compliance", "Anna", "David", "Paris", "Berlin", "Monday", "June", "London", "Sarah",
    "Michael", "Thomas", "Europe"
)  # fmt: skip


def _words(rng: random.Random, count: int) -> list[str]:
    weights = [1.0 / (rank + 1) ** 1.07 for rank in range(len(_COMMON))]
    return rng.choices(_COMMON, weights=weights, k=count)


def _job(result: dict[str, Any], duration: float, job_id: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "id": job_id, "request_id": "G-" + job_id[:8], "version": 2, "kind": "pre-recorded",
        "status": "done", "created_at": now, "completed_at": now, "custom_metadata": {},
        "error_code": None, "post_session_metadata": {},
        "file": {"id": str(uuid.uuid4()), "filename": "x.wav", "source": None,
                 "audio_duration": duration, "number_of_channels": 1},
        "request_params": {"language_config": {"languages": []}}, "result": result,
    }


def short_job(sha256: str, job_id: str, duration: float = 0.5) -> dict[str, Any]:
    """The simulator's job object for a short recording (every word with its timings)."""
    return _job(build_result(sha256, duration, {}, 1.0), duration, job_id)


def hour_job(seed: int = 1, seconds: float = 3600.0) -> dict[str, Any]:
    """A one-hour recording's job object: ~2.5 words a second, irregular utterances."""
    rng = random.Random(f"watcherd-hour:{seed}")
    utterances: list[dict[str, Any]] = []
    t = rng.uniform(0.2, 1.5)
    speaker = 0
    while t < seconds - 5:
        words = _words(rng, rng.randint(4, 40))
        words[0] = words[0][:1].upper() + words[0][1:]
        words[-1] += rng.choice((".", ".", ".", "?", "!", ","))
        objs: list[dict[str, Any]] = []
        for i, word in enumerate(words):
            length = rng.uniform(0.12, 0.25) + 0.04 * len(word)
            objs.append({"word": word if i == 0 else " " + word, "start": round(t, 3),
                         "end": round(t + length, 3),
                         "confidence": round(rng.uniform(0.55, 1.0), 3)})
            t += length + rng.choice((0.0, 0.02, 0.04, 0.08, 0.16))
        utterances.append({
            "start": objs[0]["start"], "end": objs[-1]["end"],
            "confidence": round(sum(float(w["confidence"]) for w in objs) / len(objs), 3),
            "channel": 0, "speaker": speaker, "words": objs, "text": " ".join(words),
            "language": "en",
        })
        t += rng.uniform(0.3, 2.5)
        if rng.random() < 0.3:
            speaker = rng.randrange(3)
    result: dict[str, Any] = {
        "metadata": {"audio_duration": seconds, "number_of_distinct_channels": 1,
                     "billing_time": seconds, "transcription_time": round(seconds / 20, 3)},
        "transcription": {
            "full_transcript": " ".join(u["text"] for u in utterances),
            "languages": ["en"], "utterances": utterances,
            "subtitles": [{"format": "srt", "subtitles": subtitles(utterances, "srt")}],
        },
    }
    return _job(result, seconds, str(uuid.UUID(int=rng.getrandbits(128))))
