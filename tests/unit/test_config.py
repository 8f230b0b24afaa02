"""Tests for watcherd.config: lookup, defaults, validation messages, secrets, merging, paths."""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.paths import REPO
from watcherd import config as config_module
from watcherd.config import (
    Config,
    Secret,
    default_journal_path,
    find_config,
    load_config,
    parse_config,
    with_extra_watches,
)
from watcherd.config import model as config_model
from watcherd.engines.gladia import config as gladia_config
from watcherd.engines.gladia import options as gladia_options
from watcherd.engines.local import config as local_config
from watcherd.errors import ConfigError
from watcherd.retry import RETRY_KEYS

EXAMPLE = REPO / "config.example.toml"
KEY = "gk-5f3c9a1e-THIS-IS-THE-SECRET-7d2b"


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the user config/state dirs and /etc at tmp_path so no real file is ever read."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.delenv("WATCHERD_CONFIG", raising=False)
    monkeypatch.delenv("GLADIA_API_KEY", raising=False)
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG_PATH", tmp_path / "etc" / "config.toml")
    return home


def write(folder: Path, text: str, name: str = "config.toml") -> Path:
    """Write a TOML file (dedented) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(path: Path, env: dict[str, str] | None = None) -> Config:
    """Load ``path`` as if given with --config, with an explicit (default empty) environment."""
    return load_config(path, env={} if env is None else env)


def error_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> tuple[Path, str]:
    """The file written and the ConfigError message that loading it raises."""
    path = write(tmp_path / "conf", text)
    with pytest.raises(ConfigError) as caught:
        load(path, env)
    return path, str(caught.value)


# -- lookup ----------------------------------------------------------------------------------


def test_explicit_path_wins_over_env_and_user_dir(tmp_path: Path, isolated_dirs: Path) -> None:
    """--config is used even when $WATCHERD_CONFIG and the user config file exist."""
    explicit = write(tmp_path / "a", "")
    named = write(tmp_path / "b", "")
    write(isolated_dirs / ".config" / "watcherd", "")
    assert find_config(explicit, {"WATCHERD_CONFIG": str(named)}) == explicit


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    """A --config path that does not exist is an error naming the path and --config."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="--config") as caught:
        find_config(missing, {})
    assert str(missing) in str(caught.value)


def test_explicit_directory_is_an_error(tmp_path: Path) -> None:
    """A --config path that is a folder is refused, not read."""
    with pytest.raises(ConfigError, match="not a file"):
        find_config(tmp_path, {})


def test_env_variable_wins_over_user_dir(tmp_path: Path, isolated_dirs: Path) -> None:
    """$WATCHERD_CONFIG is used before the user config dir."""
    named = write(tmp_path / "b", "")
    write(isolated_dirs / ".config" / "watcherd", "")
    assert find_config(None, {"WATCHERD_CONFIG": str(named)}) == named


def test_env_variable_missing_file_names_the_variable(tmp_path: Path) -> None:
    """$WATCHERD_CONFIG naming a missing file is an error that names the variable."""
    missing = tmp_path / "gone.toml"
    with pytest.raises(ConfigError, match=r"\$WATCHERD_CONFIG") as caught:
        find_config(None, {"WATCHERD_CONFIG": str(missing)})
    assert str(missing) in str(caught.value)


def test_empty_env_variable_is_ignored(isolated_dirs: Path) -> None:
    """An empty $WATCHERD_CONFIG means unset: the lookup goes on to the user dir."""
    user = write(isolated_dirs / ".config" / "watcherd", "")
    assert find_config(None, {"WATCHERD_CONFIG": ""}) == user


def test_user_dir_wins_over_system_file(tmp_path: Path, isolated_dirs: Path) -> None:
    """The user config file ($XDG_CONFIG_HOME/watcherd/config.toml) is used before /etc."""
    write(tmp_path / "etc", "")
    user = write(isolated_dirs / ".config" / "watcherd", "")
    assert find_config(None, {}) == user


def test_system_file_used_last(tmp_path: Path) -> None:
    """With no --config, no variable and no user file, the system file is used."""
    system = write(tmp_path / "etc", "")
    assert find_config(None, {}) == system


def test_no_file_anywhere_gives_none() -> None:
    """find_config returns None when no candidate exists."""
    assert find_config(None, {}) is None


def test_load_config_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without env=, load_config uses os.environ for $WATCHERD_CONFIG and $GLADIA_API_KEY."""
    named = write(tmp_path / "b", "[log]\nlevel = \"debug\"\n")
    monkeypatch.setenv("WATCHERD_CONFIG", str(named))
    monkeypatch.setenv("GLADIA_API_KEY", KEY)
    config = load_config()
    assert config.source == named
    assert config.log_level == "debug"
    assert config.gladia.api_key == Secret(KEY)


# -- defaults and the example ----------------------------------------------------------------


def test_defaults_when_no_file(isolated_dirs: Path) -> None:
    """No config file anywhere: every documented default, no watches, no key."""
    config = load_config(None, env={})
    assert config.source is None
    assert config.gladia.api_key is None
    assert config.gladia.api_url == "https://api.gladia.io"
    assert config.gladia.max_concurrent_jobs == 3
    assert config.engine == "auto"
    assert config.local_model == "base"
    assert config.journal_path == isolated_dirs / ".local" / "state" / "watcherd" / "journal.db"
    assert config.log_format == "auto"
    assert config.log_level == "info"
    assert config.scan_interval_seconds == 300.0
    assert config.watches == ()
    assert config.defaults.outputs == ("txt", "json")
    assert config.defaults.settle_seconds == 2.0
    assert config.defaults.recursive is True
    assert config.defaults.poll == "auto"
    assert dict(config.defaults.options) == {}


def test_default_journal_path_is_in_user_state_dir(isolated_dirs: Path) -> None:
    """default_journal_path() follows platformdirs' user state dir."""
    expected = isolated_dirs / ".local" / "state" / "watcherd" / "journal.db"
    assert default_journal_path() == expected


def test_example_file_loads_cleanly() -> None:
    """config.example.toml loads without error and means what its comments say."""
    config = load(EXAMPLE)
    assert config.gladia.api_key is None
    assert [w.path for w in config.watches] == [Path("/srv/inbox")]
    watch = config.watches[0]
    assert watch.outputs == ("txt", "json")
    assert dict(watch.options) == {"language_config": {"languages": []}}


def test_example_file_documents_every_key() -> None:
    """Every key the parser accepts appears in config.example.toml."""
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = [
        *config_model._TOP_KEYS,
        *(section.name for section in config_module.engine_sections()),
        *gladia_config.KEYS,
        *local_config.KEYS,
        *config_model._WATCH_KEYS,
        *config_model._JOURNAL_KEYS,
        "name",
        "model",
        "format",
        "level",
        "interval_seconds",
        "workers", "cpu_threads", "beam_size", "fallback_after_seconds",
        "on_done", "on_failed", "timeout_seconds", "textfile",
        *gladia_options.KNOWN_OPTIONS,
        *gladia_options.REFUSED_OPTIONS,
        *config_model._CALLBACK_KEYS,
        *config_model._WEBHOOK_KEYS,
        gladia_options.UNSET_KEY,
        *(f for schema in gladia_options.OPTION_SCHEMAS.values() for f in schema),
        *config_module.OUTPUT_FORMATS,
    ]
    missing = [key for key in keys if not re.search(rf"\b{key}\b", text)]
    assert missing == []


# -- TOML syntax -----------------------------------------------------------------------------


def test_toml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    """A TOML syntax error reports the file, the line and the column."""
    path, message = error_of(tmp_path, '[log]\nlevel = "info"\nformat = json\n')
    assert message.startswith(f"{path}: line 3, column 10: invalid TOML")


@pytest.mark.parametrize(("text", "line", "column"), [
    ('[log]\nlevel = "info"\n\n[defaults]\ninclude = ["*.mp3",\n', 5, 11),
    ('[gladia]\napi_url = "https://api.gladia.io', 2, 11),
    ('[defaults.options]\nlanguage_config = { languages = ["en"]', 2, 19),
    ("[log]\nlevel = 'debug'\nlevel = 'info'", 3, 1),
])
def test_every_toml_syntax_error_has_a_line_and_column(
    tmp_path: Path, text: str, line: int, column: int
) -> None:
    """Also what tomllib reports only "at end of document" (an unclosed array) has a place."""
    path, message = error_of(tmp_path, text)
    assert message.startswith(f"{path}: line {line}, column {column}: invalid TOML: "), message
    assert "end of document" not in message


