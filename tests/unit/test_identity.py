"""Content identity: options that mean the same share a key, the old key is still recognised,
and hashing never reads what is not a regular file, never blocks, and classifies every errno."""

from __future__ import annotations

import copy
import errno
import functools
import hashlib
import json
import os
import random
import threading
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.sim.media import make_wav
from watcherd import fserrors
from watcherd.errors import SourceError
from watcherd.identity import (
    KEY_PREFIX,
    LEGACY_KEY_PREFIX,
    canonical_options,
    content_key,
    hash_file,
    legacy_content_key,
    options_json,
)
from watcherd.journal import FileStat, Source
from watcherd.recover import job_from_outputs

SHA = "ab" * 32
OTHER_SHA = "cd" * 32

# The API's documented defaults (docs/gladia-contract.md), written out here on their own so the test
# states what "means the same" independently of the code under test.
API_DEFAULTS: dict[str, dict[str, Any]] = {
    "language_config": {"languages": [], "code_switching": False},
    "translation_config": {"model": "base", "match_original_utterances": True, "lipsync": True,
                           "context_adaptation": True, "informal": False},
    "subtitles_config": {"formats": ["srt"]},
    "summarization_config": {"type": "general"},
    "pii_redaction_config": {"processed_text_type": "MARKER"},
}
FLAGS = ("diarization", "translation", "subtitles", "summarization", "pii_redaction",
         "sentiment_analysis", "named_entity_recognition", "sentences", "punctuation_enhanced",
         "custom_vocabulary", "custom_spelling", "audio_to_llm")
FLAGGED = {f"{f}_config": f for f in ("diarization", "translation", "subtitles", "summarization",
                                      "pii_redaction", "custom_vocabulary", "custom_spelling",
                                      "audio_to_llm")}
SET_FIELDS = {("language_config", "languages"), ("translation_config", "target_languages"),
              ("subtitles_config", "formats")}
CODES = ["en", "fr", "de", "es", "it", "ja", "zh", "haw"]


def key(options: dict[str, Any], sha: str = SHA) -> str:
    """The key the worker computes: from the journal's options_json text."""
    return content_key(sha, options_json(options))


# -- examples ---------------------------------------------------------------------------------


class TestSameMeaningSameKey:
    """Spellings of one request share a key."""

    def test_scheme_prefix(self) -> None:
        """New keys carry the wf2 prefix, 4 + 40 characters."""
        k = key({})
        assert k.startswith(KEY_PREFIX) and KEY_PREFIX == "wf2-" and len(k) == 44

    def test_key_order(self) -> None:
        """The order options (and their fields) are written in does not matter."""
        a = '{"diarization":true,"language_config":{"languages":["fr"],"code_switching":true}}'
        b = '{"language_config":{"code_switching":true,"languages":["fr"]},"diarization":true}'
        assert content_key(SHA, a) == content_key(SHA, b)

    def test_empty_language_list_is_no_language_config(self) -> None:
        """language_config = {languages = []} (auto-detect, the default) is no language_config."""
        assert key({"language_config": {"languages": []}}) == key({})
        assert key({"language_config": {}}) == key({})
        assert key({"language_config": {"languages": [], "code_switching": False}}) == key({})

    def test_false_flags_are_absent(self) -> None:
        """diarization = false is no diarization; every flag defaults to false."""
        assert key({"diarization": False}) == key({})
        assert key({f: False for f in FLAGS}) == key({})

    def test_config_of_a_flag_that_is_off(self) -> None:
        """A *_config is read only when its flag is true: without it, it changes nothing."""
        assert key({"diarization_config": {"min_speakers": 2}}) == key({})
        assert key({"translation": False,
                    "translation_config": {"target_languages": ["fr"]}}) == key({})

    def test_custom_metadata_is_not_content(self) -> None:
        """The user's own custom_metadata labels the job; it does not change the transcript."""
        assert key({"custom_metadata": {"team": "research"}}) == key({})
        assert key({"diarization": True, "custom_metadata": {"a": 1}}) == key(
            {"diarization": True, "custom_metadata": {"b": [2]}})

    def test_delivery_is_not_content(self) -> None:
        """callback, callback_config and callback_url say where the result goes, not what."""
        assert key({"callback": True, "callback_config": {"url": "https://x.example/cb"},
                    "callback_url": "https://y.example/"}) == key({})

    def test_defaults_written_out(self) -> None:
        """Writing out documented defaults changes nothing."""
        base: dict[str, Any] = {
            "translation": True, "translation_config": {"target_languages": ["fr"]},
            "subtitles": True, "summarization": True, "pii_redaction": True}
        explicit = copy.deepcopy(base)
        explicit["translation_config"].update(API_DEFAULTS["translation_config"])
        explicit.update({k: dict(API_DEFAULTS[k]) for k in (
            "subtitles_config", "summarization_config", "pii_redaction_config")})
        assert key(explicit) == key(base)

    def test_set_like_lists(self) -> None:
        """Languages, target languages, formats and entity types are sets."""
        assert key({"language_config": {"languages": ["fr", "en"]}}) == key(
            {"language_config": {"languages": ["en", "fr", "en"]}})
        assert key({"subtitles": True, "subtitles_config": {"formats": ["vtt", "srt"]}}) == key(
            {"subtitles": True, "subtitles_config": {"formats": ["srt", "vtt"]}})
        assert key({"pii_redaction": True, "pii_redaction_config": {"entity_types": "GDPR"}}
                   ) == key({"pii_redaction": True,
                             "pii_redaction_config": {"entity_types": ["GDPR"]}})

    def test_code_switching_with_one_pinned_language(self) -> None:
        """code_switching is ignored when one language is pinned."""
        assert key({"language_config": {"languages": ["fr"], "code_switching": True}}) == key(
            {"language_config": {"languages": ["fr"]}})

    def test_vocabulary_spellings(self) -> None:
        """A bare word is the entry {value = word}; entry order does not matter."""
        a = {"custom_vocabulary": True,
             "custom_vocabulary_config": {"vocabulary": ["Gladia", {"value": "watcherd"}]}}
        b = {"custom_vocabulary": True, "custom_vocabulary_config": {
            "vocabulary": [{"value": "watcherd", "pronunciations": []}, {"value": "Gladia"}]}}
        assert key(a) == key(b)

    def test_integral_floats(self) -> None:
        """2.0 speakers is 2 speakers."""
        assert key({"diarization": True, "diarization_config": {"min_speakers": 2}}) == key(
            {"diarization": True, "diarization_config": {"min_speakers": 2.0}})


