"""Gladia's published API definition, read by ``watcherd doctor`` for advice only.

Gladia publishes its OpenAPI document at ``{api_url}/openapi.json`` (docs/gladia-contract.md).
``doctor`` fetches it when the API is reachable and compares the folders' options with the
create request's fields: an option Gladia's definition does not have is a warning (its files
would fail with a 400). The daemon never fetches it, and nothing depends on it: a definition
that cannot be fetched or read is a note, never a failure, because watcherd's own option
checks and Gladia's 400 answers already keep a wrong option from costing anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from watcherd.configkit import did_you_mean

__all__ = ["RequestFields", "advice", "fetch", "request_fields"]

_DEFINITION_PATH = "/openapi.json"
#: The create call whose request body holds the options.
_CREATE_PATH = "/v2/pre-recorded"
# The definition is a few hundred kilobytes; more is not a definition.
MAX_BYTES = 8 << 20


@dataclass(frozen=True)
class RequestFields:
    """The create request's fields in a definition: top-level, and of each object field."""

    top: frozenset[str]
    nested: Mapping[str, frozenset[str]]


async def fetch(api_url: str, *, timeout: float) -> tuple[RequestFields | None, str]:
    """The request fields of the definition at ``api_url``, or None and why not (one line)."""
    url = api_url.rstrip("/") + _DEFINITION_PATH
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client:
            answer = await client.get(url)
    except httpx.HTTPError as exc:
        return None, f"{url} could not be fetched ({type(exc).__name__})"
    if answer.status_code != 200:
        return None, f"{url} answered {answer.status_code}"
    if len(answer.content) > MAX_BYTES:
        return None, f"{url} sent more than {MAX_BYTES >> 20} MB"
    try:
        document = answer.json()
    except ValueError:
        return None, f"{url} is not JSON"
    fields = request_fields(document)
    if fields is None:
        return None, f"{url} has no request schema for POST {_CREATE_PATH}"
    return fields, url


def request_fields(document: Any) -> RequestFields | None:
    """The create request's fields in an OpenAPI ``document`` (None: not found in it).

    Any JSON is accepted: a part of unexpected shape reads as absent, never as an error.
    """
    operation = _at(document, "paths", _CREATE_PATH, "post")
    schema = _resolve(document, _at(operation, "requestBody", "content", "application/json",
                                    "schema"))
    properties = _at(schema, "properties")
    if not isinstance(properties, Mapping) or not properties:
        return None
    nested: dict[str, frozenset[str]] = {}
    for name, field in properties.items():
        inner = _at(_resolve(document, field), "properties")
        if isinstance(inner, Mapping):
            nested[str(name)] = frozenset(str(k) for k in inner)
    return RequestFields(frozenset(str(k) for k in properties), nested)


def advice(options: Mapping[str, Any], fields: RequestFields, where: str) -> list[str]:
    """One line for each option (and each field of an object option) not in ``fields``."""
    found: list[str] = []
    for key, value in options.items():
        if key not in fields.top:
            found.append(f"{where}: option {key!r} is not in Gladia's published definition"
                         f"{_hint(key, fields.top)}")
            continue
        allowed = fields.nested.get(key)
        if allowed is None or not isinstance(value, Mapping):
            continue
        for inner in value:
            if inner not in allowed:
                found.append(f"{where}: {key}.{inner} is not in Gladia's published "
                             f"definition{_hint(str(inner), allowed)}")
    return found


def _hint(name: str, choices: Iterable[str]) -> str:
    return did_you_mean(name, sorted(choices))


def _at(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _resolve(document: Any, value: Any, depth: int = 0) -> Any:
    """Follow a local ``$ref`` (``#/components/schemas/X``) a few steps at most."""
    ref = _at(value, "$ref")
    if not isinstance(ref, str) or not ref.startswith("#/") or depth > 8:
        return value
    return _resolve(document, _at(document, *ref[2:].split("/")), depth + 1)
