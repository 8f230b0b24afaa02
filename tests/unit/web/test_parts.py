"""The status page's parts on their own: the progress board, the charts, the Host and token
guard, metrics helpers, latency from events, the [http] config, and ``status PATH``/--state.

Example tests beside Hypothesis properties for everything that comes from outside (engine
reports, Host headers, cookies, config values, state names, file names).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.daemon_harness import watcherd
from watcherd.config import HttpConfig, Secret, parse_config
from watcherd.errors import ConfigError
from watcherd.history import UnknownState, check_state, history_lines
from watcherd.journal import STATES, FileStat, Journal, Source
from watcherd.progress import MAX_PHASE_CHARS, ProgressBoard
from watcherd.web import charts, metrics
from watcherd.web.guard import Guard, Refused, cookies
from watcherd.web.snapshot import Finished, SnapshotReader, _finished

NUMBERS = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(min_value=-(10**400), max_value=10**400), st.booleans())


# -- the progress board ------------------------------------------------------------------------


class TestProgressBoard:
    """ProgressBoard: report, clear, retain, snapshot."""

    def test_report_merges_and_clear_forgets(self) -> None:
        """A field left None keeps its value; clear and retain forget."""
        board = ProgressBoard(clock=lambda: 5.0)
        board.report(1, fraction=0.25, phase="transcribing")
        board.report(1, expected_end=100.0)
        board.report(2, phase="queued")
        one = board.snapshot()[1]
        assert (one.fraction, one.phase, one.expected_end, one.updated_at) == (
            0.25, "transcribing", 100.0, 5.0)
        board.clear(1)
        assert set(board.snapshot()) == {2}
        board.retain([3])
        assert board.snapshot() == {}

    @given(fraction=NUMBERS, end=NUMBERS, phase=st.one_of(st.none(), st.text()))
    def test_any_report_is_accepted_and_sane(self, fraction: Any, end: Any, phase: Any
                                             ) -> None:
        """Whatever an engine reports: no exception; fraction in 0..1, times finite."""
        board = ProgressBoard()
        board.report(7, fraction=fraction, expected_end=end, phase=phase)
        entry = board.snapshot()[7]
        assert entry.fraction is None or 0.0 <= entry.fraction <= 1.0
        assert entry.expected_end is None or math.isfinite(entry.expected_end)
        assert entry.phase is None or 0 < len(entry.phase) <= MAX_PHASE_CHARS


# -- charts ------------------------------------------------------------------------------------


FINISHED = st.lists(st.builds(
    Finished,
    done_at=st.floats(min_value=-2 * 86400, max_value=2 * 86400),
    latency=st.floats(min_value=0, max_value=10 * 86400),
    duration=st.one_of(st.none(), st.floats(min_value=0, max_value=86400)),
), max_size=60)


class TestCharts:
    """The SVG charts."""

    def test_buckets_count_the_last_24_hours(self) -> None:
        """Files land in their hour; older or future ones are left out."""
        # Half past an hour: "10 and 20 s ago" must be this hour whatever the clock says (at
        # hh:00:15 the second file fell into the hour before).
        now = time.time() // 3600 * 3600 + 1800
        items = [Finished(now - 10, 30.0, 5.0), Finished(now - 20, 90.0, None),
                 Finished(now - 30 * 3600, 1.0, 1.0), Finished(now + 7200, 1.0, 1.0)]
        hours = charts.buckets(items, now)
        assert len(hours) == 24 and sum(h.files for h in hours) == 2
        assert hours[-1].files == 2 and hours[-1].median_latency == 60.0
        assert hours[-1].max_latency == 90.0

    @given(items=FINISHED)
    def test_charts_are_well_formed_svg(self, items: list[Finished]) -> None:
        """Any set of finished files draws valid SVG with one bar per busy hour."""
        now = 1_700_000_000.0
        shifted = [Finished(now + f.done_at, f.latency, f.duration) for f in items]
        hours = charts.buckets(shifted, now)
        for svg in (charts.files_chart(hours), charts.latency_chart(hours)):
            root = ET.fromstring(svg)
            assert root.tag.endswith("svg")
        bars = ET.fromstring(charts.files_chart(hours)).findall(
            "{http://www.w3.org/2000/svg}rect")
        assert len(bars) == sum(1 for h in hours if h.files)
        for bar in bars:
            assert float(bar.get("height", "-1")) >= 0

    def test_duration_text(self) -> None:
        """Seconds, minutes, hours."""
        assert [charts.duration_text(s) for s in (5, 600, 7200)] == ["5 s", "10 min", "2.0 h"]


# -- the guard ---------------------------------------------------------------------------------


class TestGuard:
    """Host checking, tokens, cookies, CSRF."""

    def test_specific_address(self) -> None:
        """Only that address and port (and loopback spellings for a loopback address)."""
        guard = Guard.create("127.0.0.1", 8765, None)
        guard.check_host("127.0.0.1:8765")
        guard.check_host("localhost:8765")
        for bad in ("127.0.0.1:8766", "evil:8765", "127.0.0.1", "", None):
            with pytest.raises(Refused) as caught:
                guard.check_host(bad)
            assert caught.value.status == 421
        lan = Guard.create("192.168.1.5", 8765, Secret("t" * 20))
        lan.check_host("192.168.1.5:8765")
        with pytest.raises(Refused):
            lan.check_host("localhost:8765")

    def test_wildcard_address_takes_ip_literals_only(self) -> None:
        """On 0.0.0.0 any IP with the right port is fine, a name is not (rebinding)."""
        guard = Guard.create("0.0.0.0", 8765, Secret("t" * 20))
        guard.check_host("10.1.2.3:8765")
        guard.check_host("[fe80::1]:8765")
        for bad in ("evil.example:8765", "10.1.2.3:80", "10.1.2.3"):
            with pytest.raises(Refused):
                guard.check_host(bad)

    def test_port_80_may_be_left_out(self) -> None:
        """Browsers omit the default port."""
        guard = Guard.create("127.0.0.1", 80, None)
        guard.check_host("127.0.0.1")
        guard.check_host("localhost:80")

    def test_token_by_bearer_or_cookie(self) -> None:
        """A loopback page needs nothing; with a token, bearer or session cookie."""
        assert Guard.create("127.0.0.1", 1, None).authorized({})
        guard = Guard.create("127.0.0.1", 1, Secret("s3cret-token-1234"))
        assert not guard.authorized({})
        assert guard.authorized({"authorization": "Bearer s3cret-token-1234"})
        assert guard.authorized({"authorization": "bearer  s3cret-token-1234 "})
        assert not guard.authorized({"authorization": "Basic s3cret-token-1234"})
        cookie = f"a=b; watcherd_session={guard.session_value()}"
        assert guard.authorized({"cookie": cookie})
        assert not guard.authorized({"cookie": "watcherd_session=s3cret-token-1234"})
        assert not Guard.create("10.0.0.1", 1, None).authorized({})

    @given(host=st.text(max_size=80))
    def test_any_host_header_is_refused_or_exact(self, host: str) -> None:
        """check_host raises only Refused, and accepts only the allowed spellings."""
        guard = Guard.create("127.0.0.1", 8765, None)
        try:
            guard.check_host(host)
        except Refused as exc:
            assert exc.status == 421
        else:
            assert host.strip().lower() in guard.allowed_hosts()

    @given(host=st.text(max_size=80))
    def test_wildcard_never_accepts_a_name(self, host: str) -> None:
        """On a wildcard address, an accepted Host is an IP literal or localhost."""
        guard = Guard.create("::", 8765, Secret("t" * 20))
        try:
            guard.check_host(host)
        except Refused:
            return
        name = host.strip().lower().rsplit(":", 1)[0].strip("[]")
        assert name == "localhost" or all(c in "0123456789abcdef:." for c in name)

    @given(header=st.text(max_size=200), auth=st.text(max_size=80))
    def test_cookie_and_auth_parsing_never_raise(self, header: str, auth: str) -> None:
        """Any Cookie or Authorization header: a dict, a yes or no."""
        assert isinstance(cookies(header), dict)
        guard = Guard.create("127.0.0.1", 1, Secret("s3cret-token-1234"))
        assert guard.authorized({"cookie": header, "authorization": auth}) is (
            auth.partition(" ")[0].lower() == "bearer"
            and auth.partition(" ")[2].strip() == "s3cret-token-1234")

    @given(given_token=st.one_of(st.none(), st.text(max_size=80)),
           origin=st.one_of(st.none(), st.text(max_size=60)))
    def test_csrf_only_the_exact_token(self, given_token: str | None, origin: str | None
                                       ) -> None:
        """check_csrf passes only the server's token from no or the same origin."""
        guard = Guard.create("127.0.0.1", 8765, None)
        headers = {} if origin is None else {"origin": origin}
        try:
            guard.check_csrf(given_token, headers)
        except Refused as exc:
            assert exc.status == 403
        else:
            assert given_token == guard.csrf_token()


