"""The daemon's lifecycle: initialize, loop, shut down; and the one-shot ``transcribe`` run.

Signal handlers only set flags; the loop notices them and drains. A second SIGTERM/SIGINT
exits at once (the journal is consistent at every commit, so nothing is lost by that either).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import structlog

from watcherd.activity import Activity
from watcherd.config import Config, WatchConfig, secret_values, watch_roots
from watcherd.engines import Engine, Engines, engine_for, no_engine_reason, open_engines
from watcherd.errors import ConfigError
from watcherd.folders import Folders
from watcherd.generations import Carry, HandOver, hand_over, retire
from watcherd.handoff import HandedOver
from watcherd.health import ApiHealth
from watcherd.journal import ACTIVE_STATES, Journal, JournalUnavailable, Source
from watcherd.journal.configured import (
    display_location,
    one_shot_node,
    open_for_command,
    open_for_node,
)
from watcherd.log import redact_also
from watcherd.notify import Notifications
from watcherd.outputs.settings import OutputSettings
from watcherd.pause import JournalPause, clear_pause, write_pause
from watcherd.progress import ProgressBoard
from watcherd.service import Notifier, status_text
from watcherd.upkeep import keep_small
from watcherd.usage import plan_of
from watcherd.watcher import Watcher, scan
from watcherd.web import WebServer, start_web
from watcherd.web.metrics import ApiRequests
from watcherd.web.state import clear_state, write_state
from watcherd.worker import EngineRoutes, Worker, unfinished

__all__ = ["Daemon", "engine_for", "transcribe"]

log = structlog.get_logger("watcherd.daemon")


#: The start-up and reconcile scans hand paths to the worker this many at a time.
SCAN_BATCH = 1000


class Daemon:
    """``watcherd run``: watch folders until told to stop; SIGHUP re-reads the config."""

    def __init__(
        self,
        config: Config,
        *,
        reload_config: Callable[[], Config] | None = None,
        notifier: Notifier | None = None,
        status_interval: float = 10.0,
    ) -> None:
        self.config = config
        self.reload_config = reload_config
        self.notifier = notifier or Notifier()
        self.status_interval = status_interval
        self._stop = asyncio.Event()
        self._generation_done = asyncio.Event()
        # A re-read config already checked, and the one this generation hands over to (a
        # SIGHUP during the hand-over is kept for the next generation to end at once).
        self._next_config: Config | None = None
        self._reload_to: Config | None = None
        # What the next generation takes over from this one (engines, attempts in flight).
        self._carry = Carry()
        # Engines a reload replaced, finishing the files they started.
        self._retiring: set[asyncio.Future[None]] = set()
        self._folders: Folders | None = None
        self._signals = 0
        self._integrity_checked = False
        # Engines report how far each file is; the status page shows it. Kept across reloads.
        self.progress = ProgressBoard()
        # Gladia requests by endpoint and status class, for /metrics (kept across reloads).
        self.api_requests = ApiRequests()

    def request_stop(self, signum: int) -> None:
        """Signal handler: the first signal drains, the second exits at once.

        At once is 128 + the signal's number (130 for Ctrl-C), as shells report a process
        the signal ended; the journal is consistent at every commit, so nothing is lost.
        """
        self._signals += 1
        if self._signals > 1:
            log.warning("exit_now", signal=signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("stopping", signal=signal.Signals(signum).name)
        self.notifier.stopping()
        self._stop.set()
        self._generation_done.set()

    def request_reload(self) -> None:
        """SIGHUP: re-read the config; only a valid one ends this generation (the next runs it,
        taking over what is in flight). A rejected one changes nothing at all."""
        if self.reload_config is None:
            log.warning("reload_unsupported")
            return
        if self._stop.is_set():
            return
        self.notifier.reloading()
        config = self._checked_reload()
        if config is None:
            self.notifier.ready()  # still ready, on the previous config
            return
        self._next_config = config
        self._generation_done.set()

    async def run(self) -> int:
        """Initialize, loop until a signal, shut down; returns the exit code."""
        engine_for(self.config)  # a config naming no usable engine stops here, journal untouched
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop, signum)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        journal = open_for_node(self.config)
        if journal.shared:
            log.info("node_registered", node=journal.node, journal=display_location(self.config),
                     lease_seconds=self.config.lease_seconds)
        watchdog = asyncio.ensure_future(self.notifier.run_watchdog())
        try:
            while not self._stop.is_set():
                await self._serve(journal)
                config, self._reload_to = self._reload_to, None
                if config is not None and not self._stop.is_set():
                    self.config = config
                    log.info("reloaded", watches=[str(w.path) for w in config.watches],
                             kept=sorted(self._carry.engines),
                             in_flight=len(self._carry.attempts))
        finally:
            watchdog.cancel()
            if self._retiring:
                # The last worker stopped (or finished) their files: they close now.
                await asyncio.wait(self._retiring, timeout=30)
            journal.close()
            log.info("stopped")
        return 0

    def _checked_reload(self) -> Config | None:
        """The re-read config if it is valid, else None (said in the log, with why)."""
        assert self.reload_config is not None
        try:
            config = self.reload_config()
            # A new API key or token is redacted before anything can log it; the old ones stay
            # redacted too, since requests made with them may still be reported.
            redact_also(secret_values(config))
            engine_for(config)
        except ConfigError as exc:
            log.error("reload_rejected", error=str(exc), hint="still running the previous "
                      "config; nothing was stopped or restarted")
            return None
        if (config.journal_path, config.journal_url, config.node_name) != (
            self.config.journal_path, self.config.journal_url, self.config.node_name
        ):
            log.warning("reload_journal_path_ignored", journal=display_location(self.config),
                        hint="a new [journal] path or url, or [node] name, takes effect after "
                        "a restart")
            config = dataclasses.replace(
                config, journal_path=self.config.journal_path,
                journal_url=self.config.journal_url, node_name=self.config.node_name,
            )
        return config

    def _outputs_for(self, source: Source) -> OutputSettings:
        """The output settings of the current config (engines kept by a reload ask it too)."""
        assert self._folders is not None
        return self._folders.outputs_for(source)

    async def _serve(self, journal: Journal) -> None:
        """One generation: engine, worker and watcher built from the current config."""
        self._generation_done = asyncio.Event()
        if self._stop.is_set() or self._next_config is not None:
            self._generation_done.set()
        config = self.config
        journal.map_roots(watch_roots(config.watches))
        # Sources outside every watch were handed over by `watcherd transcribe`.
        folders = Folders(config.watches, defaults=config.defaults,
                          handed_over=HandedOver(journal))
        self._folders = folders
        carry, self._carry = self._carry, Carry()
        health = carry.health or ApiHealth(journal)
        engine = await open_engines(config, journal, outputs_for=self._outputs_for,
                                    health=health, progress=self.progress,
                                    on_request=self.api_requests.record, keep=carry.engines)
        worker = _worker(config, journal, engine, folders)
        worker.adopt(carry.attempts)
        handed: HandOver | None = None
        if isinstance(journal.location, Path):
            worker.on_pause_change(functools.partial(_show_pause, journal.location))
        watcher = Watcher(config.watches, worker.hint_threadsafe,
                          on_complete=worker.complete_threadsafe)
        activity = Activity(
            journal, outputs_for=worker.outputs_for, on_done=config.hooks.on_done,
            on_failed=config.hooks.on_failed, hook_timeout=config.hooks.timeout_seconds,
            metrics_textfile=config.metrics_textfile,
        )
        helpers: list[asyncio.Future[None]] = []
        web: WebServer | None = None
        notices: Notifications | None = None
        try:
            web = await start_web(config.http, journal, progress=self.progress,
                                  activity=activity, api=self.api_requests,
                                  on_retried=worker.hint, paused=lambda: worker.journal_pause,
                                  open_journal=lambda: open_for_command(config, readonly=True),
                                  plan=plan_of(config.gladia))
            if config.http.address is not None and isinstance(journal.location, Path):
                # status and doctor are other processes: tell them whether the page is up.
                write_state(journal.location, config.http.listen, web is not None)
            await _start_engines(config, engine, kept=carry.engines)
            watcher.start()
            ready = asyncio.Event()
            helpers = [
                asyncio.ensure_future(self._startup(watcher, worker, journal, activity,
                                                    ready)),
                asyncio.ensure_future(self._reconcile(worker, journal)),
                asyncio.ensure_future(self._upkeep(journal, ready)),
            ]
            if config.notify.enabled:
                notices = _notifications(config, journal, worker, health, engine)
                helpers.append(asyncio.ensure_future(notices.run()))
            handed = await self._work_until_done(worker, engine)
        finally:
            for helper in helpers:
                helper.cancel()
            if notices is not None:
                journal.listeners.remove(notices.transition)
                health.on_paused.remove(notices.paused)
            watcher.stop()
            if web is not None:
                await web.close()
            if isinstance(journal.location, Path):
                clear_state(journal.location)
                clear_pause(journal.location)
            await activity.close()
            activity.write_metrics()
            await self._close_engines(engine, handed)

    async def _work_until_done(self, worker: Worker, engines: Engines) -> HandOver | None:
        """Run the worker until this generation ends; on a reload, hand over what runs."""
        loop = asyncio.get_running_loop()
        handed: HandOver | None = None
        stop = asyncio.Event()
        waiter = loop.create_task(self._generation_done.wait())
        runner = loop.create_task(worker.run(stop))
        await asyncio.wait({waiter, runner}, return_when=asyncio.FIRST_COMPLETED)
        if self._next_config is not None and not self._stop.is_set():
            # A reload: what runs goes on in the next generation instead of being stopped.
            self._reload_to, self._next_config = self._next_config, None
            handed = hand_over(worker, engines, self._reload_to)
            if handed.stopped:
                await asyncio.wait(handed.stopped, timeout=5)
        stop.set()
        await runner
        waiter.cancel()
        if handed is not None:
            self._carry = handed.carry
        return handed

    async def _close_engines(self, engines: Engines, handed: HandOver | None) -> None:
        """Close this generation's engines but those the next one keeps or that retire."""
        kept = set(self._carry.engines.values())
        for engine in engines.opened.values():
            if engine in kept:
                continue
            attempts = handed.retiring.get(engine) if handed is not None else None
            if attempts:
                task = asyncio.ensure_future(retire(engine, attempts))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            else:
                await engine.close()

    async def _upkeep(self, journal: Journal, ready: asyncio.Event) -> None:
        """The journal's background work (watcherd.upkeep), only once READY=1 was said."""
        await ready.wait()
        await keep_small(journal, self.config.history_days)

    async def _startup(self, watcher: Watcher, worker: Worker, journal: Journal,
                       activity: Activity, ready: asyncio.Event) -> None:
        """Wait for the observers, say READY=1, scan, then keep STATUS= fresh.

        READY comes before the scan so a huge tree cannot outlast systemd's start timeout;
        files that arrive meanwhile are caught by the observers, the scan catches the rest.
        """
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, watcher.wait_ready, 30.0)
        self.notifier.ready(_status_line(journal, worker))
        ready.set()
        problems = {str(k): v for k, v in watcher.root_problems().items()}
        # Problems only when there are some: "problems={}" on every start reads like one.
        log.info("ready", **({"problems": problems} if problems else {}))
        # The start-up scan and the integrity check run side by side: files already present
        # need not wait seconds for a check of a big journal.
        scan = loop.run_in_executor(None, self._scan, worker)
        if not self._integrity_checked:
            # Off the path to READY=1: a damaged journal is still said loudly, with the fix.
            self._integrity_checked = True
            damage = await loop.run_in_executor(None, journal.integrity_problem)
            if damage is not None:
                log.error("journal_damaged", journal=display_location(self.config), error=damage,
                          hint="stop watcherd and move the journal aside: it is rebuilt from "
                          "the outputs at the next start, nothing is paid twice")
        await scan
        while True:
            with contextlib.suppress(JournalUnavailable):  # the worker says it, and pauses
                activity.write_metrics()
            await asyncio.sleep(self.status_interval)
            self.notifier.status(_status_line(journal, worker))

    def _scan(self, worker: Worker) -> None:
        """Walk every root and hint each file (runs in a thread)."""
        started = time.monotonic()
        count = 0
        batch: list[Path] = []
        for watch in self.config.watches:
            for path in scan(watch):
                # Handed over in batches: one wake-up of the loop per thousand files.
                batch.append(path)
                count += 1
                if len(batch) >= SCAN_BATCH:
                    worker.hints_threadsafe(batch)
                    batch = []
        if batch:
            worker.hints_threadsafe(batch)
        log.info("scan_finished", files=count, seconds=round(time.monotonic() - started, 2))

    async def _reconcile(self, worker: Worker, journal: Journal) -> None:
        """Catch what events missed: rescan the roots, and re-check unfinished sources."""
        while True:
            await asyncio.sleep(self.config.scan_interval_seconds)
            try:
                active = journal.in_states(list(ACTIVE_STATES))
            except JournalUnavailable:
                active = []  # the database is away: the worker pauses; the scan still hints
            for source in active:
                # Only this config's folders (and handed-over files): a journal also holds
                # other nodes' or other configs' ones, left as they are.
                if worker.folders.watch_of_source(source) is not None:
                    worker.hint(Path(source.path))
            await asyncio.get_running_loop().run_in_executor(None, self._scan, worker)