@given(st.text(st.characters(blacklist_categories=["Cs"]), max_size=80))
def test_any_toml_syntax_error_gets_a_line_within_the_file(text: str) -> None:
    """Whatever text tomllib refuses, the message names a line and column inside it."""
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = config_module.toml_error(text, str(exc))
    else:
        return
    found = re.match(r"line (\d+), column (\d+): invalid TOML: ", message)
    assert found, message
    assert 1 <= int(found[1]) <= text.count("\n") + 1
    assert int(found[2]) >= 1


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    """Problems in several sections, and in several watches, come in one error."""
    path, message = error_of(tmp_path, """
        [gladia]
        max_concurrent_jobs = 0
        [log]
        level = "loud"
        colour = true
        [scan]
        interval_seconds = 1
        [[watch]]
        path = "a"
        outputs = ["pdf"]
        [[watch]]
        path = "b"
        recursive = "yes"
        """)
    assert message.startswith(f"{path}: 6 problems:\n"), message
    for part in ("gladia.max_concurrent_jobs", "log.level", "[log] colour: unknown key",
                 "scan.interval_seconds", "watch[1].outputs[1]", "watch[2].recursive"):
        assert part in message
    assert message.count(str(path)) == 1


def test_a_single_problem_keeps_its_one_line_message(tmp_path: Path) -> None:
    """One problem reads as before: file, key, what is expected."""
    path, message = error_of(tmp_path, "[scan]\ninterval_seconds = 1\n")
    assert message == f"{path}: scan.interval_seconds: expected a number >= 5, got 1"


@pytest.mark.parametrize(("text", "hint"), [
    ("[retry]\nretry_base = 2.0\n", 'did you mean base_seconds?'),
    ("[retry]\nread_attempts = 3\n", "not a setting"),
    ('journal_path = "/tmp/j.db"\n', "did you mean [journal] path?"),
    ('local_model = "base"\n', "did you mean [local] model?"),
    ('[http]\naddress = ["127.0.0.1", 8765]\n', "did you mean listen?"),
    ('[gladia]\napi_key_origin = "x"\n', "did you mean api_key or api_key_file?"),
    ('engine = "auto"\n', '[engine] name = "..."'),
])
def test_internal_names_get_the_file_key_as_hint(tmp_path: Path, text: str, hint: str) -> None:
    """Names of the internal model (what an old `config show` printed) say the file's key."""
    _, message = error_of(tmp_path, text)
    assert hint in message