class TestDifferentMeaningDifferentKey:
    """What changes the transcript changes the key."""

    def test_meaningful_fields(self) -> None:
        """Diarization on/off, another language, another content: all different keys."""
        keys = {
            key({}), key({"diarization": True}), key({"language_config": {"languages": ["fr"]}}),
            key({"language_config": {"languages": ["en"]}}),
            key({"language_config": {"code_switching": True}}),
            key({"diarization": True, "diarization_config": {"min_speakers": 2}}),
            key({}, sha=OTHER_SHA),
            key({"audio_to_llm": True, "audio_to_llm_config": {"prompts": ["a", "b"]}}),
            key({"audio_to_llm": True, "audio_to_llm_config": {"prompts": ["b", "a"]}}),
            key({"audio_to_llm": True,
                 "audio_to_llm_config": {"prompts": ["a", "b"], "model": "x/y"}}),
        }
        assert len(keys) == 10

    def test_text_that_is_not_options_still_has_a_key(self) -> None:
        """A journal text that is not a JSON object gets a key of its own, never an error."""
        for text in ("", "not json", "[]", "null", '"x"', "{", "\ud800"):
            k = content_key(SHA, text)
            assert k.startswith(KEY_PREFIX) and k != key({})


class TestLegacyKey:
    """The wf1 key of older versions is computed exactly as before."""

    def test_known_vectors(self) -> None:
        """Values computed by the previous watcherd (identity.content_key of main @ dd82f25)."""
        options = {"language_config": {"languages": ["fr"]}, "diarization": True,
                   "custom_metadata": {"team": "r&d é"}}
        assert legacy_content_key(SHA, options_json(options)) == (
            "wf1-a04434635518a8a55660661c53832c41b52bac4f")
        assert legacy_content_key(SHA, options_json({})) == (
            "wf1-7a1a1289beb344c3acc74d2684e72cbe48a8c5f8")

    @given(options=st.dictionaries(st.text(max_size=8), st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                      max_size=3),
        max_leaves=8), max_size=5), sha=st.text("0123456789abcdef", min_size=64, max_size=64))
    def test_formula(self, options: dict[str, Any], sha: str) -> None:
        """The wf1 key is sha256 of "SHA\\nOPTIONS_JSON", its first 40 hex digits."""
        text = options_json(options)
        expected = "wf1-" + hashlib.sha256(f"{sha}\n{text}".encode()).hexdigest()[:40]
        assert legacy_content_key(sha, text) == expected
        assert expected.startswith(LEGACY_KEY_PREFIX)


