"""Which watched folder a path belongs to, and what that folder asks for (outputs, options).

Built once from the configured watches (plus any files named on the command line) and shared
by the worker and the engines, which get :meth:`Folders.outputs_for` at construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path

from watcherd import roots
from watcherd.config import DEFAULT_OUTPUTS, WatchConfig, WatchDefaults
from watcherd.journal import Source
from watcherd.outputs.settings import OutputSettings
from watcherd.watcher import WatchIndex

__all__ = ["Folders"]

#: The note of a journaled source that no watch of this config covers (another config's).
_NOT_WATCHED = ("its folder is not watched by this config ({root}); run watcherd with the "
               "config that watches it, or `watcherd transcribe` the file")


class Folders:
    """The watches, with lookups by path (filters applied) and by a source's recorded root."""

    def __init__(self, watches: Sequence[WatchConfig], *,
                 defaults: WatchDefaults | None = None,
                 handed_over: Callable[[Source], bool] | None = None) -> None:
        """``defaults``: the settings of a source outside every watch that ``handed_over``
        says `watcherd transcribe` handed to the daemon, with no settle wait. Any other source
        outside every watch belongs to another config: it has no watch here, and is left
        alone."""
        self.watches = tuple(watches)
        self.index = WatchIndex(self.watches)
        # The wall every open, stat and write of this process goes through (watcherd.roots):
        # installed with the watches, so a reload's new folders bring their own.
        self.roots = roots.Roots.of(self.watches)
        roots.install(self.roots)
        self._by_root = {str(w.path): w for w in self.watches}
        self._explicit: dict[Path, WatchConfig] = {}
        self._defaults = defaults
        self._outside: dict[str, WatchConfig] = {}
        self._handed_over = handed_over or (lambda source: True)

    def add_explicit(self, path: Path, watch: WatchConfig) -> None:
        """A file named on the command line: it uses ``watch``'s settings."""
        self._explicit[path] = watch

    def explicit(self, path: Path) -> WatchConfig | None:
        """The settings of a file named on the command line, if it is one."""
        return self._explicit.get(path)

    def watch_of_source(self, source: Source) -> WatchConfig | None:
        """The watch of a journaled source: by its recorded root (cheap), else by its path.

        Matching a path against every watch's filters costs microseconds that add up to
        seconds when 100,000 queued sources are looked at on each pass.
        """
        # No Path made unless needed: at 100,000 sources a pass, making one was most of the
        # cost (the daemon names no files; only `watcherd transcribe` has explicit ones).
        if self._explicit:
            explicit = self._explicit.get(Path(source.path))
            if explicit is not None:
                return explicit
        found = (self._by_root.get(source.watch_root)
                 or self.index.watch_for(Path(source.path)))
        if found is None and self._defaults is not None and self._handed_over(source):
            found = self._outside_watch(source.watch_root)
        return found

    def unwatched_note(self, source: Source) -> str | None:
        """What ``status`` says of a source no watch covers, or None to say nothing.

        Only a daemon (which has ``defaults`` for handed-over files) says it: a one-shot
        ``watcherd transcribe`` leaves every file but its own alone without comment.
        """
        if self._defaults is None:
            return None
        return _NOT_WATCHED.format(root=source.watch_root)

    def _outside_watch(self, root: str) -> WatchConfig:
        """[defaults] for a folder no watch covers; named files are complete: no settling."""
        watch = self._outside.get(root)
        if watch is None:
            assert self._defaults is not None
            inherited = {f.name: getattr(self._defaults, f.name) for f in fields(WatchDefaults)}
            inherited["settle_seconds"] = 0.0
            watch = self._outside[root] = WatchConfig(path=Path(root), **inherited)
        return watch

    def outputs_for(self, source: Source) -> OutputSettings:
        """What this source's folder asks of its outputs (formats, folder, names...)."""
        watch = self.watch_of_source(source)
        return (watch.output_settings if watch is not None
                else OutputSettings(formats=DEFAULT_OUTPUTS))