def test_non_utf8_file_is_an_error(tmp_path: Path) -> None:
    """A config file that is not UTF-8 is refused with a message naming the file."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[log]\nlevel = "d\xe9bug"\n')
    with pytest.raises(ConfigError, match="not UTF-8") as caught:
        load(path)
    assert str(path) in str(caught.value)


# -- unknown keys ----------------------------------------------------------------------------


def test_unknown_key_has_did_you_mean_hint(tmp_path: Path) -> None:
    """A typo in a key is an error naming file, table and key, with the closest valid key."""
    path, message = error_of(tmp_path, '[gladia]\napi_kye = "x"\n')
    assert message == f'{path}: [gladia] api_kye: unknown key; did you mean "api_key"?'


def test_unknown_top_level_table(tmp_path: Path) -> None:
    """An unknown top-level table is an error with a hint."""
    path, message = error_of(tmp_path, "[defualts]\nrecursive = true\n")
    assert message == f'{path}: defualts: unknown key; did you mean "defaults"?'


def test_unknown_key_in_watch(tmp_path: Path) -> None:
    """A typo inside a [[watch]] names the watch by its 1-based number."""
    path, message = error_of(
        tmp_path, '[[watch]]\npath = "/a"\n[[watch]]\npath = "/b"\nsettle_second = 1\n'
    )
    assert message == (
        f'{path}: [watch[2]] settle_second: unknown key; did you mean "settle_seconds"?'
    )


def test_unknown_option_is_a_warning_with_hint(tmp_path: Path) -> None:
    """An option watcherd does not know loads (passed through) with a did-you-mean warning."""
    path = write(tmp_path, "[defaults.options]\ndiarizaton = true\n")
    config = load(path)
    assert config.defaults.options == {"diarizaton": True}
    assert config.warnings == (
        f'{path}: [defaults.options] diarizaton: not a Gladia option watcherd knows; '
        'did you mean "diarization"?; it is sent to Gladia as written',
    )


@pytest.mark.parametrize(
    ("option", "reason"),
    [("audio_url", "sets audio_url itself"), ("callback_url", "deprecated")],
)
def test_refused_options_say_why(tmp_path: Path, option: str, reason: str) -> None:
    """audio_url and callback_url are refused with the reason."""
    path, message = error_of(tmp_path, f'[defaults.options]\n{option} = "https://x.test/a"\n')
    assert message.startswith(f"{path}: defaults.options.{option}: not allowed")
    assert reason in message


# -- type and range checks -------------------------------------------------------------------

BAD_VALUES = [
    # (TOML text, key path, expectation substring)
    ('[gladia]\nmax_concurrent_jobs = 0\n', "gladia.max_concurrent_jobs", "an integer >= 1"),
    ('[gladia]\nmax_concurrent_jobs = true\n', "gladia.max_concurrent_jobs", "an integer >= 1"),
    ('[gladia]\nmax_concurrent_jobs = 2.5\n', "gladia.max_concurrent_jobs", "an integer >= 1"),
    ('[gladia]\napi_url = "ftp://api.gladia.io"\n', "gladia.api_url", "an http(s) URL"),
    ('[gladia]\napi_url = "api.gladia.io"\n', "gladia.api_url", "an http(s) URL"),
    ('[engine]\nname = "gladya"\n', "engine.name", 'did you mean "gladia"?'),
    ('[local]\nmodel = "large-v3"\n', "local.model", 'neither "base"'),
    ('[log]\nformat = "xml"\n', "log.format", 'one of "auto", "json", "console"'),
    ('[log]\nlevel = "verbose"\n', "log.level", 'one of "debug", "info", "warning", "error"'),
    ('[scan]\ninterval_seconds = 1\n', "scan.interval_seconds", "a number >= 5"),
    ('[scan]\ninterval_seconds = "often"\n', "scan.interval_seconds", "a number >= 5"),
    ('[scan]\ninterval_seconds = nan\n', "scan.interval_seconds", "finite"),
    ('[journal]\npath = 5\n', "journal.path", "a non-empty string"),
    ('[defaults]\noutputs = ["txt", "pdf"]\n', "defaults.outputs[2]", 'one of "txt"'),
    ('[defaults]\noutputs = []\n', "defaults.outputs", "at least one"),
    ('[defaults]\noutputs = ["txt", "txt"]\n', "defaults.outputs", "listed twice"),
    ('[defaults]\noutputs = "txt"\n', "defaults.outputs", "an array of strings"),
    ('[defaults]\nsettle_seconds = -1\n', "defaults.settle_seconds", "a number >= 0"),
    ('[defaults]\nrecursive = "yes"\n', "defaults.recursive", "true or false"),
    ('[defaults]\ninclude = ["*.mp3", 4]\n', "defaults.include[2]", "a non-empty string"),
    ('[defaults]\npoll = "sometimes"\n', "defaults.poll", 'one of "auto", "always", "never"'),
    ('[defaults]\noptions = "fast"\n', "defaults.options", "a table"),
    ('[defaults.options]\ndiarization = "yes"\n', "defaults.options.diarization",
     "true or false"),
    ('[defaults.options]\ntranslation_config = "fr"\n', "defaults.options.translation_config",
     "a table"),
    ('[defaults.options]\nlanguage_config = { languages = "en" }\n',
     "defaults.options.language_config.languages", "an array of strings"),
    ('[defaults.options]\nsubtitles_config = { formats = ["srt", "ass"] }\n',
     "defaults.options.subtitles_config.formats[2]", 'one of "srt", "vtt"'),
    ('[defaults.options]\ncustom_metadata = { when = 2024-01-01 }\n',
     "defaults.options.custom_metadata.when", "JSON has no dates"),
    ('[defaults.options]\ncustom_metadata = { wf_key = "mine" }\n',
     "defaults.options.custom_metadata.wf_key", "reserved for watcherd"),
    ('[defaults.options]\ncallback = true\n', "defaults.options.callback",
     "needs callback_config.url"),
    ('[gladia]\n[engine]\n[[watch]]\nrecursive = true\n', "watch[1].path", "missing"),
    ('[[watch]]\npath = ""\n', "watch[1].path", "a non-empty string"),
    ('[[watch]]\npath = 3\n', "watch[1].path", "a non-empty string"),
    ('[watch]\npath = "/srv"\n', "watch", "[[watch]]"),
    ('watch = ["/srv"]\n', "watch[1]", "a table"),
]


@pytest.mark.parametrize(("text", "key", "expectation"), BAD_VALUES)
def test_bad_value_message_names_file_key_and_expectation(
    tmp_path: Path, text: str, key: str, expectation: str
) -> None:
    """Each invalid value raises ConfigError naming the file, the key path and what is expected."""
    path, message = error_of(tmp_path, text)
    assert message.startswith(f"{path}: {key}: ")
    assert expectation in message


def test_watch_error_message_matches_documented_form(tmp_path: Path) -> None:
    """The documented example message, with a 1-based watch index and the value echoed."""
    path, message = error_of(
        tmp_path, '[[watch]]\npath = "/a"\n[[watch]]\npath = "/b"\nsettle_seconds = "fast"\n'
    )
    assert message == f'{path}: watch[2].settle_seconds: expected a number >= 0, got "fast"'


def test_translation_needs_target_languages(tmp_path: Path) -> None:
    """translation = true without translation_config.target_languages is an error."""
    path, message = error_of(
        tmp_path, '[[watch]]\npath = "/a"\n[watch.options]\ntranslation = true\n'
    )
    assert message.startswith(f"{path}: watch[1].options.translation: ")
    assert "target_languages" in message


def test_empty_target_languages_refused(tmp_path: Path) -> None:
    """An empty translation_config.target_languages list is an error."""
    path, message = error_of(
        tmp_path,
        "[defaults.options]\ntranslation = true\ntranslation_config = { target_languages = [] }\n",
    )
    assert message.startswith(f"{path}: defaults.options.translation_config.target_languages: ")


def test_custom_metadata_size_limit(tmp_path: Path) -> None:
    """custom_metadata over 1500 characters of JSON is refused; just under is accepted."""
    path, message = error_of(
        tmp_path, f'[defaults.options]\ncustom_metadata = {{ note = "{"x" * 1500}" }}\n'
    )
    assert message.startswith(f"{path}: defaults.options.custom_metadata: expected at most 1500")
    fits = write(
        tmp_path / "ok", f'[defaults.options]\ncustom_metadata = {{ n = "{"x" * 1400}" }}\n'
    )
    assert load(fits).defaults.options["custom_metadata"] == {"n": "x" * 1400}


def test_log_level_is_case_insensitive(tmp_path: Path) -> None:
    """log.level "INFO" is accepted and stored lower-case."""
    path = write(tmp_path, '[log]\nlevel = "WARNING"\nformat = "json"\n')
    config = load(path)
    assert (config.log_level, config.log_format) == ("warning", "json")


def test_bad_log_level_echoes_value_as_written(tmp_path: Path) -> None:
    """A wrong log.level is echoed as the user wrote it, with a case-insensitive hint."""
    path, message = error_of(tmp_path, '[log]\nlevel = "INFOO"\n')
    assert message == (
        f'{path}: log.level: expected one of "debug", "info", "warning", "error", '
        'got "INFOO"; did you mean "info"?'
    )


def test_api_url_trailing_slash_stripped(tmp_path: Path) -> None:
    """gladia.api_url keeps its path but loses trailing slashes."""
    path = write(tmp_path, '[gladia]\napi_url = "http://127.0.0.1:8123/proxy/"\n')
    assert load(path).gladia.api_url == "http://127.0.0.1:8123/proxy"


# -- API key ---------------------------------------------------------------------------------


def test_api_key_from_file_table(tmp_path: Path) -> None:
    """[gladia] api_key is stored as a Secret (whitespace stripped) and wins over the env."""
    path = write(tmp_path, f'[gladia]\napi_key = " {KEY} "\n')
    gladia = load(path, {"GLADIA_API_KEY": "from-env"}).gladia
    assert gladia.api_key == Secret(KEY)
    assert gladia.api_key_origin == "[gladia] api_key"


def test_api_key_file_is_read_relative_to_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """api_key_file is read (stripped), and a relative path means next to the config file."""
    folder = tmp_path / "conf"
    write(folder, f"\n  {KEY}\n\n", name="gladia.key")
    path = write(folder, '[gladia]\napi_key_file = "gladia.key"\n')
    monkeypatch.chdir(tmp_path)
    gladia = load(path, {"GLADIA_API_KEY": "from-env"}).gladia
    assert gladia.api_key is not None
    assert gladia.api_key.reveal() == KEY
    assert gladia.api_key_origin == f"[gladia] api_key_file ({folder / 'gladia.key'})"


def test_api_key_and_api_key_file_together_refused(tmp_path: Path) -> None:
    """Setting both api_key and api_key_file is an error, and the key is not echoed."""
    path, message = error_of(tmp_path, f'[gladia]\napi_key = "{KEY}"\napi_key_file = "k"\n')
    assert message.startswith(f"{path}: gladia.api_key: ")
    assert "not both" in message
    assert KEY not in message


def test_api_key_file_missing(tmp_path: Path) -> None:
    """A missing api_key_file is an error naming the key and the file."""
    path, message = error_of(tmp_path, '[gladia]\napi_key_file = "/nonexistent/gladia.key"\n')
    assert message.startswith(f"{path}: gladia.api_key_file: cannot read /nonexistent/gladia.key")


def test_api_key_file_empty(tmp_path: Path) -> None:
    """An api_key_file holding only whitespace is an error naming the file."""
    key_file = write(tmp_path / "conf", "  \n", name="empty.key")
    path, message = error_of(tmp_path, f'[gladia]\napi_key_file = "{key_file}"\n')
    assert message.startswith(f"{path}: gladia.api_key_file: {key_file} is empty")


def test_api_key_file_with_extra_words_does_not_leak_content(tmp_path: Path) -> None:
    """An api_key_file with more than the key is refused without quoting its content."""
    key_file = write(tmp_path / "conf", f"GLADIA_API_KEY= {KEY}\n", name="bad.key")
    path, message = error_of(tmp_path, f'[gladia]\napi_key_file = "{key_file}"\n')
    assert message.startswith(f"{path}: gladia.api_key_file: ")
    assert KEY not in message


# What editors and copy-paste make of a key file, and what the refusal must say.
BAD_KEY_FILES = [
    pytest.param(KEY.encode("utf-16"), "is saved as UTF-16: save it as plain text",
                 id="utf16-bom"),
    pytest.param(KEY.encode("utf-16-be"), "is saved as UTF-16: save it as plain text",
                 id="utf16be-no-bom"),
    pytest.param((KEY + "\r\n").encode("utf-16-le"), "is saved as UTF-16: save it as plain text",
                 id="utf16le-no-bom"),
    pytest.param(KEY.encode("utf-32"), "is saved as UTF-32: save it as plain text",
                 id="utf32-bom"),
    pytest.param(KEY.encode("utf-8-sig"), 'byte-order mark (saved as "UTF-8 with BOM")',
                 id="utf8-bom"),
    pytest.param(KEY.encode() + b"\x00\n", "holds NUL bytes: save it as plain text",
                 id="nul"),
    pytest.param(KEY[:5].encode() + b"\x1b[2J" + KEY[5:].encode(),
                 "holds a control character (U+001B", id="escape"),
    pytest.param(KEY.encode() + b"\x7f\n", "holds a control character (U+007F", id="delete"),
    pytest.param(KEY.encode() + b"\r\nX-Other: 1\r\n", "holds more than one word",
                 id="header-injection"),
    pytest.param(f"{KEY} {KEY}".encode(), "holds more than one word", id="space"),
    pytest.param(f"{KEY}\u00a0".encode(), "holds more than one word", id="nbsp"),
    pytest.param(f"{KEY}\u00e9".encode(), "not ASCII", id="non-ascii"),
    pytest.param(f"{KEY}\u00e9".encode("latin-1"), "is not UTF-8 text", id="latin-1"),
]


@pytest.mark.parametrize(("content", "says"), BAD_KEY_FILES)
def test_unusable_key_files_are_refused_saying_why(
    tmp_path: Path, content: bytes, says: str
) -> None:
    """A key file that is not the key alone, as plain ASCII, is refused with what to do."""
    key_file = tmp_path / "conf" / "gladia.key"
    key_file.parent.mkdir()
    key_file.write_bytes(content)
    path, message = error_of(tmp_path, f'[gladia]\napi_key_file = "{key_file}"\n')
    assert message.startswith(f"{path}: gladia.api_key_file: {key_file} ")
    assert says in message
    assert_no_key_in(message)


def assert_no_key_in(text: str) -> None:
    """Neither the key nor a piece of it shows, plainly or escaped as repr() would."""
    for piece in (KEY, KEY[:12], KEY[-12:], repr(KEY.encode("utf-16"))[2:20]):
        assert piece not in text


@pytest.mark.parametrize("ending", ["\n", "\r\n", "  \n\n", "\t"])
def test_a_key_file_may_end_with_a_newline(tmp_path: Path, ending: str) -> None:
    """The newline an editor adds (and spaces around the key) are stripped, nothing else."""
    key_file = write(tmp_path / "conf", KEY + ending, name="gladia.key")
    path = write(tmp_path / "conf", f'[gladia]\napi_key_file = "{key_file}"\n')
    gladia = load(path).gladia
    assert gladia.api_key is not None and gladia.api_key.reveal() == KEY


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(
    st.binary(max_size=64),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
    .map(str.encode),
    st.sampled_from(["utf-16", "utf-16-le", "utf-8-sig", "utf-32"]).map(KEY.encode),
))
def test_any_key_file_bytes_give_a_plain_key_or_a_config_error(
    tmp_path: Path, raw: bytes
) -> None:
    """Whatever a key file holds: a printable-ASCII key without spaces, or a ConfigError."""
    key_file = tmp_path / "any.key"
    key_file.write_bytes(raw)
    path = write(tmp_path, f'[gladia]\napi_key_file = "{key_file}"\n')
    try:
        key = load(path).gladia.api_key
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: gladia.api_key_file: {key_file} ")
        return
    assert key is not None
    text = key.reveal()
    assert text and all(0x21 <= ord(ch) <= 0x7E for ch in text)
    # Only the spaces and line ends around the key were dropped.
    assert raw.decode("ascii").strip(" \t\r\n") == text


@pytest.mark.parametrize(("value", "says"), [
    ("gk-abc\\u0000def", "control character (U+0000"),
    ("gk-abc\\r\\nX-Other: 1", "more than one word"),
    ("gk-abc\\u001bdef", "control character (U+001B"),
    ("\\ufeffgk-abcdef", "not ASCII"),
])
def test_inline_and_environment_keys_get_the_same_check(
    tmp_path: Path, value: str, says: str
) -> None:
    """[gladia] api_key and $GLADIA_API_KEY are checked like a key file."""
    path, message = error_of(tmp_path, f'[gladia]\napi_key = "{value}"\n')
    assert message.startswith(f"{path}: gladia.api_key: the value ")
    assert says in message and "abc" not in message
    decoded = value.encode().decode("unicode_escape")
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, ""), {"GLADIA_API_KEY": decoded})
    assert str(caught.value).startswith("$GLADIA_API_KEY holds ")
    assert says in str(caught.value) and "abc" not in str(caught.value)


def test_a_webhook_secret_file_gets_the_same_check(tmp_path: Path) -> None:
    """A signing secret saved with a BOM is refused as one, not as a missing "whsec_"."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "hook").write_bytes(WHSEC.encode("utf-8-sig"))
    path, message = error_of(tmp_path, '[callback]\nlisten = "127.0.0.1:8787"\n'
                                       '[webhook]\nsecret_file = "hook"\n')
    assert message.startswith(f"{path}: webhook.secret_file: ")
    assert "byte-order mark" in message and "MfKQ9r8" not in message


