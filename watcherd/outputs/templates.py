"""Templates people write: ``output_name`` (a file name) and ``md_template`` (a note).

Both use ``{field}`` placeholders (``{{`` and ``}}`` for a literal brace), checked when the
config is read: a field that does not exist is an error at start, never an empty string at
run time. Only plain names are placeholders: no ``{a.b}``, ``{a[0]}``, conversions or format
specs, so a template can read nothing but the values it is handed.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence

#: The tokens of ``output_name``: the source's stem and extension (without the dot), the
#: detected language, the job's date (YYYY-MM-DD) and the watch id.
NAME_TOKENS: tuple[str, ...] = ("stem", "ext", "lang", "date", "watch")
#: The tokens that differ from one file to the next in a folder: a name needs one.
_PER_FILE_TOKENS: tuple[str, ...] = ("stem",)
DEFAULT_NAME = "{stem}"
#: {lang} of a job whose language is unknown (ISO 639-2 "undetermined").
UNKNOWN_LANGUAGE = "und"


def _fields_of(template: str) -> list[str]:
    """The placeholders of ``template`` in order; ValueError for one that is not a plain name
    or for a stray brace (say ``{{`` for a literal one)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{exc} (write {{{{ or }}}} for a literal brace)") from None
    names: list[str] = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (
                f":{spec}" if spec else "") + "}"
            raise ValueError(f"{shown} is not a placeholder: write a field's name in braces, "
                             "such as {title}")
        names.append(name)
    return names


def check_fields(template: str, known: Sequence[str]) -> list[str]:
    """The placeholders of ``template``; ValueError naming any that is not in ``known``."""
    names = _fields_of(template)
    unknown = [name for name in dict.fromkeys(names) if name not in known]
    if unknown:
        listed = ", ".join("{" + name + "}" for name in unknown)
        raise ValueError(f"unknown field{'s' if len(unknown) > 1 else ''} {listed}: the fields "
                         f"are {', '.join('{' + k + '}' for k in known)}")
    return names


def fill(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each placeholder replaced (checked beforehand: all are known)."""
    return "".join(
        literal + (values[name] if name is not None else "")
        for literal, name, _spec, _conversion in string.Formatter().parse(template)
    )


def check_name(template: str) -> str:
    """``output_name`` checked: known tokens, one per-file token, and a plain file name
    whatever the tokens hold (no separator, no "..", not hidden); ValueError says what."""
    names = check_fields(template, NAME_TOKENS)
    if not any(name in _PER_FILE_TOKENS for name in names):
        raise ValueError("must contain {stem} (the source's name without its extension), or "
                         "every file of a folder would get the same outputs")
    literal = fill(template, dict.fromkeys(NAME_TOKENS, "x"))
    if "/" in literal or "\\" in literal or "\0" in literal:
        raise ValueError("is a file name, not a path: no / or \\ (outputs go to the source's "
                         "folder, or to output_dir)")
    if ".." in template:
        raise ValueError('may not contain ".."')
    if literal.startswith("."):
        raise ValueError('may not start with "." (a hidden name is never shown or watched)')
    if not literal.isprintable():
        raise ValueError("may hold only printable characters")
    return template