# -- properties: spellings --------------------------------------------------------------------

codes = st.sampled_from(CODES)
text = st.text(st.characters(codec="utf-8"), max_size=12)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def meaningful_options(draw: st.DrawFn) -> dict[str, Any]:
    """A request as a config could spell it (flags true, configs with non-default values)."""
    options: dict[str, Any] = {}
    if draw(st.booleans()):
        languages = draw(st.lists(codes, max_size=3, unique=True))
        config: dict[str, Any] = {"languages": languages}
        if len(languages) != 1 and draw(st.booleans()):
            config["code_switching"] = True
        options["language_config"] = config
    if draw(st.booleans()):
        options["diarization"] = True
        if draw(st.booleans()):
            options["diarization_config"] = draw(st.fixed_dictionaries({}, optional={
                "number_of_speakers": st.integers(1, 6), "min_speakers": st.integers(0, 3),
                "max_speakers": st.integers(3, 8)}))
    if draw(st.booleans()):
        options["translation"] = True
        options["translation_config"] = {
            "target_languages": draw(st.lists(codes, min_size=1, max_size=3, unique=True)),
            **draw(st.fixed_dictionaries({}, optional={
                "model": st.just("enhanced"), "lipsync": st.just(False),
                "informal": st.just(True), "context": st.text(min_size=1, max_size=10)}))}
    if draw(st.booleans()):
        options["subtitles"] = True
        options["subtitles_config"] = draw(st.fixed_dictionaries({}, optional={
            "formats": st.sampled_from([["vtt"], ["srt", "vtt"]]),
            "maximum_rows_per_caption": st.integers(1, 5)}))
    if draw(st.booleans()):
        options["summarization"] = True
        options["summarization_config"] = draw(st.fixed_dictionaries({}, optional={
            "type": st.sampled_from(["bullet_points", "concise"])}))
    if draw(st.booleans()):
        options["pii_redaction"] = True
        options["pii_redaction_config"] = draw(st.fixed_dictionaries({}, optional={
            "entity_types": st.lists(st.sampled_from(["GDPR", "EMAIL_ADDRESS", "PHONE"]),
                                     min_size=1, max_size=3, unique=True),
            "processed_text_type": st.just("MASK")}))
    if draw(st.booleans()):
        options["custom_vocabulary"] = True
        options["custom_vocabulary_config"] = {"vocabulary": draw(st.lists(
            st.text(min_size=1, max_size=6), min_size=1, max_size=3, unique=True))}
    if draw(st.booleans()):
        options["audio_to_llm"] = True
        options["audio_to_llm_config"] = {"prompts": draw(st.lists(
            st.text(min_size=1, max_size=10), min_size=1, max_size=3))}
    for flag in ("sentiment_analysis", "named_entity_recognition", "sentences",
                 "punctuation_enhanced"):
        if draw(st.booleans()):
            options[flag] = True
    return options