def test_api_key_from_environment(tmp_path: Path) -> None:
    """With no key in the file, a non-empty $GLADIA_API_KEY is used; a blank one is not."""
    path = write(tmp_path, "")
    gladia = load(path, {"GLADIA_API_KEY": f"{KEY}\n"}).gladia
    assert gladia.api_key == Secret(KEY)
    assert gladia.api_key_origin == "$GLADIA_API_KEY"
    assert load(path, {"GLADIA_API_KEY": "  "}).gladia.api_key is None


def test_api_key_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    """A non-string api_key says "expected a non-empty string" without echoing the value."""
    path, message = error_of(tmp_path, "[gladia]\napi_key = 918273645546372819\n")
    assert message == f"{path}: gladia.api_key: expected a non-empty string, got an integer"
    assert "918273645546372819" not in message


def test_key_never_in_repr_or_other_errors(tmp_path: Path) -> None:
    """The key is absent from repr/str of the Config and from errors about other keys."""
    path = write(tmp_path, f'[gladia]\napi_key = "{KEY}"\n[[watch]]\npath = "/a"\n')
    config = load(path)
    assert KEY not in repr(config)
    assert KEY not in str(config)
    _, message = error_of(tmp_path, f'[gladia]\napi_key = "{KEY}"\nmax_concurrent_jobs = 0\n')
    assert KEY not in message
    _, message = error_of(tmp_path, f'[gladia]\napi_ky = "{KEY}"\n')
    assert KEY not in message


# -- defaults merged into watches ------------------------------------------------------------


def test_defaults_apply_to_watches_and_watches_override(tmp_path: Path) -> None:
    """Each [defaults] key reaches every watch unless that watch sets its own."""
    path = write(
        tmp_path,
        """
        [defaults]
        outputs = ["txt", "srt"]
        settle_seconds = 5
        recursive = false
        include = ["*.mp3"]
        exclude = ["tmp/*"]
        poll = "always"

        [[watch]]
        path = "/srv/a"

        [[watch]]
        path = "/srv/b"
        outputs = ["vtt"]
        settle_seconds = 0.5
        recursive = true
        include = []
        exclude = ["drafts/*"]
        poll = "never"
        """,
    )
    a, b = load(path).watches
    assert (a.outputs, a.settle_seconds, a.recursive, a.include, a.exclude, a.poll) == (
        ("txt", "srt"), 5.0, False, ("*.mp3",), ("tmp/*",), "always",
    )
    assert (b.outputs, b.settle_seconds, b.recursive, b.include, b.exclude, b.poll) == (
        ("vtt",), 0.5, True, (), ("drafts/*",), "never",
    )
    assert isinstance(a.settle_seconds, float)


def test_watch_options_deep_merge_over_defaults(tmp_path: Path) -> None:
    """[watch.options] merges over [defaults.options] key by key; lists replace, not append."""
    path = write(
        tmp_path,
        """
        [defaults.options]
        language_config = { languages = ["en"], code_switching = true }
        diarization = true
        diarization_config = { min_speakers = 1, max_speakers = 4 }

        [[watch]]
        path = "/srv/a"

        [[watch]]
        path = "/srv/b"
        [watch.options]
        language_config = { languages = ["fr"] }
        diarization_config = { max_speakers = 2 }
        sentences = true
        """,
    )
    a, b = load(path).watches
    assert dict(a.options) == {
        "language_config": {"languages": ["en"], "code_switching": True},
        "diarization": True,
        "diarization_config": {"min_speakers": 1, "max_speakers": 4},
    }
    assert dict(b.options) == {
        "language_config": {"languages": ["fr"], "code_switching": True},
        "diarization": True,
        "diarization_config": {"min_speakers": 1, "max_speakers": 2},
        "sentences": True,
    }


def test_translation_config_may_come_from_defaults(tmp_path: Path) -> None:
    """translation = true in a watch is valid when [defaults.options] gives the targets."""
    path = write(
        tmp_path,
        """
        [defaults.options]
        translation_config = { target_languages = ["fr"] }
        [[watch]]
        path = "/srv/a"
        [watch.options]
        translation = true
        """,
    )
    options = load(path).watches[0].options
    assert options["translation"] is True
    assert options["translation_config"] == {"target_languages": ["fr"]}


def test_watch_options_are_independent_copies(tmp_path: Path) -> None:
    """Changing one watch's options dict leaves the other watch and the defaults untouched."""
    path = write(
        tmp_path,
        """
        [defaults.options]
        language_config = { languages = ["en"] }
        [[watch]]
        path = "/srv/a"
        [[watch]]
        path = "/srv/b"
        """,
    )
    config = load(path)
    a, b = config.watches
    a.options["language_config"]["languages"].append("fr")
    assert b.options["language_config"] == {"languages": ["en"]}
    assert config.defaults.options["language_config"] == {"languages": ["en"]}


