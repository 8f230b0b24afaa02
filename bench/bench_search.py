"""Search: how long ``Journal.search`` takes over many stored transcripts (issue 24: 10k < 100 ms).

Usage: python bench/bench_search.py [--transcripts 10000] [--utterances 40] [--repeat 15]
       [--postgres URL]
Builds a SQLite journal (or fills an empty PostgreSQL database) with --transcripts done files,
each with a stored result of --utterances utterances of 8-16 words drawn from a Zipf-like
vocabulary of 5,000 words (a few words in nearly every transcript, most in few), through
``store_result`` as the worker does it. Then times each kind of query (a rare word, a common
word, a two-word phrase, a prefix, a word with another left out, a word with --folder) as the
CLI and the page run it (20 files, newest first, snippets made), median and worst of --repeat.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import common

from watcherd.journal import FileStat, Journal

QUERIES = {
    "rare word": "w4000",
    "common word": "w3",
    "phrase": '"w1 w2"',
    "prefix": "w12*",
    "word -left-out": "w50 -w3",
    "word, --folder": "w50",
}


def _vocabulary_sampler(rng: random.Random, size: int = 5000) -> list[str]:
    weights = [1.0 / (rank + 1) for rank in range(size)]
    return rng.choices([f"w{i}" for i in range(size)], weights=weights, k=200_000)


def fill(journal: Journal, root: Path, transcripts: int, utterances: int) -> float:
    """Store ``transcripts`` done files with results; returns seconds taken."""
    rng = random.Random(24)
    pool = _vocabulary_sampler(rng)
    started = time.perf_counter()
    for i in range(transcripts):
        folder = root / f"folder{i % 100}"
        path = str(folder / f"meeting {i}.m4a")
        [s] = journal.observe_many([(path, str(root), FileStat(1, i, 1, i), "{}")])
        key = f"key-{i}"
        s = journal.transition(s, "pending", actor="bench", content_key=key, sha256=key)
        said = [{"start": u * 12.5, "end": u * 12.5 + 10,
                 "text": " ".join(rng.choice(pool) for _ in range(rng.randint(8, 16))) + "."}
                for u in range(utterances)]
        journal.store_result(s, {"id": key, "status": "done",
                                 "result": {"transcription": {"utterances": said}}})
        journal.transition(s, "done", actor="bench", done_at=time.time())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcripts", type=int, default=10_000)
    parser.add_argument("--utterances", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--postgres", default=None, metavar="URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "inbox"
        journal: Journal
        if args.postgres:
            from watcherd.journal.postgres import PostgresJournal

            journal = PostgresJournal.open(args.postgres, node="bench")
        else:
            journal = Journal.open(Path(tmp) / "journal.db", exclusive=True)
        with journal:
            seconds = fill(journal, root, args.transcripts, args.utterances)
            state = journal.search_state()
            print(f"machine: {common.machine()}")
            print(f"{args.transcripts} transcripts, {state.utterances} utterances stored and "
                  f"indexed in {seconds:.1f} s ({1000 * seconds / args.transcripts:.1f} ms each)")
            for label, query in QUERIES.items():
                folder = str(root / "folder7") if "folder" in label else None
                times, found = [], 0
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    found = len(journal.search(query, folder=folder, limit=20))
                    times.append(1000 * (time.perf_counter() - t0))
                print(f"{label:16} {query!r:14} median {statistics.median(times):6.1f} ms"
                      f"  worst {max(times):6.1f} ms  ({found} files)")


if __name__ == "__main__":
    main()