def respell(options: dict[str, Any], draw: Callable[[st.SearchStrategy[Any]], Any]
            ) -> dict[str, Any]:
    """The same request written another way: every change here must keep the meaning."""
    out = copy.deepcopy(options)
    # Defaults written out, or left out.
    for name, defaults in API_DEFAULTS.items():
        flag = FLAGGED.get(name)
        if flag is not None and out.get(flag) is not True:
            continue
        config = out.setdefault(name, {})
        for field, value in defaults.items():
            if field not in config and draw(st.booleans()):
                config[field] = copy.deepcopy(value)
            elif config.get(field) == value and draw(st.booleans()):
                del config[field]
        if not config and draw(st.booleans()):
            del out[name]
    # An empty config object for a flag that is on.
    for name, flag in FLAGGED.items():
        if out.get(flag) is True and name not in out and draw(st.booleans()):
            out[name] = {}
    # Flags that are off written as false; configs for them that are never read.
    for flag in FLAGS:
        if flag not in out and draw(st.booleans()):
            out[flag] = False
            config_name = f"{flag}_config"
            if config_name in FLAGGED and draw(st.booleans()):
                out[config_name] = draw(st.dictionaries(text, json_value, max_size=2))
    # One pinned language: code_switching is ignored.
    languages = out.get("language_config", {}).get("languages")
    if isinstance(languages, list) and len(languages) == 1 and draw(st.booleans()):
        out["language_config"]["code_switching"] = draw(st.booleans())
    # Sets: another order, repeats.
    for name, field in SET_FIELDS:
        items = out.get(name, {}).get(field)
        if isinstance(items, list) and items:
            items = items + draw(st.lists(st.sampled_from(items), max_size=2))
            random.Random(draw(st.integers(0, 99))).shuffle(items)
            out[name][field] = items
    pii = out.get("pii_redaction_config", {})
    if isinstance(pii.get("entity_types"), list) and len(pii["entity_types"]) == 1 and draw(
            st.booleans()):
        pii["entity_types"] = pii["entity_types"][0]
    vocabulary = out.get("custom_vocabulary_config", {}).get("vocabulary")
    if isinstance(vocabulary, list):
        out["custom_vocabulary_config"]["vocabulary"] = [
            {"value": w} if draw(st.booleans()) else w for w in reversed(vocabulary)]
    # Integral numbers as floats.
    speakers = out.get("diarization_config", {}) if out.get("diarization") is True else {}
    for field, value in speakers.items():
        if isinstance(value, int) and draw(st.booleans()):
            speakers[field] = float(value)
    # Labels and delivery.
    if draw(st.booleans()):
        out["custom_metadata"] = draw(st.dictionaries(text, json_value, max_size=3))
    if draw(st.booleans()):
        out["callback"] = True
        out["callback_config"] = {"url": "https://cb.example/" + draw(text)}
    if draw(st.booleans()):
        out["callback_url"] = "https://old.example/"
    shuffled: dict[str, Any] = _shuffled(out, draw(st.integers(0, 2**32)))
    return shuffled


def _shuffled(value: Any, seed: int) -> Any:
    """The same JSON with every object's keys in another order."""
    rng = random.Random(seed)

    def go(v: Any) -> Any:
        if isinstance(v, dict):
            items = list(v.items())
            rng.shuffle(items)
            return {k: go(x) for k, x in items}
        if isinstance(v, list):
            return [go(x) for x in v]
        return v

    return go(value)


@given(options=meaningful_options(), data=st.data())
def test_respellings_share_a_key(options: dict[str, Any], data: st.DataObject) -> None:
    """Two independent respellings of one request (order, defaults, false flags, unread
    configs, empty lists, set order and repeats, floats, custom_metadata, callbacks) give one
    key, whether the text is sorted (options_json) or written in any key order."""
    first, second = respell(options, data.draw), respell(options, data.draw)
    expected = key(options)
    assert key(first) == expected == key(second)
    assert content_key(SHA, json.dumps(first)) == expected
    assert content_key(SHA, json.dumps(second, ensure_ascii=False)) == expected


@given(options=meaningful_options(), data=st.data())
def test_canonical_form_is_a_fixed_point(options: dict[str, Any], data: st.DataObject) -> None:
    """Canonicalising a canonical form changes nothing; it never holds metadata or callbacks."""
    canonical = canonical_options(respell(options, data.draw))
    assert canonical_options(canonical) == canonical
    assert not {"custom_metadata", "callback", "callback_config", "callback_url"} & set(canonical)


@given(options=meaningful_options(), data=st.data())
def test_meaningful_changes_change_the_key(options: dict[str, Any], data: st.DataObject) -> None:
    """Turning diarization on or off, pinning another language, asking another translation, or
    other content: a different key, however either side is spelled."""
    changed = copy.deepcopy(options)
    change = data.draw(st.sampled_from(["diarization", "language", "translation", "sha"]))
    sha = SHA
    if change == "diarization":
        if changed.get("diarization") is True:
            del changed["diarization"]
            changed.pop("diarization_config", None)
        else:
            changed["diarization"] = True
    elif change == "language":
        current = set(changed.get("language_config", {}).get("languages", []))
        new = data.draw(codes)
        assume(current != {new})
        changed["language_config"] = {"languages": [new]}
    elif change == "translation":
        current = set(changed.get("translation_config", {}).get("target_languages", []))
        targets = data.draw(st.lists(codes, min_size=1, max_size=2, unique=True))
        assume(changed.get("translation") is not True or set(targets) != current)
        changed["translation"] = True
        changed["translation_config"] = {**changed.get("translation_config", {}),
                                         "target_languages": targets}
    else:
        sha = OTHER_SHA
    assert key(respell(options, data.draw)) != key(respell(changed, data.draw), sha=sha)


# -- recognising finished work ----------------------------------------------------------------