def test_parse_config_accepts_a_mapping() -> None:
    """parse_config validates already-parsed data and leaves the input unmodified."""
    data = {"defaults": {"options": {"diarization": True}}, "watch": [{"path": "/srv/a"}]}
    config = parse_config(data, source=None, env={})
    config.watches[0].options["diarization"] = False  # type: ignore[index]
    assert data["defaults"] == {"options": {"diarization": True}}
    assert config.source is None


def test_parse_config_error_without_file_says_config() -> None:
    """With no source file, messages start with "config:" instead of a path."""
    with pytest.raises(ConfigError) as caught:
        parse_config({"engine": {"name": 7}}, source=None, env={})
    assert str(caught.value) == (
        'config: engine.name: expected one of "auto", "gladia", "local", got 7'
    )


# -- paths -----------------------------------------------------------------------------------


def test_relative_paths_are_relative_to_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative watch and journal paths resolve against the config file's folder, not the cwd."""
    folder = tmp_path / "conf"
    path = write(folder, '[journal]\npath = "state/j.db"\n[[watch]]\npath = "../inbox"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load(path)
    assert config.journal_path == (folder / "state" / "j.db").resolve()
    assert config.watches[0].path == (tmp_path / "inbox").resolve()
    assert config.watches[0].path.is_absolute()


def test_tilde_expands_to_home(tmp_path: Path, isolated_dirs: Path) -> None:
    """"~" in watch and journal paths means the home folder."""
    path = write(tmp_path, '[journal]\npath = "~/j.db"\n[[watch]]\npath = "~/inbox"\n')
    config = load(path)
    assert config.journal_path == isolated_dirs.resolve() / "j.db"
    assert config.watches[0].path == isolated_dirs.resolve() / "inbox"


def test_missing_watch_folder_is_accepted(tmp_path: Path) -> None:
    """A watch root that does not exist yet loads fine (it is retried at run time)."""
    path = write(tmp_path, f'[[watch]]\npath = "{tmp_path / "later"}"\n')
    assert load(path).watches[0].path == (tmp_path / "later").resolve()


@pytest.mark.parametrize(
    ("first", "second", "words"),
    [
        ("/srv/in", "/srv/in/sub", "is inside"),
        ("/srv/in/sub", "/srv/in", "contains"),
        ("/srv/in", "/srv/./in/", "is the same folder as"),
    ],
)
def test_overlapping_watches_rejected(tmp_path: Path, first: str, second: str, words: str) -> None:
    """Two watches on the same folder or one inside another are an error naming both."""
    path, message = error_of(
        tmp_path, f'[[watch]]\npath = "{first}"\n[[watch]]\npath = "{second}"\n'
    )
    assert message.startswith(f"{path}: watch[2].path: ")
    assert words in message
    assert "watch[1].path" in message


def test_sibling_watches_with_common_prefix_allowed(tmp_path: Path) -> None:
    """/srv/in and /srv/inbox are different folders, not nested ones."""
    path = write(tmp_path, '[[watch]]\npath = "/srv/in"\n[[watch]]\npath = "/srv/inbox"\n')
    assert [w.path for w in load(path).watches] == [Path("/srv/in"), Path("/srv/inbox")]


# -- with_extra_watches ----------------------------------------------------------------------


def test_extra_watches_built_from_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run --watch DIR adds an absolute watch carrying the [defaults] settings and options."""
    path = write(
        tmp_path / "conf",
        """
        [defaults]
        outputs = ["srt"]
        settle_seconds = 7
        [defaults.options]
        diarization = true
        [[watch]]
        path = "/srv/a"
        """,
    )
    config = load(path)
    monkeypatch.chdir(tmp_path)
    extended = with_extra_watches(config, [Path("drop")])
    assert len(config.watches) == 1
    assert [w.path for w in extended.watches] == [Path("/srv/a"), (tmp_path / "drop").resolve()]
    extra = extended.watches[1]
    assert (extra.outputs, extra.settle_seconds, dict(extra.options)) == (
        ("srt",), 7.0, {"diarization": True},
    )
    extra.options["diarization"] = False  # type: ignore[index]
    assert config.defaults.options["diarization"] is True


def test_extra_watch_already_watched_is_skipped(tmp_path: Path) -> None:
    """A --watch folder that is already a watch (or given twice) is not added again."""
    path = write(tmp_path, '[[watch]]\npath = "/srv/a"\n')
    extended = with_extra_watches(load(path), [Path("/srv/a/"), Path("/srv/b"), Path("/srv/b")])
    assert [w.path for w in extended.watches] == [Path("/srv/a"), Path("/srv/b")]


def test_extra_watch_nested_in_existing_is_an_error(tmp_path: Path) -> None:
    """A --watch folder inside a configured watch is an error naming both."""
    path = write(tmp_path, '[[watch]]\npath = "/srv/a"\n')
    with pytest.raises(ConfigError) as caught:
        with_extra_watches(load(path), [Path("/srv/a/sub")])
    message = str(caught.value)
    assert message.startswith("--watch /srv/a/sub: ")
    assert f"watch[1].path in {path}" in message


def test_extra_watches_on_empty_config(tmp_path: Path) -> None:
    """With no config file, --watch DIR gives a watch with the built-in defaults."""
    config = with_extra_watches(load_config(None, env={}), [tmp_path])
    (watch,) = config.watches
    assert watch.path == tmp_path.resolve()
    assert (watch.outputs, watch.settle_seconds, watch.recursive) == (("txt", "json"), 2.0, True)


# -- options: unset, documented shapes, folder named in errors -----------------------------


UNSET_BASE = """
[defaults.options]
language_config = { languages = ["en"], code_switching = true }
diarization = true
diarization_config = { min_speakers = 1, max_speakers = 4 }
summarization = true
"""


def test_unset_drops_inherited_options_and_dotted_fields(tmp_path: Path) -> None:
    """unset removes whole options and single fields; other watches keep the defaults."""
    path = write(tmp_path, UNSET_BASE + """
[[watch]]
path = "/srv/a"
[watch.options]
unset = ["diarization", "diarization_config", "language_config.code_switching"]
[[watch]]
path = "/srv/b"
""")
    a, b = load(path).watches
    assert dict(a.options) == {"language_config": {"languages": ["en"]}, "summarization": True}
    assert b.options["diarization_config"] == {"min_speakers": 1, "max_speakers": 4}
    assert b.options["language_config"]["code_switching"] is True


def test_unset_then_own_table_replaces_instead_of_merging(tmp_path: Path) -> None:
    """unset plus a new table gives exactly the new table (no inherited min/max_speakers)."""
    path = write(tmp_path, UNSET_BASE + """
[[watch]]
path = "/srv/a"
[watch.options]
unset = ["diarization_config"]
diarization_config = { number_of_speakers = 2 }
""")
    assert load(path).watches[0].options["diarization_config"] == {"number_of_speakers": 2}


@pytest.mark.parametrize(
    ("unset", "key", "expectation"),
    [
        ('["diarisation"]', "watch[1].options.unset[1]", 'did you mean "diarization"?'),
        ('["sentences"]', "watch[1].options.unset[1]", "is not set in [defaults.options]"),
        ('["diarization_config.number_of_speakers"]', "watch[1].options.unset[1]",
         "nothing to unset"),
        ('["language_config."]', "watch[1].options.unset[1]", "a dotted path"),
        ('"diarization"', "watch[1].options.unset", "an array of strings"),
    ],
)
def test_unset_mistakes_are_errors(tmp_path: Path, unset: str, key: str, expectation: str) -> None:
    """A typo or a name the defaults do not set is an error, never a silent no-op."""
    path, message = error_of(
        tmp_path, UNSET_BASE + f'[[watch]]\npath = "/srv/a"\n[watch.options]\nunset = {unset}\n')
    assert message.startswith(f"{path}: {key}: ")
    assert expectation in message
    assert message.endswith("(in the watch of /srv/a)")


def test_unset_is_refused_in_defaults(tmp_path: Path) -> None:
    """unset only makes sense in a watch; in [defaults.options] it says so."""
    path, message = error_of(tmp_path, '[defaults.options]\nunset = ["diarization"]\n')
    assert message.startswith(f"{path}: defaults.options.unset: only allowed in [watch.options]")


def test_unset_can_turn_off_a_flag_whose_config_is_then_missing(tmp_path: Path) -> None:
    """Unsetting translation_config without the flag is an error naming the flag and folder."""
    path, message = error_of(tmp_path, """
[defaults.options]
translation = true
translation_config = { target_languages = ["fr"] }
[[watch]]
path = "/srv/interviews"
[watch.options]
unset = ["translation_config"]
""")
    assert message.startswith(f"{path}: watch[1].options.translation: translation = true needs "
                              "translation_config.target_languages")
    assert message.endswith("(in the watch of /srv/interviews)")


EVERY_FIELD = """
[defaults.options]
language_config = { languages = ["en", "fr"], code_switching = true }
diarization = true
diarization_config = { number_of_speakers = 2, min_speakers = 1, max_speakers = 3 }
translation = true
translation_config = { target_languages = ["fr", "wo"], model = "enhanced", informal = true, \
match_original_utterances = false, lipsync = false, context_adaptation = true, context = "A talk" }
subtitles = true
subtitles_config = { formats = ["srt", "vtt"], minimum_duration = 0.5, maximum_duration = 7, \
maximum_characters_per_row = 42, maximum_rows_per_caption = 2, style = "compliance" }
summarization = true
summarization_config = { type = "bullet_points" }
pii_redaction = true
pii_redaction_config = { entity_types = ["GDPR"], processed_text_type = "MASK" }
sentiment_analysis = true
named_entity_recognition = true
sentences = true
punctuation_enhanced = true
custom_vocabulary = true
custom_vocabulary_config = { vocabulary = ["Gladia", { value = "watcherd", intensity = 0.8, \
pronunciations = ["watcher dee"], language = "en" }], default_intensity = 0.5 }
custom_spelling = true
custom_spelling_config = { spelling_dictionary = { "Gladia" = ["gladya", "gladiah"] } }
audio_to_llm = true
audio_to_llm_config = { prompts = ["List the action items"], model = "openai/gpt-5.4-nano" }
callback = true
callback_config = { url = "https://hooks.example.com/gladia", method = "PUT" }
custom_metadata = { team = "research", nested = { n = 1 } }
"""


def test_every_documented_field_is_accepted_and_gladia_would_accept_it(tmp_path: Path) -> None:
    """Options using every documented create field load, and the simulator validates them."""
    from tests.sim import validate_create_body

    options = load(write(tmp_path, EVERY_FIELD)).defaults.options
    assert options["pii_redaction_config"] == {"entity_types": ["GDPR"],
                                               "processed_text_type": "MASK"}
    body = {**options, "audio_url": "https://api.gladia.io/file/x"}
    assert validate_create_body(body) == []


def test_entity_types_may_be_one_name(tmp_path: Path) -> None:
    """pii_redaction_config.entity_types is accepted as a single name too (OAS vs docs)."""
    path = write(tmp_path, '[defaults.options]\npii_redaction_config = { entity_types = "GDPR" }\n')
    assert load(path).defaults.options["pii_redaction_config"] == {"entity_types": "GDPR"}


OPTION_ERRORS = [
    # (options TOML, key path, expectation substring)
    ("diarization_config = { number_of_speakers = 0 }",
     "defaults.options.diarization_config.number_of_speakers", "an integer >= 1, got 0"),
    ("diarization_config = { min_speakers = 1.5 }",
     "defaults.options.diarization_config.min_speakers", "an integer >= 0"),
    ("diarization_config = { min_speakers = 4, max_speakers = 2 }",
     "defaults.options.diarization_config", "min_speakers (4) is greater than max_speakers (2)"),
    ('language_config = { languages = ["english"] }',
     "defaults.options.language_config.languages[1]", "language codes"),
    ('language_config = { languages = ["FR"] }',
     "defaults.options.language_config.languages[1]", 'did you mean "fr"?'),
    ('translation_config = { target_languages = ["fr"], model = "best" }',
     "defaults.options.translation_config.model", 'one of "base", "enhanced"'),
    ('translation_config = { target_languages = ["fr"], informal = "yes" }',
     "defaults.options.translation_config.informal", "true or false"),
    ('translation_config = { model = "base" }', "defaults.options.translation_config",
     "missing target_languages"),
    ("subtitles_config = { maximum_duration = 45 }",
     "defaults.options.subtitles_config.maximum_duration", "a number from 1 to 30"),
    ("subtitles_config = { maximum_rows_per_caption = 6 }",
     "defaults.options.subtitles_config.maximum_rows_per_caption", "an integer from 1 to 5"),
    ('subtitles_config = { style = "fancy" }', "defaults.options.subtitles_config.style",
     'one of "default", "compliance"'),
    ("subtitles_config = { formats = [] }", "defaults.options.subtitles_config.formats",
     'at least one of "srt", "vtt"'),
    ('summarization_config = { type = "long" }', "defaults.options.summarization_config.type",
     'one of "general", "bullet_points", "concise"'),
    ('pii_redaction_config = { processed_text_type = "marker" }',
     "defaults.options.pii_redaction_config.processed_text_type", 'did you mean "MARKER"?'),
    ("pii_redaction_config = { entity_types = [] }",
     "defaults.options.pii_redaction_config.entity_types", "at least 1 item"),
    ("custom_vocabulary = true", "defaults.options.custom_vocabulary",
     "needs custom_vocabulary_config.vocabulary"),
    ("custom_vocabulary_config = { vocabulary = [{ intensity = 0.5 }] }",
     "defaults.options.custom_vocabulary_config.vocabulary[1].value", "missing"),
    ('custom_vocabulary_config = { vocabulary = [{ value = "x", intensity = 2 }] }',
     "defaults.options.custom_vocabulary_config.vocabulary[1].intensity",
     "a number from 0 to 1"),
    ("custom_vocabulary_config = { vocabulary = [3] }",
     "defaults.options.custom_vocabulary_config.vocabulary[1]", "a string or a { value"),
    ("custom_spelling = true", "defaults.options.custom_spelling",
     "needs custom_spelling_config.spelling_dictionary"),
    ('custom_spelling_config = { spelling_dictionary = { Gladia = "gladya" } }',
     "defaults.options.custom_spelling_config.spelling_dictionary.Gladia",
     "an array of strings"),
    ("audio_to_llm = true", "defaults.options.audio_to_llm", "needs audio_to_llm_config.prompts"),
    ("audio_to_llm_config = { prompts = [] }", "defaults.options.audio_to_llm_config.prompts",
     "at least 1 item"),
    ('callback_config = { url = "ftp://x" }', "defaults.options.callback_config.url",
     "an http(s) URL"),
    ("custom_metadata = { n = inf }", "defaults.options.custom_metadata.n", "finite"),
]


@pytest.mark.parametrize(("options", "key", "expectation"), OPTION_ERRORS)
def test_option_shape_errors_name_the_field(
    tmp_path: Path, options: str, key: str, expectation: str
) -> None:
    """Each option that breaks docs/gladia-contract.md is refused at load, naming the field."""
    path, message = error_of(tmp_path, f"[defaults.options]\n{options}\n")
    assert message.startswith(f"{path}: {key}")
    assert expectation in message


def test_watch_option_error_names_the_folder(tmp_path: Path) -> None:
    """An error in a watch's options says which folder it is about."""
    path, message = error_of(tmp_path, """
[[watch]]
path = "/srv/podcasts"
[watch.options]
summarization_config = { type = "short" }
""")
    assert message.startswith(f"{path}: watch[1].options.summarization_config.type: ")
    assert message.endswith("(in the watch of /srv/podcasts)")


def test_md_is_an_output_format(tmp_path: Path) -> None:
    """outputs may list "md" (the Markdown report)."""
    path = write(tmp_path, '[defaults]\noutputs = ["txt", "json", "md"]\n')
    assert load(path).defaults.outputs == ("txt", "json", "md")


# -- [callback] and [webhook] ----------------------------------------------------------------

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_no_callback_or_webhook_by_default(tmp_path: Path) -> None:
    """Without the tables, the listener is off."""
    config = load(write(tmp_path, "[log]\nlevel = \"info\"\n"))
    assert (config.callback, config.webhook) == (None, None)


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [('"127.0.0.1:8787"', "127.0.0.1", 8787), ('"[::1]:9000"', "::1", 9000),
     ('"localhost:80"', "localhost", 80), ('" 0.0.0.0:65535 "', "0.0.0.0", 65535)],
)
def test_callback_listen_address(tmp_path: Path, listen: str, host: str, port: int) -> None:
    """listen is HOST:PORT with an IP address (IPv6 in brackets) or localhost."""
    callback = load(write(tmp_path, f"[callback]\nlisten = {listen}\n")).callback
    assert callback is not None
    assert (callback.host, callback.port, callback.public_url) == (host, port, None)