# -- metrics helpers and latency -----------------------------------------------------------------


def test_endpoint_labels_are_few() -> None:
    """Gladia paths map to a handful of endpoint names; ids never become labels."""
    assert metrics.endpoint_of("POST", "/v2/upload") == "upload"
    assert metrics.endpoint_of("POST", "/v2/pre-recorded") == "create"
    assert metrics.endpoint_of("GET", "/v2/pre-recorded") == "list"
    assert metrics.endpoint_of("GET", "/v2/pre-recorded/45463597-20b7") == "get"
    assert metrics.endpoint_of("DELETE", "/v2/pre-recorded/x") == "delete"
    assert metrics.endpoint_of("GET", "/v2/other") == "other"
    assert [metrics.status_class(s) for s in (200, 429, 503, None, 42)] == [
        "2xx", "4xx", "5xx", "error", "error"]


@given(method=st.text(max_size=10), path=st.text(max_size=100))
def test_endpoint_of_any_request(method: str, path: str) -> None:
    """Any method and path give one of the known labels."""
    assert metrics.endpoint_of(method, path) in {"upload", "create", "list", "get", "delete",
                                                 "other"}


def test_api_requests_counts_httpx_responses() -> None:
    """The httpx response hook counts by endpoint and status class."""
    counter = metrics.ApiRequests()
    request = httpx.Request("GET", "https://api.gladia.io/v2/pre-recorded/abc")
    asyncio.run(counter.on_response(httpx.Response(503, request=request)))
    counter.record("upload", None)
    assert counter.copy() == {("get", "5xx"): 1, ("upload", "error"): 1}


