"""Deletes at Gladia from the journal's intents, against the simulator: 403 while a job is
not deletable is retried with backoff, 404 counts as deleted, 202 is recorded."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.sim import GladiaSimulator, make_wav
from watcherd.credentials import Secret
from watcherd.engines.gladia.client import GladiaClient
from watcherd.engines.gladia.deletes import RemoteDeletes
from watcherd.journal import FileStat, SQLiteJournal
from watcherd.retry import RetryPolicy

KEY = "sk-test-deletes-0123456789"
FAST = RetryPolicy(retry_base=0.1, retry_cap=0.3)


def test_not_deletable_yet_is_retried_and_gone_counts_as_deleted(tmp_path: Path) -> None:
    with GladiaSimulator(api_key=KEY, job_seconds=1.0) as sim, \
            SQLiteJournal.open(tmp_path / "j.db") as journal:
        async def scenario() -> None:
            async with GladiaClient(sim.base_url, Secret(KEY)) as client:
                audio = tmp_path / "a.wav"
                make_wav(audio, seconds=0.3, salt="deletes")
                uploaded = await client.upload(audio, expected_size=audio.stat().st_size)
                # One job is deleted behind watcherd's back (purge-remote, another node)...
                gone = (await client.create({"audio_url": uploaded.audio_url})).id
                sim.wait_idle(10)
                await client.delete(gone)
                # ...the other is still processing when its delete is due.
                queued = (await client.create({"audio_url": uploaded.audio_url})).id
                (source,) = journal.observe_many([(str(audio), str(tmp_path),
                                                   FileStat(1, 1, 1, 1), "{}")])
                source = journal.transition(source, "done", actor="test", sha256="0" * 64,
                                            content_key="wf2-x", done_at=time.time())
                for job_id in (gone, queued):
                    journal.store_result(source, {"id": job_id, "status": "done"}, delete=True)
                deletes = RemoteDeletes(journal, client, FAST)
                assert await deletes.run_due() == 1  # the 404 counts as deleted; 403 waits
                assert journal.deletes_pending() == 1
                assert journal.due_deletes(time.time() + 60) == [(queued, 1)]
                sim.wait_idle(10)
                due = journal.next_delete_at(time.time())
                if due is not None:
                    assert due <= time.time() + FAST.retry_cap
                    await asyncio.sleep(max(0.0, due - time.time()) + 0.01)
                assert journal.due_deletes(time.time()) == [(queued, 1)]
                assert await deletes.run_due() == 1
                assert sim.is_deleted(queued) and journal.deletes_pending() == 0

        asyncio.run(scenario())