@pytest.mark.parametrize(
    ("table", "key", "expectation"),
    [
        ('listen = "8787"', "callback.listen", '"HOST:PORT"'),
        ('listen = "example.com:8787"', "callback.listen", "an IP address"),
        ('listen = "127.0.0.1:0"', "callback.listen", "a port 1-65535"),
        ('listen = "127.0.0.1:70000"', "callback.listen", "a port 1-65535"),
        ('public_url = "https://x.example"', "callback.listen", "missing"),
        ('listen = "127.0.0.1:1"\npublic_url = "http://x.example"', "callback.public_url",
         "plain http is refused"),
        ('listen = "127.0.0.1:1"\npublic_url = "https://x.example/?a=1"', "callback.public_url",
         "without query"),
        ('listen = "127.0.0.1:1"\nport = 3', "[callback] port", "unknown key"),
    ],
)
def test_callback_mistakes(tmp_path: Path, table: str, key: str, expectation: str) -> None:
    """A bad [callback] table is refused with the key and what is expected."""
    path, message = error_of(tmp_path, f"[callback]\n{table}\n")
    assert message.startswith(f"{path}: {key}")
    assert expectation in message


def test_callback_public_url_trailing_slash_dropped(tmp_path: Path) -> None:
    """public_url keeps its path prefix but not a trailing slash."""
    path = write(tmp_path, '[callback]\nlisten = "127.0.0.1:8787"\n'
                 'public_url = "https://example.com/watcherd/"\n')
    callback = load(path).callback
    assert callback is not None and callback.public_url == "https://example.com/watcherd"


