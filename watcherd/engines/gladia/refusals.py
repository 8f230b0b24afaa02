"""What a refusal from Gladia means for the user: the reason a source failed with.

Gladia answers a bad request with class-validator messages ("property x should not exist",
"language_config.languages must ..."); the user needs to hear which of their folder's options
that is and what to do, not the HTTP status.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from watcherd.errors import PermanentGladiaError

__all__ = ["options_named", "refusal_reason"]

#: Words by which a reason already says what to do.
_ACTIONS = ("watcherd retry", "replace", "split it", "check [gladia]")


# How Gladia's (class-validator) messages name a field: "property x should not exist", or
# the field's path first ("language_config.languages must ...").
_UNKNOWN_FIELD = re.compile(r"property (\S+) should not exist")
_FIELD_FIRST = re.compile(r"([A-Za-z_][\w]*(?:\.[\w]+)*) (?:must|should)\b")


def options_named(errors: Sequence[str]) -> list[str]:
    """The options Gladia's validation errors are about, in order, each once."""
    names: list[str] = []
    for error in errors:
        found = _UNKNOWN_FIELD.search(error) or _FIELD_FIRST.match(error)
        if found is not None and found.group(1) not in names:
            names.append(found.group(1))
    return names


def refusal_reason(exc: PermanentGladiaError) -> str:
    """The reason a source failed, in the user's words, for a refusal Gladia will not change
    its mind on: what Gladia named, and what to fix before `watcherd retry`."""
    if exc.status in (400, 422) and exc.validation_errors:
        named = [n for n in options_named(exc.validation_errors)
                 if n.split(".")[0] not in ("audio_url", "custom_metadata")]
        which = (f" about the option{'s' if len(named) > 1 else ''} {', '.join(named)}"
                 if named else "")
        return (f"Gladia refused the request{which}: {exc.describe()}; fix the options of "
                "this folder in the config ([defaults.options] / [watch.options]; an option "
                "Gladia does not know is removed or renamed) and run `watcherd retry`")
    text = exc.describe()
    if not any(action in text for action in _ACTIONS):
        # A refusal the client had no specific words for: say what can help.
        text += ("; fix what Gladia names (the folder's options in [watch.options], or the "
                 "file), then run `watcherd retry`")
    return text
