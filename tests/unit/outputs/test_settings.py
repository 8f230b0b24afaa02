"""Output names, note templates, speaker names and the output folder's walk (issue 23):
examples and properties of what people write in the config and on the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from watcherd import roots
from watcherd.config import parse_config
from watcherd.errors import ConfigError
from watcherd.outputs import OutputSettings, naming_for, output_base, output_paths, render
from watcherd.outputs.job import stored_names, with_names
from watcherd.outputs.templates import NAME_TOKENS, check_fields, check_name, fill
from watcherd.rerender import parse_names

JOB: dict[str, Any] = {
    "id": "job-1", "status": "done", "created_at": "2026-05-04T10:00:00Z",
    "file": {"filename": "talk.wav", "audio_duration": 3.0},
    "request_params": {"diarization": True, "model": "solaria-1"},
    "result": {"transcription": {
        "full_transcript": "hello there general", "languages": ["en"],
        "utterances": [
            {"text": "hello there", "start": 0.0, "end": 1.0, "speaker": 0},
            {"text": "general", "start": 1.0, "end": 2.0, "speaker": 1},
        ],
        "subtitles": [{"format": "srt", "subtitles": "1\n00:00:00,000 --> 00:00:01,000\nhi\n"}],
    }, "translation": {"success": True, "results": [
        {"languages": ["fr"], "full_transcript": "bonjour",
         "utterances": [{"text": "bonjour", "start": 0, "end": 1, "speaker": 0}]},
        {"languages": ["en"], "full_transcript": "hello",
         "utterances": [{"text": "hello", "start": 0, "end": 1, "speaker": 0}]},
    ]}},
}

# Values a token can hold: a file's stem and extension, a language code, a date, a watch id.
_TOKEN_VALUE = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=["Cs"]),
                       max_size=20)


@given(st.text(max_size=40), st.dictionaries(st.sampled_from(NAME_TOKENS), _TOKEN_VALUE))
def test_an_accepted_name_template_never_makes_a_path(template: str,
                                                      values: dict[str, str]) -> None:
    """Whatever a person writes, a template is refused or fills in to one file name: no
    separator, never "." or "..", whatever the tokens hold."""
    try:
        check_name(template)
    except ValueError as exc:
        assert str(exc)
        return
    name = fill(template, {**dict.fromkeys(NAME_TOKENS, "x"), **values, "stem": "s"})
    assert "/" not in name and "\0" not in name
    assert name not in ("", ".", "..")
    assert "{stem}" in template


@given(st.text(max_size=60))
def test_template_fields_are_checked_or_refused_with_a_reason(template: str) -> None:
    try:
        names = check_fields(template, ("title", "date"))
    except ValueError as exc:
        assert str(exc)
    else:
        assert set(names) <= {"title", "date"}
        fill(template, {"title": "t", "date": "d"})


@given(st.lists(st.text(max_size=30), max_size=5))
def test_speaker_pairs_parse_or_say_what_is_wrong(pairs: list[str]) -> None:
    try:
        names = parse_names(pairs)
    except ValueError as exc:
        assert "expected NUMBER=NAME" in str(exc) or "a name is one line" in str(exc)
    else:
        for number, name in names.items():
            assert 0 <= number < 10_000
            assert name is None or (name.isprintable() and name == name.strip())


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=3)
                    | st.dictionaries(st.text(max_size=4), kids, max_size=3), max_leaves=12))
def test_stored_names_read_any_json_without_raising(block: object) -> None:
    names = stored_names({"watcherd": {"speakers": block}})
    assert all(isinstance(n, int) and isinstance(v, str) for n, v in names.items())
    assert stored_names({"watcherd": block}) is not None


@given(st.dictionaries(st.integers(0, 50),
                       st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
                               min_size=1, max_size=20).map(str.strip).filter(bool)))
def test_names_kept_in_the_job_read_back(names: dict[int, str]) -> None:
    names = {n: " ".join(v.split()) for n, v in names.items() if v.isprintable()}
    assert stored_names(with_names(JOB, names)) == names
    assert "watcherd" not in with_names(with_names(JOB, names), {})


def test_speakers_by_name_in_text_subtitles_markdown_and_json() -> None:
    job = with_names(JOB, {0: "Alice"})
    assert render("txt", job) == "Alice: hello there\nSpeaker 2: general\n"
    assert "[Alice] hello there" in render("srt", job)  # Gladia's own subtitles carry no names
    assert "[Alice] hello there" in render("vtt", job)
    md = render("md", job)
    assert "**[00:00] Alice:** hello there" in md and "| Alice |" in md
    assert yaml.safe_load(md.split("---\n")[1])["speakers"] == ["Alice", "Speaker 2"]
    assert json.loads(render("json", job))["watcherd"] == {"speakers": {"1": "Alice"}}
    assert "[Speaker 1]" not in render("srt", JOB) and "hi" in render("srt", JOB)


def test_config_speakers_apply_and_the_job_own_names_win(tmp_path: Path) -> None:
    settings = OutputSettings(formats=("txt",), speakers=((0, "Ann"), (1, "Ben")))
    (tmp_path / "talk").write_bytes(b"")
    base = tmp_path / "talk"
    from watcherd.outputs import write_outputs

    write_outputs(base, settings, with_names(JOB, {1: "Zoe"}))
    assert (tmp_path / "talk.txt").read_text(encoding="utf-8") == "Ann: hello there\nZoe: general\n"


def test_media_names_use_the_detected_language_and_never_write_a_file_twice() -> None:
    media = OutputSettings(formats=("txt", "srt", "vtt"), subtitle_names="media")
    names = [p.name for p in output_paths(Path("/o/talk"), media, JOB)]
    assert names == ["talk.txt", "talk.en.srt", "talk.en.vtt", "talk.fr.txt", "talk.fr.srt",
                     "talk.fr.vtt", "talk.en.txt"]
    unknown = {**JOB, "result": {"transcription": {"languages": [], "utterances": []}}}
    assert [p.name for p in output_paths(Path("/o/talk"), media, unknown)] == [
        "talk.txt", "talk.srt", "talk.vtt"]


def test_names_mirror_the_root_and_fill_every_token() -> None:
    settings = OutputSettings(output_dir=Path("/out"), name="{date}-{watch}-{stem}.{ext}.{lang}",
                              watch_id="desk")
    source = Path("/root/a/b/x.mp3")
    naming = naming_for(source, Path("/root"), settings, lang="fr", date="2026-05-04")
    assert output_base(source, taken=lambda b: False, naming=naming) == Path(
        "/out/a/b/2026-05-04-desk-x.mp3.fr")
    taken = {Path("/out/a/b/2026-05-04-desk-x.mp3.fr")}
    assert output_base(source, taken=taken.__contains__, naming=naming) == Path(
        "/out/a/b/2026-05-04-desk-x.mp3.mp3.fr")  # the full name, as without a template
    assert naming_for(source, Path("/root"), settings).tokens["lang"] == "und"


@pytest.mark.parametrize(("table", "says"), [
    ({"speakers": {"one": "A"}}, "expected a speaker's number"),
    ({"speakers": {"\u00b9": "A"}}, "expected a speaker's number"),  # a digit, not ASCII
    ({"speakers": {"1": "A\x07B"}}, "expected a name"),
    ({"speakers": {"1": ""}}, "expected a name"),
    ({"speakers": ["A"]}, "expected a table"),
    ({"subtitle_names": "jellyfin"}, "subtitle_names"),
    ({"md_template": "/nonexistent/t.md"}, "cannot read /nonexistent/t.md"),
])
def test_bad_output_keys_are_refused(tmp_path: Path, table: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"watch": [{"path": str(tmp_path), **table}]}, source=None, env={})
    assert says in str(caught.value)


def test_an_output_folder_may_not_hold_a_watched_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="outputs must never become inputs"):
        parse_config({"watch": [{"path": str(tmp_path / "in"), "output_dir": str(tmp_path)}]},
                     source=None, env={})
    parse_config({"watch": [{"path": str(tmp_path), "output_dir": str(tmp_path / "out" / "x"),
                             "exclude": ["out"]}]}, source=None, env={})


def test_folders_made_beneath_an_output_folder_never_follow_a_link(tmp_path: Path) -> None:
    """A link planted where a folder is to be made is refused; nothing lands where it leads."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "a").symlink_to(elsewhere)
    wall = roots.Roots([], [out])
    place = wall.locate_entry(out / "b" / "c" / "x.txt")
    with place.folder(create=0o750) as fd:
        assert os.path.samestat(os.fstat(fd), (out / "b" / "c").stat())
    with pytest.raises((roots.LinkOutside, roots.LinkOnPath)), wall.locate_entry(
            out / "a" / "d" / "x.txt").folder(create=0o750):
        pass
    assert list(elsewhere.iterdir()) == []


def test_front_matter_names_the_model_of_either_engine() -> None:
    """Gladia's model is in the request; the local engine's Whisper model in its own part."""
    def model_of(job: dict[str, Any]) -> object:
        return yaml.safe_load(render("md", job).split("---\n")[1])["model"]

    assert model_of(JOB) == "solaria-1"
    local = {**JOB, "engine": "local", "request_params": {"diarization": True},
             "watcherd": {"model": "whisper-base", "unavailable_options": ["diarization"]}}
    assert model_of(local) == "whisper-base"
    assert model_of({**JOB, "request_params": {}}) is None