@pytest.mark.parametrize("where", ["defaults", "watch"])
def test_callback_options_conflict_with_the_listener(tmp_path: Path, where: str) -> None:
    """User callback options and [callback] listen together are refused (one would be lost)."""
    options = 'callback = true\ncallback_config = { url = "https://x.example/cb" }\n'
    text = ('[callback]\nlisten = "127.0.0.1:8787"\n'
            + ("[defaults.options]\n" + options if where == "defaults"
               else '[[watch]]\npath = "/srv/a"\n[watch.options]\n' + options))
    path, message = error_of(tmp_path, text)
    prefix = "defaults.options" if where == "defaults" else "watch[1].options"
    assert message.startswith(f"{path}: {prefix}.callback: not allowed with [callback] listen")


def test_webhook_secret_inline_and_from_file(tmp_path: Path) -> None:
    """The secret comes from the table or a file, and never shows in the repr."""
    base = '[callback]\nlisten = "127.0.0.1:8787"\n[webhook]\n'
    inline = load(write(tmp_path / "a", base + f'secret = "{WHSEC}"\n'))
    assert inline.webhook is not None and inline.webhook.secret.reveal() == WHSEC
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "hook").write_text(f"  {WHSEC}\n", encoding="utf-8")
    from_file = load(write(tmp_path / "b", base + 'secret_file = "hook"\n'))
    assert from_file.webhook is not None and from_file.webhook.secret == inline.webhook.secret
    assert from_file.webhook.secret_file == (tmp_path / "b" / "hook").resolve()
    assert WHSEC not in repr(from_file)


@pytest.mark.parametrize(
    ("table", "key", "expectation"),
    [
        (f'secret = "{WHSEC}"\nsecret_file = "x"', "webhook.secret", "not both"),
        ('secret = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"', "webhook.secret", 'starting with "whsec_"'),
        ('secret = "whsec_not base64!"', "webhook.secret", "followed by base64"),
        ('secret_file = "missing"', "webhook.secret_file", "cannot read"),
    ],
)
def test_webhook_mistakes_never_echo_the_secret(
    tmp_path: Path, table: str, key: str, expectation: str
) -> None:
    """A bad [webhook] table is refused without repeating what was written as the secret."""
    path, message = error_of(
        tmp_path, f'[callback]\nlisten = "127.0.0.1:8787"\n[webhook]\n{table}\n')
    assert message.startswith(f"{path}: {key}: ")
    assert expectation in message
    assert "MfKQ9r8" not in message and "not base64" not in message


def test_webhook_without_listener_is_refused(tmp_path: Path) -> None:
    """[webhook] needs [callback] listen, since webhooks arrive on that listener."""
    path, message = error_of(tmp_path, f'[webhook]\nsecret = "{WHSEC}"\n')
    assert message.startswith(f"{path}: webhook: webhooks arrive on the callback listener")


# -- local, hooks, metrics ---------------------------------------------------------------------


def test_local_hooks_metrics_defaults(tmp_path: Path) -> None:
    """With no tables: automatic local workers, no hooks, no metrics file."""
    config = parse_config({}, source=None, env={})
    assert config.local.workers == 0 and config.local.beam_size == 5  # 0: automatic
    assert config.hooks.on_done == () and config.hooks.timeout_seconds == 60.0
    assert config.metrics_textfile is None


def test_local_hooks_metrics_parsed(tmp_path: Path) -> None:
    """The [local], [hooks] and [metrics] tables are read, paths resolved next to the file."""
    source = tmp_path / "c.toml"
    config = parse_config(
        {"local": {"workers": 2, "cpu_threads": 1, "beam_size": 3},
         "hooks": {"on_done": ["notify", "--done"], "timeout_seconds": 5},
         "metrics": {"textfile": "prom/w.prom"}},
        source=source, env={})
    assert (config.local.workers, config.local.cpu_threads, config.local.beam_size) == (2, 1, 3)
    assert config.hooks.on_done == ("notify", "--done") and config.hooks.timeout_seconds == 5
    assert config.metrics_textfile == tmp_path / "prom" / "w.prom"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"hooks": {"on_done": "notify.sh $FILE"}}, "hooks.on_done: expected a list"),
        ({"hooks": {"on_failed": [""]}}, "hooks.on_failed[1]"),
        ({"local": {"workers": 0}}, "local.workers"),
        ({"hooks": {"on_dne": ["x"]}}, 'did you mean "on_done"'),
    ],
)
def test_local_hooks_errors(data: dict[str, object], expected: str) -> None:
    """Hook commands must be argv lists; worker counts are positive; typos get a hint."""
    with pytest.raises(ConfigError, match=re.escape(expected)):
        parse_config(data, source=None, env={})


def test_unreadable_key_file_tolerated_when_key_not_needed(tmp_path: Path) -> None:
    """status/retry can read a config whose key is a systemd credential absent here."""
    data = {"gladia": {"api_key_file": "/run/credentials/watcherd.service/gladia"}}
    with pytest.raises(ConfigError, match="api_key_file"):
        parse_config(data, source=None, env={})
    config = parse_config(data, source=None, env={}, need_key=False)
    assert config.gladia.api_key is None
    assert config.gladia.api_key_origin is not None
    assert "not readable here" in config.gladia.api_key_origin


def test_watch_engine_and_fallback(tmp_path: Path) -> None:
    """A watch may name its engine and a fallback; [defaults] may set the fallback."""
    config = parse_config(
        {"defaults": {"fallback": "local"}, "engine": {"fallback_after_seconds": 30},
         "watch": [{"path": str(tmp_path / "a"), "engine": "local"},
                   {"path": str(tmp_path / "b"), "fallback": "none"}]},
        source=None, env={})
    assert config.watches[0].engine == "local" and config.watches[0].fallback == "local"
    assert config.watches[1].engine is None and config.watches[1].fallback == "none"
    assert config.fallback_after_seconds == 30
    with pytest.raises(ConfigError, match=re.escape("watch[1].engine")):
        parse_config({"watch": [{"path": str(tmp_path), "engine": "whisper"}]},
                     source=None, env={})


# -- config show: the effective configuration in the file's own terms ------------------------

SHOWN_BASE = Path("/srv/watcherd-roundtrip/config.toml")
WEBHOOK_SECRET = "whsec_aGlkZGVuLXNlY3JldC1yb3VuZHRyaXA="
_names = st.text(st.characters(whitelist_categories=["L", "N"]), min_size=1, max_size=8)
_words = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1,
                 max_size=12).filter(str.strip)