def _source(path: Path, *, sha: str | None = SHA, options: dict[str, Any] | None = None,
            content: str | None = None) -> Source:
    """A settled journal row for ``path`` (all other columns empty)."""
    text = options_json(options or {})
    values: dict[str, Any] = {f.name: None for f in fields(Source)}
    values.update(id=1, path=str(path), watch_root=str(path.parent), state="pending",
                  sha256=sha, options_json=text, attempts=0, job_errors=0, created_at=0.0,
                  updated_at=0.0,
                  content_key=content if content is not None else (
                      content_key(sha, text) if sha else None))
    return Source(**values)


def _write_job(path: Path, wf_key: Any, status: str = "done") -> None:
    job = {"id": "j1", "status": status, "custom_metadata": {"wf_key": wf_key, "wf_file": "a"}}
    path.with_suffix(".json").write_text(json.dumps(job), encoding="utf-8")


class TestRecover:
    """job_from_outputs accepts outputs carrying the new or the legacy key of this content."""

    @pytest.mark.parametrize("which", ["new", "legacy"])
    def test_either_scheme(self, tmp_path: Path, which: str) -> None:
        """An output written under either key scheme is this source's finished work."""
        options = {"diarization": True, "custom_metadata": {"team": "x"}}
        source = _source(tmp_path / "a.wav", options=options)
        text = options_json(options)
        _write_job(tmp_path / "a.wav", content_key(SHA, text) if which == "new"
                   else legacy_content_key(SHA, text))
        found = job_from_outputs(source)
        assert found is not None and found[0] == tmp_path / "a"

    def test_other_content_or_options_are_not_taken(self, tmp_path: Path) -> None:
        """Keys of other bytes, or of options that mean something else, are not this work."""
        source = _source(tmp_path / "a.wav", options={"diarization": True})
        for wf_key in (legacy_content_key(OTHER_SHA, options_json({"diarization": True})),
                       content_key(SHA, options_json({})),
                       legacy_content_key(SHA, options_json({})), "", None):
            _write_job(tmp_path / "a.wav", wf_key)
            assert job_from_outputs(source) is None, wf_key

    def test_journal_holding_a_legacy_key(self, tmp_path: Path) -> None:
        """A journal row from before the new scheme (wf1 key) still recognises a wf2 output."""
        text = options_json({})
        source = _source(tmp_path / "a.wav", content=legacy_content_key(SHA, text))
        _write_job(tmp_path / "a.wav", content_key(SHA, text))
        assert job_from_outputs(source) is not None

    def test_unsettled_source(self, tmp_path: Path) -> None:
        """A source not yet hashed has no finished work."""
        _write_job(tmp_path / "a.wav", content_key(SHA, options_json({})))
        assert job_from_outputs(_source(tmp_path / "a.wav", sha=None)) is None

    @given(wf_key=json_value, status=st.sampled_from(["done", "error", "queued"]))
    def test_any_wf_key_value(self, tmp_path_factory: pytest.TempPathFactory, wf_key: Any,
                              status: str) -> None:
        """Whatever JSON value an output's wf_key holds (lists, objects...), the answer is
        None or the job, never an exception."""
        folder = tmp_path_factory.mktemp("recover")
        _write_job(folder / "a.wav", wf_key, status)
        assert job_from_outputs(_source(folder / "a.wav")) is None


# -- hashing ----------------------------------------------------------------------------------


