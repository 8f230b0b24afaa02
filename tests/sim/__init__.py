"""A faithful simulator of Gladia's pre-recorded v2 API (see docs/gladia-contract.md).

It serves real HTTP on 127.0.0.1 from a background thread so the daemon (as a subprocess) and
our httpx client talk to it for real. It is the project's only mock, so it follows the API
document, not any client: shapes, status codes, error bodies, list filtering, concurrency
queueing and limits. Where the document says [?] it takes the recommended behaviour and makes
the alternative switchable. Faults (status codes, dropped connections, lost responses, delays,
outages, failing jobs) are injected on demand, and a ledger records everything for assertions.

Run it by hand: ``python -m tests.sim --port 8765 --api-key KEY --job-seconds 1.0``.

The package: ``faults`` (endpoints, fault plan), ``jobs`` (the job model: deterministic
results), ``validation`` (the create body), ``requests`` (multipart uploads, list filters),
``server`` (state, scheduling, HTTP), ``media`` (test recordings and the sniffer).
"""

from __future__ import annotations

from tests.sim.faults import (
    DEFAULT_MAX_AUDIO_SECONDS,
    DEFAULT_MAX_UPLOAD_BYTES,
    LANGUAGE_CODES,
    TRANSLATION_CODES,
    Endpoint,
    FaultKind,
    FaultPlan,
    RequestRecord,
)
from tests.sim.jobs import (
    ENTITIES,
    build_result,
    expected_transcript,
    expected_translation,
    pii_settings,
    redact,
    script_for_sha,
    subtitles,
    transcript_for_sha,
    translate_words,
)
from tests.sim.media import (
    WAV_BYTES_PER_SECOND,
    WAV_RATE,
    MediaInfo,
    make_corrupt,
    make_mp3,
    make_sparse_wav,
    make_wav,
    probe_media,
    sniff_media,
    wav_header,
    wav_info,
)
from tests.sim.requests import (
    BadMultipart,
    BodyReader,
    ClientGone,
    metadata_contains,
    parse_list_query,
    parse_multipart_upload,
)
from tests.sim.server import (
    GladiaSimulator,
    classify,
    iso,
)
from tests.sim.validation import (
    validate_create_body,
)

__all__ = [
    "DEFAULT_MAX_AUDIO_SECONDS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "ENTITIES",
    "LANGUAGE_CODES",
    "TRANSLATION_CODES",
    "WAV_BYTES_PER_SECOND",
    "WAV_RATE",
    "BadMultipart",
    "BodyReader",
    "ClientGone",
    "Endpoint",
    "FaultKind",
    "FaultPlan",
    "GladiaSimulator",
    "MediaInfo",
    "RequestRecord",
    "build_result",
    "classify",
    "expected_transcript",
    "expected_translation",
    "iso",
    "make_corrupt",
    "make_mp3",
    "make_sparse_wav",
    "make_wav",
    "metadata_contains",
    "parse_list_query",
    "parse_multipart_upload",
    "pii_settings",
    "probe_media",
    "redact",
    "script_for_sha",
    "sniff_media",
    "subtitles",
    "transcript_for_sha",
    "translate_words",
    "validate_create_body",
    "wav_header",
    "wav_info",
]