def _source(**changes: Any) -> Source:
    values: dict[str, Any] = {name: None for name in Source.__dataclass_fields__}
    values.update(id=1, path="/x", watch_root="/", state="done", options_json="{}",
                  attempts=0, job_errors=0, created_at=100.0, updated_at=200.0, done_at=200.0)
    values.update(changes)
    return Source(**values)


def test_latency_counts_from_the_latest_version() -> None:
    """A file changed on disk counts from its new version; work from its first step."""
    events: list[dict[str, Any]] = [
        {"at": 100.0, "from_state": None, "to_state": "pending", "reason": "seen"},
        {"at": 110.0, "from_state": "pending", "to_state": "uploading", "reason": None},
        {"at": 150.0, "from_state": "done", "to_state": "pending", "reason": "changed on disk"},
        {"at": 170.0, "from_state": "pending", "to_state": "uploading", "reason": None},
        {"at": 175.0, "from_state": "uploading", "to_state": "uploading", "reason": "note"},
        {"at": 190.0, "from_state": "uploading", "to_state": "uploaded", "reason": None},
        {"at": 200.0, "from_state": "submitted", "to_state": "done", "reason": None},
    ]
    done = _finished(_source(), events)
    assert (done.latency, done.duration) == (50.0, 30.0)
    retried = _finished(_source(), [
        {"at": 100.0, "from_state": None, "to_state": "pending", "reason": "seen"},
        {"at": 120.0, "from_state": "failed", "to_state": "pending", "reason": "watcherd retry"},
        {"at": 180.0, "from_state": "pending", "to_state": "transcribing", "reason": None}])
    assert (retried.latency, retried.duration) == (100.0, 20.0)


def test_snapshot_reader_caches_finished_figures(tmp_path: Path) -> None:
    """Done sources are read once; a new version replaces its cached figures."""
    journal = Journal.open(tmp_path / "j.db", exclusive=True)
    try:
        (source,) = journal.observe_many([(str(tmp_path / "a.wav"), str(tmp_path),
                                           FileStat(1, 1, 1, 1), "{}")])
        journal.transition(source, "done", actor="t", done_at=time.time())
        reader = SnapshotReader(journal.location)
        first = reader.read()
        assert first.error is None and list(first.finished) == [source.id]
        assert reader.read().finished == first.finished
        journal.transition(journal.get(source.id), "failed", actor="t")
        assert reader.read().finished == {}
    finally:
        journal.close()


