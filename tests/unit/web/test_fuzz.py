"""Property tests of the status page's request handling: whatever arrives, nothing breaks,
and nothing acts without the right Host, the CSRF token and (where required) the token.

Requests are handed to the application on the server's own loop (fast, so many examples),
and raw bytes are sent over real sockets to the server itself.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.unit.web.test_harness import RunningWeb, WebFiles, populate_web_journal
from watcherd.config import HttpConfig, Secret
from watcherd.http11 import Request
from watcherd.journal import Journal

TOKEN = "fuzz-token-" + "k" * 20
METHODS = st.one_of(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]),
                    st.text(st.characters(codec="ascii"), max_size=12))
PATHS = st.one_of(
    st.sampled_from(["/", "/retry", "/login", "/metrics", "/healthz", "/api/status",
                     "/transcript/1/txt", "/transcript/6/json", "/transcript/6/../../x"]),
    st.text(max_size=60).map(lambda t: "/" + t),
)
HEADER_NAMES = st.sampled_from(["host", "origin", "cookie", "authorization", "content-type",
                                "accept", "x-csrf-token", "referer", "x-forwarded-host"])
BODIES = st.one_of(st.binary(max_size=200), st.sampled_from([
    b"id=1&csrf=", b"id=1&csrf=" + b"0" * 64, b"token=wrong", b"id=%ff%fe&csrf=\xff",
    b"id=" + b"9" * 30]))


def _start(root: Path, http: HttpConfig) -> RunningWeb:
    def setup(journal: Journal) -> WebFiles:
        return populate_web_journal(journal, root / "inbox")
    root.mkdir()
    return RunningWeb(root / "journal.db", http, setup=setup).start()


@pytest.fixture(scope="module")
def open_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWeb]:
    """One loopback page without a token, shared by the examples."""
    web = _start(tmp_path_factory.mktemp("fuzz") / "open", HttpConfig())
    yield web
    web.stop()


@pytest.fixture(scope="module")
def token_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWeb]:
    """One page that requires TOKEN, shared by the examples."""
    web = _start(tmp_path_factory.mktemp("fuzz") / "token", HttpConfig(token=Secret(TOKEN)))
    yield web
    web.stop()


def _states(web: RunningWeb) -> dict[int, str]:
    return {s.id: s.state for s in web.call(lambda j: j.all())}


def _handle(web: RunningWeb, request: Request) -> int:
    assert web.server is not None
    response = web.run(web.server.app.handle(request))
    return response.status


@st.composite
def requests(draw: st.DrawFn, web_port: int, csrf: str, failed_id: int
             ) -> tuple[Request, bool, bool, bool]:
    """A request mixing right and wrong parts; (request, good host, good csrf, token)."""
    good_host = draw(st.booleans())
    good_csrf = draw(st.booleans())
    with_token = draw(st.booleans())
    headers = dict(draw(st.dictionaries(HEADER_NAMES, st.text(max_size=40), max_size=5)))
    if good_host:
        headers["host"] = f"127.0.0.1:{web_port}"
    if with_token:
        headers["authorization"] = f"Bearer {TOKEN}"
    method = draw(METHODS)
    path = draw(PATHS)
    if draw(st.booleans()):
        method, path = "POST", "/retry"
        headers["content-type"] = "application/x-www-form-urlencoded"
        form = f"id={failed_id}&csrf={csrf if good_csrf else draw(st.text(max_size=70))}"
        body = form.encode("utf-8", "surrogatepass")
    else:
        body = draw(BODIES)
        good_csrf = False  # no form, so no token: even POST /retry must not act
    if "origin" in headers and good_host:
        headers["origin"] = draw(st.sampled_from(
            [f"http://127.0.0.1:{web_port}", "http://evil.example", headers["origin"]]))
    return Request(method, path, headers, body), good_host, good_csrf, with_token


def _acts(request: Request, web_port: int, good_host: bool, good_csrf: bool,
          authorized: bool) -> bool:
    """Whether this request is allowed to requeue the file (the only action)."""
    origin = request.headers.get("origin")
    same_origin = origin in (None, "null", f"http://127.0.0.1:{web_port}")
    return (request.method == "POST" and request.path == "/retry" and good_host and good_csrf
            and authorized and same_origin)


def _check_one(web: RunningWeb, drawn: tuple[Request, bool, bool, bool], *,
               token_required: bool) -> None:
    request, good_host, good_csrf, with_token = drawn
    made = web.setup_result
    assert isinstance(made, WebFiles)
    before = _states(web)
    status = _handle(web, request)
    after = _states(web)
    assert 200 <= status <= 599
    authorized = with_token or not token_required
    acts = _acts(request, web.port, good_host, good_csrf, authorized)
    event(f"acts={acts} status={status}")
    if acts:
        assert after[made.failed] == "pending"
        assert {k: v for k, v in after.items() if k != made.failed} == {
            k: v for k, v in before.items() if k != made.failed}
        # Put it back for the next example.
        web.call(lambda j: j.transition(j.get(made.failed), "failed", actor="test",
                                        last_error="again"))
    else:
        assert after == before, (request, status)


@given(data=st.data())
def test_open_page_never_raises_never_acts_without_csrf(open_web: RunningWeb,
                                                        data: st.DataObject) -> None:
    """Any request to a loopback page: an answer, and a requeue only with Host + CSRF."""
    assert open_web.server is not None
    made = open_web.setup_result
    assert isinstance(made, WebFiles)
    drawn = data.draw(requests(open_web.port, open_web.server.app.guard.csrf_token(),
                               made.failed))
    _check_one(open_web, drawn, token_required=False)


@given(data=st.data())
def test_token_page_never_acts_without_the_token(token_web: RunningWeb,
                                                 data: st.DataObject) -> None:
    """Any request to a page with a token: a requeue only with Host, CSRF and the token."""
    assert token_web.server is not None
    made = token_web.setup_result
    assert isinstance(made, WebFiles)
    drawn = data.draw(requests(token_web.port, token_web.server.app.guard.csrf_token(),
                               made.failed))
    _check_one(token_web, drawn, token_required=True)


@given(raw=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda m, p, h: f"{m} {p} HTTP/1.1\r\n{h}\r\n".encode("utf-8", "replace"),
              METHODS, PATHS,
              st.text(st.characters(exclude_categories=["Cs"]), max_size=80)),
))
def test_raw_bytes_get_an_http_answer_or_a_close(open_web: RunningWeb, raw: bytes) -> None:
    """Arbitrary bytes on a real socket: a well-formed status line or nothing; the server
    goes on serving."""
    with socket.create_connection(("127.0.0.1", open_web.port), timeout=20) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    if answer:
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 ")
        assert 100 <= int(status_line.split(b" ")[1]) <= 599
    assert _handle(open_web, Request("GET", "/healthz",
                                     {"host": f"127.0.0.1:{open_web.port}"})) == 200
