"""The output formats: each one's renderer, and which of them translations are written in.

Adding a format: a module with ``render(job, title) -> str`` (see txt.py), and its name
here in :data:`RENDERERS` (and in :data:`TRANSLATED` when translations get it too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# Imported as submodules by full name: the package __init__ imports this module.
import watcherd.outputs.jsondoc as jsondoc
import watcherd.outputs.note as note
import watcherd.outputs.srt as srt
import watcherd.outputs.txt as txt
import watcherd.outputs.vtt as vtt
from watcherd.outputs.job import Job, Transcription

# A renderer takes the job and the output base's name (for a heading) and returns the text.
Renderer = Callable[[Job, str | None], str]

RENDERERS: dict[str, Renderer] = {
    "txt": txt.render,
    "json": jsondoc.render,
    "srt": srt.render,
    "vtt": vtt.render,
    "md": note.render_default,
}
FORMATS: tuple[str, ...] = tuple(RENDERERS)
#: The outputs of a folder that does not choose (and of a file whose folder is gone).
DEFAULT_OUTPUTS: tuple[str, ...] = ("txt", "json")


def default_outputs(source: object) -> tuple[str, ...]:
    """The default outputs, for components built without a folder lookup (tests, tools)."""
    return DEFAULT_OUTPUTS


# The formats each translation is written in (NAME.<lang>.txt always, the others when the
# format is asked for), from a translated transcription.
TRANSLATED: dict[str, Callable[[Transcription], str]] = {
    "txt": txt.of_transcription,
    "srt": srt.of_transcription,
    "vtt": vtt.of_transcription,
}
TRANSLATED_FORMATS: tuple[str, ...] = tuple(TRANSLATED)
# Every translation gets this one, whatever the formats.
ALWAYS_TRANSLATED: str = "txt"


def checked_formats(formats: Sequence[str]) -> list[str]:
    """``formats`` without repeats; ValueError naming any that is not in :data:`FORMATS`."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(
            f"unknown output format(s) {', '.join(map(repr, unknown))}: "
            f"expected any of {', '.join(FORMATS)}"
        )
    return list(dict.fromkeys(formats))