# -- [http] config -----------------------------------------------------------------------------


def _http(table: dict[str, Any], tmp_path: Path, *, need_key: bool = True) -> HttpConfig:
    config = parse_config({"http": table}, source=tmp_path / "c.toml", env={},
                          need_key=need_key)
    return config.http


class TestHttpConfig:
    """Parsing [http]."""

    def test_default_is_loopback_8765(self, tmp_path: Path) -> None:
        """No table: on, 127.0.0.1:8765, no token."""
        http = _http({}, tmp_path)
        assert (http.address, http.listen, http.token) == (("127.0.0.1", 8765),
                                                           "127.0.0.1:8765", None)

    def test_empty_listen_turns_it_off(self, tmp_path: Path) -> None:
        """listen = "" means no page."""
        assert _http({"listen": ""}, tmp_path).address is None
        assert _http({"listen": "  "}, tmp_path).listen == ""

    def test_non_loopback_requires_a_token_file(self, tmp_path: Path) -> None:
        """0.0.0.0 without token_file is an error naming the key and the fix."""
        with pytest.raises(ConfigError) as caught:
            _http({"listen": "0.0.0.0:8765"}, tmp_path)
        message = str(caught.value)
        assert "http.token_file" in message and "0.0.0.0:8765" in message
        assert "127.0.0.1" in message

    def test_token_file_is_read(self, tmp_path: Path) -> None:
        """The token comes from the file, stripped, and never shows in repr."""
        token = tmp_path / "token"
        token.write_text("abcdefghijklmnop-0123\n")
        http = _http({"listen": "[::]:9000", "token_file": str(token)}, tmp_path)
        assert http.token is not None and http.token.reveal() == "abcdefghijklmnop-0123"
        assert "abcdefghijklmnop" not in repr(http)
        assert http.listen == "[::]:9000"

    @pytest.mark.parametrize(("content", "expected"), [
        (b"short", "at least 16"), (b"two words here-and-more", "one word"),
        (b"\xe9t\xe9-0123456789abcdef", "not UTF-8"), (b"\xff\xfe" * 10, "UTF-16"),
        ("abcdefghijklmnop-0123".encode("utf-16-le"), "UTF-16"),
        (b"abcdefghij\x1bklmnop-0123", "control character"),
    ])
    def test_bad_token_files(self, tmp_path: Path, content: bytes, expected: str) -> None:
        """A token file that holds no usable token says what is wrong."""
        token = tmp_path / "token"
        token.write_bytes(content)
        with pytest.raises(ConfigError) as caught:
            _http({"listen": "0.0.0.0:1", "token_file": str(token)}, tmp_path)
        assert "http.token_file" in str(caught.value)
        assert expected.split()[0] in str(caught.value)

    def test_unreadable_token_file_without_need_key(self, tmp_path: Path) -> None:
        """Commands that do not serve the page (status) do not need the token file."""
        http = _http({"listen": "0.0.0.0:1", "token_file": str(tmp_path / "absent")},
                     tmp_path, need_key=False)
        assert http.token is None
        with pytest.raises(ConfigError):
            _http({"listen": "0.0.0.0:1", "token_file": str(tmp_path / "absent")}, tmp_path)

    def test_unknown_key(self, tmp_path: Path) -> None:
        """A misspelt key is named with a hint."""
        with pytest.raises(ConfigError, match=r"\[http\] lisen: unknown key"):
            _http({"lisen": "127.0.0.1:1"}, tmp_path)

    @given(listen=st.one_of(st.text(max_size=40), st.integers(), st.booleans(),
                            st.lists(st.text(max_size=5), max_size=2)))
    def test_any_listen_value(self, listen: Any) -> None:
        """Any listen value: a config or a ConfigError naming http.listen/token_file."""
        try:
            http = _http({"listen": listen}, Path("/nonexistent"))
        except ConfigError as exc:
            assert "http.listen" in str(exc) or "http.token_file" in str(exc)
            return
        if http.address is not None:
            host, port = http.address
            assert 1 <= port <= 65535
            assert host == "localhost" or host.startswith("127.") or host == "::1"