_seconds = st.floats(min_value=5, max_value=1e6, allow_nan=False, allow_infinity=False)
_codes = st.lists(st.sampled_from(["en", "fr", "de", "haw"]), max_size=3, unique=True)
_options = st.fixed_dictionaries({}, optional={
    "diarization": st.booleans(),
    "language_config": st.fixed_dictionaries({"languages": _codes},
                                             optional={"code_switching": st.booleans()}),
    "diarization_config": st.fixed_dictionaries({}, optional={
        "min_speakers": st.integers(0, 3), "number_of_speakers": st.integers(1, 9)}),
    "custom_metadata": st.dictionaries(_names.filter(lambda n: not n.startswith("wf_")),
                                       _words | st.integers(-5, 5), max_size=3),
    "custom_spelling_config": st.fixed_dictionaries(
        {"spelling_dictionary": st.dictionaries(_words, st.lists(_words, min_size=1,
                                                                 max_size=2),
                                                min_size=1, max_size=2)}),
})
_watch_fields = {
    "outputs": st.lists(st.sampled_from(["txt", "json", "srt", "vtt", "md"]), min_size=1,
                        unique=True),
    "settle_seconds": st.floats(0, 100, allow_nan=False),
    "recursive": st.booleans(),
    "include": st.lists(_words, max_size=2),
    "exclude": st.lists(_words, max_size=2),
    "poll": st.sampled_from(["auto", "always", "never"]),
    "fallback": st.sampled_from(["none", "local"]),
    "follow_links": st.sampled_from(["inside", "anywhere"]),
}


@st.composite
def config_files(draw: st.DrawFn) -> dict[str, object]:
    """Parsed TOML of a valid config file using (a random part of) every section."""
    def some(table: dict[str, st.SearchStrategy[object]]) -> dict[str, object]:
        return draw(st.fixed_dictionaries({}, optional=table))

    data: dict[str, object] = {
        "gladia": some({"api_url": st.sampled_from(["https://api.gladia.io",
                                                    "http://127.0.0.1:9/v"]),
                        "max_concurrent_jobs": st.integers(1, 25)}),
        "engine": some({"name": st.sampled_from(["auto", "gladia", "local"]),
                        "fallback_after_seconds": _seconds}),
        "local": some({"device": st.sampled_from(["auto", "cpu", "cuda"]),
                       "compute_type": st.sampled_from(["auto", "int8", "float32"]),
                       "workers": st.sampled_from(["auto", 1, 3]),
                       "cpu_threads": st.sampled_from(["auto", 0, 2]),
                       "beam_size": st.integers(1, 9)}),
        "journal": some({"lease_seconds": _seconds}),
        "node": some({"name": _words.map(str.strip).filter(str.isprintable)}),
        "log": some({"format": st.sampled_from(["auto", "json", "console"]),
                     "level": st.sampled_from(["debug", "info", "warning", "error"])}),
        "hooks": some({"on_done": st.lists(_words, max_size=3).filter(
                           lambda argv: not argv or bool(argv[0].strip())),
                       "timeout_seconds": _seconds}),
        "retry": some(dict.fromkeys(RETRY_KEYS, _seconds)),
        "http": some({"listen": st.sampled_from(["", "127.0.0.1:8765", "[::1]:9000"])}),
        "scan": some({"interval_seconds": _seconds}),
        "defaults": some({**_watch_fields, "options": _options}),
    }
    key = draw(st.sampled_from(["inline", "file", "none"]))
    if key == "inline":
        data["gladia"] = {**data["gladia"], "api_key": KEY}  # type: ignore[dict-item]
    elif key == "file":
        data["gladia"] = {**data["gladia"], "api_key_file": "key"}  # type: ignore[dict-item]
    if draw(st.booleans()):
        data["journal"] = {**data["journal"],  # type: ignore[dict-item]
                           "url": "postgresql://w:pw@db.example:5432/w"}
    elif draw(st.booleans()):
        data["journal"] = {**data["journal"], "path": draw(_names)}  # type: ignore[dict-item]
    if draw(st.booleans()):
        data["callback"] = some({"public_url": st.just("https://example.com/w")})
        data["callback"]["listen"] = "127.0.0.1:8787"  # type: ignore[index]
        if draw(st.booleans()):
            data["webhook"] = {"secret": WEBHOOK_SECRET}
    else:
        data["callback"] = {}
    watches = []
    defaults_options = data["defaults"].get("options", {})  # type: ignore[attr-defined]
    for number in range(draw(st.integers(0, 3))):
        watch = {"path": f"w{number}", **some(_watch_fields)}
        ids = st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True)
        watch.update(some({"id": ids.map(f"{{}}-{number}".format),
                           "engine": st.sampled_from(["auto", "local"])}))
        options = dict(draw(_options))
        unset = draw(st.lists(st.sampled_from(sorted(defaults_options) or ["-"]),
                              unique=True, max_size=2))
        if defaults_options and unset:
            options["unset"] = unset
        watch["options"] = options
        watches.append(watch)
    data["watch"] = watches
    return data


def _filled(text: str) -> str:
    """The shown config with its inline secrets put back (what a user pastes by hand)."""
    text = text.replace('api_key = "***"', f'api_key = "{KEY}"')
    text = text.replace('secret = "***"', f'secret = "{WEBHOOK_SECRET}"')
    return text.replace("w:***@", "w:pw@")


@given(config_files())
def test_config_show_loads_back_to_the_same_config(data: dict[str, object]) -> None:
    """Whatever the file, what `config show` prints loads to the same configuration."""
    from watcherd.cli.configcmd import redact
    from watcherd.configfile import effective_toml

    env = {"GLADIA_API_KEY": "from-the-environment"}
    config = parse_config(data, source=SHOWN_BASE, env=env, need_key=False)
    shown = redact(effective_toml(config), [KEY, WEBHOOK_SECRET])
    assert KEY not in shown and WEBHOOK_SECRET not in shown and ":pw@" not in shown
    again = parse_config(tomllib.loads(_filled(shown)), source=SHOWN_BASE.with_name("x.toml"),
                         env=env, need_key=False)
    assert again == config.__class__(**{**config.__dict__, "source": again.source})


def test_config_show_speaks_the_files_language(tmp_path: Path) -> None:
    """Sections and keys of config.example.toml; nothing of the internal model."""
    from watcherd.configfile import effective_toml

    shown = effective_toml(load(EXAMPLE))
    for line in ("[retry]\nbase_seconds = 2.0", '[engine]\nname = "auto"',
                 '[http]\nlisten = "127.0.0.1:8765"', 'workers = "auto"', "[journal]\npath = "):
        assert line in shown
    example = tomllib.loads(EXAMPLE.read_text("utf-8"))
    parsed = tomllib.loads(shown)
    assert set(parsed) <= set(example) | {"callback", "webhook", "node", "journal", "metrics"}
    for table, keys in parsed.items():
        if isinstance(keys, dict) and table != "defaults":
            known = set(example.get(table, {})) | {
                "journal": {"path", "url", "lease_seconds"}, "node": {"name"},
                "hooks": {"on_done", "on_failed"}}.get(table, set())
            assert set(keys) <= known, table
    for internal in ("retry_base", "journal_path", "local_model", "address", "api_key_origin",
                     "read_attempts", "scan_interval_seconds", "node_name"):
        assert internal not in shown


# -- engine tables ---------------------------------------------------------------------------


def test_engine_tables_are_declared_by_the_engines() -> None:
    """[gladia] and [local] come from the engines' packages, found through the registry."""
    from watcherd.engines.registry import ENGINES, config_sections

    sections = config_sections()
    assert [s.name for s in sections] == list(ENGINES)
    for section in sections:
        package = ENGINES[section.name].partition(":")[0]
        assert section.parse.__module__.startswith(package + ".")
        with pytest.raises(ConfigError) as caught:
            parse_config({section.name: {"no_such_key": 1}}, source=None, env={})
        assert str(caught.value).startswith(f"config: [{section.name}] no_such_key: unknown key")


@pytest.mark.parametrize(("module", "must_not_load"), [
    ("watcherd.config", "watcherd.engines"),
    ("watcherd.engines", "watcherd.config"),
])
def test_config_and_engines_do_not_import_each_other(module: str, must_not_load: str) -> None:
    """The config reaches the engines' tables only through the registry, when parsing."""
    import subprocess
    import sys

    probe = (f"import sys, {module}\n"
             f"print(sorted(m for m in sys.modules if m == {must_not_load!r} "
             f"or m.startswith({must_not_load + '.'!r})))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, timeout=60).stdout.strip()
    assert loaded == "[]"