def _status_line(journal: Journal, worker: Worker) -> str:
    """systemd's STATUS=: the counts, or that work is paused for the journal."""
    pause = worker.journal_pause
    if pause is None:
        try:
            return status_text(journal.counts())
        except JournalUnavailable as exc:
            return f"journal unavailable: {exc.reason}"
    return pause.describe()


def _show_pause(journal_path: Path, pause: JournalPause | None) -> None:
    """Tell `watcherd status` (another process) that work pauses, or resumed."""
    if pause is None:
        clear_pause(journal_path)
    else:
        write_pause(journal_path, pause)


def _notifications(config: Config, journal: Journal, worker: Worker, health: ApiHealth,
              engine: Engines) -> Notifications:
    """Notifications for this generation: files done or failed, and each pause."""
    notices = Notifications(config.notify)
    journal.listeners.append(notices.transition)
    health.on_paused.append(notices.paused)

    def journal_paused(pause: JournalPause | None) -> None:
        if pause is not None:
            notices.paused(pause.describe() + "; free space or fix the disk, work resumes "
                            "by itself")

    worker.on_pause_change(journal_paused)
    if not engine.for_worker():
        notices.paused(f"no engine can transcribe: {engine.problem()}")
    return notices


async def _start_engines(config: Config, engines: Engines, *, kept: Mapping[str, Engine]) -> None:
    """Say what this generation runs (and what is wrong with its config), then start the
    engines it opened; those ``kept`` from the last generation run already."""
    log.info("starting", journal=display_location(config),
             watches=[str(w.path) for w in config.watches],
             engine=engines.default or "none", engines=sorted(engines.opened))
    for warning in config.warnings:
        log.warning("config_warning", warning=warning)
    if not engines.for_worker():
        log.warning("no_engine", hint=engines.problem())
    for name, opened in engines.opened.items():
        if name not in kept:
            await opened.start()  # a kept engine said what was wrong already