class TestHashing:
    """hash_file reads regular files only, never blocks, and says what went wrong."""

    def test_digest_and_stat(self, tmp_path: Path) -> None:
        """The digest is the file's sha256 and the stat is the file's."""
        path = tmp_path / "a.wav"
        data = make_wav(path, seconds=0.5)
        digest, st = hash_file(path)
        assert digest == hashlib.sha256(data).hexdigest()
        assert st == FileStat.of(os.stat(path))
        assert hash_file(path, st)[0] == digest

    def test_changed_since_seen(self, tmp_path: Path) -> None:
        """A stat that is not the journal's means the file changed: transient."""
        path = tmp_path / "a.wav"
        make_wav(path, seconds=0.1)
        st = FileStat.of(os.stat(path))
        with pytest.raises(SourceError, match="changed since") as caught:
            hash_file(path, FileStat(st.size + 1, st.mtime_ns, st.dev, st.inode))
        assert caught.value.transient is True

    def test_fifo_never_blocks(self, tmp_path: Path) -> None:
        """A FIFO named like audio (and a link to it) is refused with its kind, permanently,
        without blocking, even with no writer."""
        fifo = tmp_path / "pipe.wav"
        os.mkfifo(fifo)
        (tmp_path / "link.wav").symlink_to(fifo)
        for path in (fifo, tmp_path / "link.wav"):
            outcome = _within_deadline(functools.partial(hash_file, path), fifo)
            assert isinstance(outcome, SourceError) and outcome.transient is False
            assert outcome.message == (
                "is a named pipe (FIFO), not a recording; watcherd ignores it")

    def test_fifo_swapped_in_after_stat(self, tmp_path: Path) -> None:
        """A FIFO that replaces a regular file between stat and open is caught by fstat."""
        fifo, regular = tmp_path / "pipe.wav", tmp_path / "real.wav"
        os.mkfifo(fifo)
        make_wav(regular, seconds=0.1)
        real_stat = os.stat

        def stale(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            return real_stat(regular if Path(path) == fifo else path, *args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "stat", stale)
            outcome = _within_deadline(lambda: hash_file(fifo), fifo)
        assert isinstance(outcome, SourceError) and "named pipe" in outcome.message

    def test_device_and_folder(self, tmp_path: Path) -> None:
        """A device (through a link) and a folder are refused by kind."""
        (tmp_path / "dev.wav").symlink_to("/dev/zero")  # reading it would never end
        (tmp_path / "dir.wav").mkdir()
        with pytest.raises(SourceError, match="is a character device"):
            hash_file(tmp_path / "dev.wav")
        with pytest.raises(SourceError, match="is a folder, not a file"):
            hash_file(tmp_path / "dir.wav")

    def test_missing(self, tmp_path: Path) -> None:
        """A file gone before it is read: transient, "disappeared"."""
        with pytest.raises(SourceError, match="disappeared") as caught:
            hash_file(tmp_path / "gone.wav")
        assert caught.value.transient is True


HASH_STEPS = ("stat", "open", "fstat", "read")


def _hash_with_failure(path: Path, step: str, code: int, after: int) -> SourceError | None:
    """hash_file with ``os.<step>`` raising ``code`` from its call number ``after + 1`` on."""
    real = getattr(os, step)
    calls = [0]

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] > after:
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, step, failing)
        try:
            hash_file(path)
        except SourceError as exc:
            return exc
    return None


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3.5 MB file: hashing it takes four reads of 1 MB and one at the end."""
    path = tmp_path_factory.mktemp("hash") / "big.wav"
    make_wav(path, seconds=110.0)
    return path


@given(code=st.sampled_from(sorted(errno.errorcode)), step=st.sampled_from(HASH_STEPS),
       after=st.integers(0, 12))
def test_every_errno_while_hashing(big_file: Path, code: int, step: str, after: int) -> None:
    """Any errno from stat, open, fstat or read (at any read) gives a SourceError, never
    another exception, whose transient flag is fserrors.classify's retryable."""
    outcome = _hash_with_failure(big_file, step, code, after)
    # The open walks from / down without links (watcherd.roots): one open per folder.
    opens = len(big_file.resolve().parts)
    calls_made = {"stat": 1, "open": opens, "fstat": 3, "read": 5}[step]
    if after >= calls_made:
        assert outcome is None  # the step never failed
        return
    assert outcome is not None, (step, errno.errorcode[code])
    assert outcome.transient is fserrors.classify(OSError(code, "x")).retryable
    assert str(big_file) not in outcome.message and outcome.message


@pytest.mark.parametrize("code", sorted(errno.errorcode))
def test_every_errno_on_read(big_file: Path, code: int) -> None:
    """Each errno, raised by the second read, is classified exactly as fserrors says."""
    outcome = _hash_with_failure(big_file, "read", code, 1)
    problem = fserrors.classify(OSError(code, "x"))
    assert outcome is not None and outcome.transient is problem.retryable
    if problem.kind == "permission":
        assert "give the watcherd user read access" in outcome.message
    elif problem.kind == "missing":
        assert "disappeared while being read" in outcome.message
    elif code == errno.EISDIR:
        assert outcome.message == "is a folder, not a file"
    else:
        assert problem.message in outcome.message


def _within_deadline(call: Callable[[], object], fifo: Path, timeout: float = 20.0) -> object:
    """Run ``call`` in a thread; if it is still blocked after ``timeout``, unblock a reader of
    ``fifo`` by opening it for writing, and fail. Returns the result or the exception."""
    box: list[object] = []

    def run() -> None:
        try:
            box.append(call())
        except Exception as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(timeout)
        pytest.fail("hashing blocked on a FIFO")
    return box[0]
