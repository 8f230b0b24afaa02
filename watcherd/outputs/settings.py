"""What a watch asks of its outputs: formats, folder, names, note template and speakers.

One frozen value per watch (:meth:`watcherd.folders.Folders.outputs_for`), handed to
:func:`watcherd.outputs.writing.write_outputs` and :func:`watcherd.outputs.naming.output_base`,
so the daemon, ``watcherd render`` and ``watcherd speakers`` name and render alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from watcherd.outputs.facts import Facts as Facts
from watcherd.outputs.facts import MdTemplate
from watcherd.outputs.formats import DEFAULT_OUTPUTS, checked_formats
from watcherd.outputs.templates import DEFAULT_NAME

#: ``subtitle_names``: NAME.srt (plain), or NAME.<lang>.srt as media servers read them.
SubtitleNames = Literal["plain", "media"]


@dataclass(frozen=True, kw_only=True)
class OutputSettings:
    """Everything that decides which outputs a source gets and how they read."""

    formats: tuple[str, ...] = DEFAULT_OUTPUTS
    #: Where outputs go (mirroring the source's path below its watch root); None: beside it.
    output_dir: Path | None = None
    #: ``output_name``: the base's name, from tokens (see watcherd.outputs.templates).
    name: str = DEFAULT_NAME
    subtitle_names: SubtitleNames = "plain"
    md_template: MdTemplate | None = None
    #: [watch.speakers]: (speaker number, 0-based; name), applied to every format.
    speakers: tuple[tuple[int, str], ...] = ()
    #: The watch id, for the {watch} token.
    watch_id: str = ""

    @classmethod
    def of(cls, value: OutputSettings | Sequence[str]) -> OutputSettings:
        """``value`` itself, or the defaults with these formats (a plain list of formats)."""
        if isinstance(value, OutputSettings):
            return value
        return cls(formats=tuple(checked_formats(value)))
