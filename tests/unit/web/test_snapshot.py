"""The status page reads the journal through the opener it is given (a shared journal's needs
this node's watch roots to show local paths)."""

from __future__ import annotations

from pathlib import Path

from watcherd.journal import FileStat, Journal
from watcherd.web.snapshot import SnapshotReader


def test_snapshots_come_through_the_given_opener(tmp_path: Path) -> None:
    """Every read opens the journal with the opener, and its rows are what the page shows."""
    path = tmp_path / "journal.db"
    with Journal.open(path, exclusive=True) as journal:
        journal.observe_many([(str(tmp_path / "a.wav"), str(tmp_path), FileStat(1, 1, 1, 1),
                               "{}")])
    opened: list[int] = []

    def opener() -> Journal:
        opened.append(1)
        return Journal.open(path, readonly=True)

    reader = SnapshotReader(tmp_path / "elsewhere.db", opener=opener)
    snapshot = reader.read()
    assert opened == [1]
    assert snapshot.error is None
    assert sum(snapshot.counts.values()) == 1
