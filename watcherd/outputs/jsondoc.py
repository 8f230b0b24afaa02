"""NAME.json: the job object as given, with callback URLs shortened, as valid UTF-8 JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from watcherd.display import json_safe
from watcherd.outputs.job import Job, job_object, read_job, with_names


def json_text(value: object, *, indent: int | None = None) -> str:
    """``value`` as JSON (non-ASCII kept); ValueError when it nests too deep to write."""
    try:
        return json.dumps(value, ensure_ascii=False, indent=indent)
    except RecursionError as exc:
        raise ValueError("the job nests too deeply to be written as JSON") from exc


def render(job: Job, title: str | None = None) -> str:
    """The job object as given, as indented UTF-8 JSON, with callback URLs shortened.

    A callback URL may carry a secret token (watcherd's own listener puts one there), and
    transcripts get shared: its path and query are replaced by "[redacted]". Lossless
    otherwise: a lone surrogate (a string cut mid-emoji) is written as its ``\\uXXXX`` escape,
    so the file is valid UTF-8 and ``json.loads`` gives the same job back. ``title`` is not
    used. Names given to speakers are in its ``watcherd`` block (``"speakers": {"1": ...}``).
    """
    raw = with_names(job.raw, job.speaker_names) if job.speaker_names else job.raw
    return json_safe(json_text(scrub_job(raw), indent=2)) + "\n"


def render_json(job: Mapping[str, Any]) -> str:
    """NAME.json of a job object (see :func:`render`)."""
    return render(read_job(job))


def scrub_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``job`` whose echoed callback URLs keep only their scheme and host."""
    copied = dict(job_object(job))
    params = job.get("request_params")
    if not isinstance(params, Mapping):
        return copied
    new_params = dict(params)
    config = params.get("callback_config")
    if isinstance(config, Mapping) and isinstance(config.get("url"), str):
        new_params["callback_config"] = {**config, "url": _scrub_url(config["url"])}
    if isinstance(params.get("callback_url"), str):
        new_params["callback_url"] = _scrub_url(params["callback_url"])
    copied["request_params"] = new_params
    return copied


def _scrub_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. a malformed IPv6 host: keep nothing of it
        return "[redacted]"
    if not parts.scheme or not host:
        return "[redacted]"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/[redacted]"
