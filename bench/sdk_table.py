"""Summarise bench_sdk.py --json output as the Markdown tables of RESULTS.md.

Usage: python bench/sdk_table.py FILE.jsonl
Per job time T: the median makespan of each client over its runs, its efficiency
(N*T/C / makespan), the same from the first upload (watcherd only: without the settle),
GETs per job and the ratios to watcherd's cold run; then the fault runs against the
fault-free ones.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any


def main() -> None:
    """Print the tables."""
    rows: dict[float, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for line in Path(sys.argv[1]).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        rows[record["T"]][record["client"]].append(record)
    print("| T, N, recording | ideal | client | runs (makespan, s) | median | efficiency "
          "| from 1st upload | GET/job | / watcherd cold |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in sorted(rows):
        clients = rows[t]
        cold = statistics.median(r["makespan"] for r in clients["watcherd"])
        for name, runs in clients.items():
            first = runs[0]
            n, c = first["N"], first["C"]
            ideal = n * t / c
            spans = [r["makespan"] for r in runs]
            finite = [s for s in spans if s == s]
            median = statistics.median(finite) if finite else float("nan")
            uploads = [r.get("from_first_upload") for r in runs]
            up = [u for u in uploads if u is not None and u == u]
            eff_up = f"{ideal / statistics.median(up):.2f}" if up else "-"
            gets = statistics.median(r["gets"] for r in runs) / n
            done = min(r["done"] for r in runs)
            spans_text = ", ".join(f"{s:.1f}" for s in spans)
            if done < n:
                spans_text += f" ({done}/{n} done)"
            print(f"| {t:g} s, {n}, {first['audio']:g} s | {ideal:.1f} s | {name} | "
                  f"{spans_text} | {median:.1f} s | {ideal / median:.2f} | {eff_up} | "
                  f"{gets:.1f} | {median / cold:.2f} |")


if __name__ == "__main__":
    main()