def _worker(config: Config, journal: Journal, engines: Engines, folders: Folders) -> Worker:
    return Worker(config, journal, EngineRoutes.of(engines), folders=folders)


async def transcribe(config: Config, files: Sequence[Path], watch: WatchConfig, *,
                     progress: ProgressBoard | None = None,
                     on_wait: Callable[[], None] | None = None) -> dict[str, str]:
    """``watcherd transcribe``: the same pipeline for named files; returns path -> final state.

    ``progress`` receives the engines' reports and ``on_wait`` is called a few times a second
    while the files are worked on (the command's progress bar).
    """
    if engine_for(config) is None:
        raise ConfigError(no_engine_reason(config))
    journal = open_for_node(config, node=one_shot_node(config))
    # Only the named files: others pending in the journal wait for a daemon that watches them.
    folders = Folders(())
    try:
        # No callback listener: the daemon may hold its address, and a one-shot run polls.
        engine = await open_engines(config, journal, outputs_for=folders.outputs_for,
                                    listen=False, progress=progress)
    except BaseException:
        journal.close()
        raise
    worker = _worker(config, journal, engine, folders)
    stop = asyncio.Event()
    paths = [str(f) for f in files]
    try:
        if not engine.for_worker():
            raise ConfigError(engine.problem())
        await engine.check()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        for f in files:
            worker.add_explicit(f, dataclasses.replace(watch, path=f.parent))
        runner = asyncio.ensure_future(worker.run(stop))
        while not stop.is_set() and not runner.done():
            if not unfinished(journal, paths) and worker.idle():
                break
            if on_wait is not None:
                on_wait()
            await asyncio.sleep(0.2)
        stop.set()
        await runner
        result = {}
        for p in paths:
            source = journal.by_path(p)
            result[p] = source.state if source is not None else "ignored"
        return result
    finally:
        await engine.close()
        journal.close()