# -- status PATH and --state -------------------------------------------------------------------


class TestStatusCommand:
    """``watcherd status PATH`` and ``--state``."""

    def setup_journal(self, tmp_path: Path) -> tuple[Path, Path]:
        """A journal with one failed and one done file; returns (config, failed path)."""
        journal_path = tmp_path / "journal.db"
        failed = tmp_path / "bad\nname.wav"
        with Journal.open(journal_path, exclusive=True) as journal:
            a, b = journal.observe_many([
                (str(failed), str(tmp_path), FileStat(1, 1, 1, 1), "{}"),
                (str(tmp_path / "ok.wav"), str(tmp_path), FileStat(1, 1, 1, 1), "{}")])
            journal.transition(a, "uploading", actor="worker", reason="upload started")
            journal.transition(journal.get(a.id), "failed", actor="worker",
                               reason="rejected\x1b[31m", last_error="rejected\x1b[31m")
            journal.transition(b, "done", actor="worker", done_at=time.time())
        config = tmp_path / "config.toml"
        config.write_text(f'[journal]\npath = "{journal_path}"\n[http]\nlisten = ""\n')
        return config, failed

    def test_history_of_one_file(self, tmp_path: Path) -> None:
        """Every transition with actor and reason, names and reasons printable."""
        config, failed = self.setup_journal(tmp_path)
        result = watcherd("status", "--config", str(config), str(failed))
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == str(failed).replace("\n", "\\n")
        assert "state: failed" in lines[1] and "reason: rejected\\x1b[31m" in lines[2]
        assert any("(new) -> pending" in line and "seen" in line for line in lines)
        assert any("pending -> uploading" in line and "upload started" in line
                   for line in lines)
        assert any("uploading -> failed" in line for line in lines)
        assert "\x1b" not in result.stdout

    def test_history_json_and_unknown_file(self, tmp_path: Path) -> None:
        """--json gives the events; a file not in the journal exits 1 and says so."""
        config, failed = self.setup_journal(tmp_path)
        result = watcherd("status", "--json", "--config", str(config), str(failed))
        (entry,) = json.loads(result.stdout)
        assert [e["to_state"] for e in entry["events"]] == ["pending", "uploading", "failed"]
        missing = watcherd("status", "--config", str(config), str(tmp_path / "nope.wav"))
        assert missing.returncode == 1 and "not in the journal" in missing.stderr

    def test_state_filter(self, tmp_path: Path) -> None:
        """--state lists only that state's files."""
        config, _ = self.setup_journal(tmp_path)
        result = watcherd("status", "--config", str(config), "--state", "done")
        assert result.returncode == 0
        rows = result.stdout.splitlines()[1:]
        assert len(rows) == 1 and rows[0].startswith("done") and "ok.wav" in rows[0]
        empty = watcherd("status", "--config", str(config), "--state", "gone")
        assert "no files in state gone" in empty.stdout

    def test_bad_state_exits_2_with_the_choices(self, tmp_path: Path) -> None:
        """An unknown state: exit 2, the choices and the likely one."""
        config, _ = self.setup_journal(tmp_path)
        result = watcherd("status", "--config", str(config), "--state", "faild")
        assert result.returncode == 2
        assert "did you mean failed" in result.stderr and "pending" in result.stderr

    @given(value=st.text(max_size=30))
    def test_check_state_any_text(self, value: str) -> None:
        """check_state returns only journal states; otherwise one printable line."""
        try:
            assert check_state(value) in STATES
        except UnknownState as exc:
            assert value not in STATES
            assert "\n" not in str(exc) and "\x1b" not in str(exc)

    @given(name=st.text(min_size=1, max_size=40), reason=st.text(max_size=40))
    def test_history_lines_are_one_line_each(self, name: str, reason: str) -> None:
        """Whatever a name or reason holds, each event is one line."""
        source = _source(path="/in/" + name, state="failed", last_error=reason or None)
        events = [{"at": 1.0, "from_state": None, "to_state": "pending", "actor": "w",
                   "reason": reason}]
        lines = history_lines(source, events)
        assert len(lines) == (5 if reason else 4)
        assert all("\n" not in line and "\r" not in line for line in lines)
