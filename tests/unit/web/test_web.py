"""The status page's routes over real HTTP: a real server on 127.0.0.1, a real journal file.

Each route is asked as a browser, Prometheus or a load balancer would, and the answers are
checked against the journal: counts, lists, the retry action (CSRF and token), transcripts
(only recorded outputs), /metrics (prometheus_client's exposition), /healthz (200 and 503).
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.web.test_harness import RunningWeb, WebFiles, source_state
from watcherd.config import HttpConfig, Secret
from watcherd.display import printable
from watcherd.journal import Journal
from watcherd.web import health

StartWeb = Callable[..., RunningWeb]
TOKEN = "tok-" + "Zq8" * 10


def files(web: RunningWeb) -> WebFiles:
    """The sources the harness made."""
    made = web.setup_result
    assert isinstance(made, WebFiles)
    return made


def get(web: RunningWeb, path: str, **kwargs: Any) -> httpx.Response:
    """GET from the page (Host is the listen address, as a browser sends it)."""
    return httpx.get(web.url + path, timeout=10, **kwargs)


def csrf_of(html: str) -> str:
    """The CSRF token in the page's forms."""
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page has no retry form"
    return found.group(1)


def retry(web: RunningWeb, source_id: int, csrf: str | None, **kwargs: Any) -> httpx.Response:
    """POST the retry form for one source."""
    data = {"id": str(source_id)}
    if csrf is not None:
        data["csrf"] = csrf
    return httpx.post(web.url + "/retry", data=data, timeout=10, follow_redirects=False,
                      **kwargs)


class TestPage:
    """GET /: counts, lists, names, no secret."""

    def test_counts_and_lists_match_the_journal(self, web_page: StartWeb) -> None:
        """The page shows each state's count and the files of each list."""
        web = web_page()
        html = get(web, "/").text
        counts = dict(re.findall(r'data-state="(\w+)"><b>(\d+)</b>', html))
        assert counts["failed"] == "2" and counts["waiting"] == "1"
        assert counts["transcribing"] == "1" and counts["submitted"] == "1"
        assert counts["done"] == "1" and counts["pending"] == "1" and counts["gone"] == "0"
        failed = html.split('id="failed"')[1].split("</section>")[0]
        assert "broken.mp3" in failed and "cannot be decoded as audio" in failed
        waiting = html.split('id="waiting"')[1].split("</section>")[0]
        assert "offline.wav" in waiting and "cannot reach the API" in waiting
        assert "talk.wav" in html.split('id="working"')[1].split("</section>")[0]

    def test_names_and_reasons_cannot_inject_markup(self, web_page: StartWeb) -> None:
        """A file name or reason with markup, newlines or bidi controls shows as escaped text."""
        web = web_page()
        html = get(web, "/").text
        assert "<script>alert" not in html and "<b>x</b>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        shown = printable("<b>x</b>\n\u202etxt.wav\udce9.wav")
        assert "\\n\\u202etxt.wav\\xe9.wav" in shown
        assert shown.replace("<", "&lt;").replace(">", "&gt;") in html
        assert "\u202e" not in html

    def test_progress_and_expected_end_are_shown(self, web_page: StartWeb) -> None:
        """A reported fraction shows as a percentage; a Gladia phase with its expected end."""
        web = web_page()
        made = files(web)
        web.progress.report(made.working, fraction=0.42, phase="transcribing")
        web.progress.report(made.submitted, phase="processing", expected_end=time.time() + 90)
        html = get(web, "/").text
        row = html.split(f'<tr data-id="{made.working}">')[1].split("</tr>")[0]
        assert 'value="42"' in row and "42%" in row
        row = html.split(f'<tr data-id="{made.submitted}">')[1].split("</tr>")[0]
        assert "processing" in row and "expected end" in row

    def test_security_headers_and_no_key(self, web_page: StartWeb) -> None:
        """A nonce CSP, no framing, no caching; the page holds no secret."""
        web = web_page()
        response = get(web, "/")
        policy = response.headers["content-security-policy"]
        nonce = re.search(r"'nonce-([^']+)'", policy)
        assert nonce and f'<script nonce="{nonce.group(1)}">' in response.text
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        # Nothing loaded from elsewhere: the page works offline.
        assert not re.search(r'(src|href|action)="(https?:)?//', response.text)
        assert "api_key" not in response.text and "sk-" not in response.text

    def test_head_has_no_body(self, web_page: StartWeb) -> None:
        """HEAD / answers like GET without the body."""
        web = web_page()
        response = httpx.head(web.url + "/", timeout=10)
        assert response.status_code == 200 and response.content == b""
        assert int(response.headers["content-length"]) > 1000


class TestStatusJson:
    """GET /api/status: what the page's script fetches."""

    def test_json_matches_the_journal(self, web_page: StartWeb) -> None:
        """Counts, lists and the live HTML, as JSON."""
        web = web_page()
        made = files(web)
        web.progress.report(made.working, fraction=0.5)
        body = get(web, "/api/status").json()
        assert body["counts"]["failed"] == 2 and body["counts"]["done"] == 1
        assert {row["id"] for row in body["failed"]} == {made.failed, made.nasty}
        assert [row["id"] for row in body["working"]] == [made.working, made.submitted]
        assert body["working"][0]["progress"]["fraction"] == 0.5
        assert body["recent"][0]["outputs"] == ["txt", "json"]
        assert 'id="counts"' in body["html"]

    def test_updates_after_a_change(self, web_page: StartWeb) -> None:
        """A transition shows on the next fetch (after the short reuse period)."""
        web = web_page()
        made = files(web)
        web.call(lambda j: j.transition(j.get(made.pending), "failed", actor="test",
                                        last_error="made to fail"))
        assert web.server is not None
        web.server.app.reader.invalidate()
        body = get(web, "/api/status").json()
        assert body["counts"]["failed"] == 3 and body["counts"]["pending"] == 0


class TestRetry:
    """POST /retry: requeues a failed file, only with the page's CSRF token."""

    def test_retry_requeues_the_failed_file(self, web_page: StartWeb) -> None:
        """The button's POST moves the row back to pending and hints the worker."""
        web = web_page()
        made = files(web)
        csrf = csrf_of(get(web, "/").text)
        response = retry(web, made.failed, csrf)
        assert response.status_code == 303 and response.headers["location"] == "/"
        assert source_state(web, made.failed) == "pending"
        assert [p.name for p in web.retried] == ["broken.mp3"]
        events = web.call(lambda j: j.events(made.failed))
        assert events[-1]["reason"] == "watcherd retry" and events[-1]["actor"] == "user"

    def test_retry_waiting_and_json_answer(self, web_page: StartWeb) -> None:
        """A waiting file is retried now; a JSON client gets a JSON answer."""
        web = web_page()
        made = files(web)
        csrf = csrf_of(get(web, "/").text)
        response = retry(web, made.waiting, csrf, headers={"Accept": "application/json"})
        assert response.json() == {"queued": True}
        assert source_state(web, made.waiting) == "pending"

    @pytest.mark.parametrize("csrf", [None, "", "0" * 64, "not-hex"])
    def test_without_the_csrf_token_nothing_happens(self, web_page: StartWeb,
                                                    csrf: str | None) -> None:
        """A missing or wrong CSRF token is refused (403) and the journal is untouched."""
        web = web_page()
        made = files(web)
        response = retry(web, made.failed, csrf)
        assert response.status_code == 403 and "form token" in response.text
        assert source_state(web, made.failed) == "failed" and web.retried == []

    def test_cross_site_origin_is_refused(self, web_page: StartWeb) -> None:
        """Even with the token, a POST whose Origin is another site is refused."""
        web = web_page()
        made = files(web)
        csrf = csrf_of(get(web, "/").text)
        response = retry(web, made.failed, csrf, headers={"Origin": "http://evil.example"})
        assert response.status_code == 403
        assert source_state(web, made.failed) == "failed"

    def test_csrf_in_a_header_and_unknown_ids(self, web_page: StartWeb) -> None:
        """The token may come as X-CSRF-Token; an unknown id is 404, a done file is left."""
        web = web_page()
        made = files(web)
        csrf = csrf_of(get(web, "/").text)
        response = httpx.post(web.url + "/retry", data={"id": "999999"},
                              headers={"X-CSRF-Token": csrf}, timeout=10)
        assert response.status_code == 404
        response = httpx.post(web.url + "/retry", data={"id": str(made.done)},
                              headers={"X-CSRF-Token": csrf, "Accept": "application/json"},
                              timeout=10)
        assert response.json() == {"queued": False}
        assert source_state(web, made.done) == "done"

    def test_get_is_not_an_action(self, web_page: StartWeb) -> None:
        """GET /retry is 405 with Allow: POST."""
        web = web_page()
        response = get(web, "/retry")
        assert response.status_code == 405 and response.headers["allow"] == "POST"


class TestTranscripts:
    """GET /transcript/ID/SUFFIX: only outputs the journal records."""

    def test_recorded_output_is_served_read_only(self, web_page: StartWeb) -> None:
        """The done file's .txt is served as text, sandboxed."""
        web = web_page()
        made = files(web)
        html = get(web, "/").text
        assert f'href="/transcript/{made.done}/txt"' in html
        response = get(web, f"/transcript/{made.done}/txt")
        assert response.status_code == 200
        assert "hello from the status page" in response.text
        assert response.headers["content-type"].startswith("text/plain")
        assert "sandbox" in response.headers["content-security-policy"]
        assert get(web, f"/transcript/{made.done}/json").json()["id"] == "local-0001"

    @pytest.mark.parametrize("path", [
        "/transcript/{done}/srt",            # recorded kind, never written
        "/transcript/{failed}/txt",          # not a done file
        "/transcript/999999/txt",            # not in the journal
        "/transcript/{done}/..%2F..%2Fetc%2Fpasswd",
        "/transcript/{done}/../../journal.db",
        "/transcript/{done}",
    ])
    def test_anything_else_is_not_found(self, web_page: StartWeb, path: str) -> None:
        """Other suffixes, other files and traversal attempts are 404."""
        web = web_page()
        made = files(web)
        response = get(web, path.format(done=made.done, failed=made.failed))
        assert response.status_code == 404

    def test_a_symlinked_output_is_not_followed(self, web_page: StartWeb) -> None:
        """An output replaced by a symlink (to a secret) is refused."""
        web = web_page()
        made = files(web)
        secret = made.root.parent / "secret.txt"
        secret.write_text("top secret")
        txt = made.root / "done.txt"
        txt.unlink()
        txt.symlink_to(secret)
        response = get(web, f"/transcript/{made.done}/txt")
        assert response.status_code == 404 and "top secret" not in response.text


class TestMetrics:
    """GET /metrics: prometheus_client's exposition."""

    def test_families_parse_and_match(self, web_page: StartWeb) -> None:
        """Files by state, latency and duration histograms, RTF, the process collector."""
        web = web_page()
        response = get(web, "/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(response.text)}
        by_state = {s.labels["state"]: s.value for s in families["watcherd_sources"].samples}
        assert by_state["failed"] == 2 and by_state["done"] == 1 and by_state["pending"] == 1
        latency = families["watcherd_latency_seconds"].samples
        assert [s.value for s in latency if s.name.endswith("_count")] == [1]
        duration = families["watcherd_job_duration_seconds"].samples
        assert [s.value for s in duration if s.name.endswith("_count")] == [1]
        rtf = families["watcherd_local_real_time_factor"].samples[0].value
        assert rtf == pytest.approx(8.0 / 60.0)
        assert "process_resident_memory_bytes" in response.text
        assert "watcherd_api_requests" in families
        assert families["watcherd_jobs_in_flight"].samples[0].value == 1

    def test_transitions_are_counted_since_start(self, web_page: StartWeb) -> None:
        """Transitions committed while the page runs appear by (from, to) state."""
        web = web_page()
        made = files(web)
        web.call(lambda j: j.transition(j.get(made.pending), "failed", actor="test"))
        text = get(web, "/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = families["watcherd_transitions"].samples
        assert [(s.labels["from_state"], s.labels["to_state"], s.value)
                for s in samples] == [("pending", "failed", 1.0)]


class TestHealth:
    """GET /healthz: 200 ok, 503 with the reason."""

    def test_healthy(self, web_page: StartWeb) -> None:
        """A running loop and a writable journal: 200 ok."""
        web = web_page()
        response = get(web, "/healthz")
        assert (response.status_code, response.text.strip()) == (200, "ok")

    def test_journal_folder_gone_is_503(self, web_page: StartWeb) -> None:
        """A journal whose folder vanished is reported, without its path."""
        web = web_page()
        folder = web.journal_path.parent
        aside = folder.with_name(folder.name + "-moved")
        folder.rename(aside)
        try:
            response = get(web, "/healthz")
        finally:
            aside.rename(folder)
        assert response.status_code == 503
        assert "journal's folder is missing" in response.text
        assert str(folder) not in response.text

    def test_blocked_loop_is_503(self, web_page: StartWeb) -> None:
        """A loop that was held up longer than the limit is reported."""
        web = web_page()
        assert web.server is not None
        heartbeat = web.server.app.heartbeat
        assert heartbeat is not None
        heartbeat.lag = health.MAX_LAG_SECONDS + 5
        response = get(web, "/healthz")
        assert response.status_code == 503 and "event loop was blocked" in response.text

    def test_read_only_journal_file(self, tmp_path: Path) -> None:
        """journal_problem names a journal file that cannot be written."""
        path = tmp_path / "journal.db"
        Journal.open(path).close()
        assert health.journal_problem(path) is None
        if os.geteuid() != 0:  # root may write anything; the check follows os.access
            path.chmod(0o400)
            assert health.journal_problem(path) == "the journal file is not writable"
        assert health.journal_problem(tmp_path / "none" / "journal.db") == (
            "the journal's folder is missing")


class TestHost:
    """The Host header must name the page's address (DNS rebinding)."""

    @pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1:1", "attacker",
                                      "127.0.0.1.nip.io:{port}", "localhost.evil:{port}"])
    def test_other_hosts_are_refused(self, web_page: StartWeb, host: str) -> None:
        """Any other name or port is 421, on every route."""
        web = web_page()
        for path in ("/", "/metrics", "/healthz", "/api/status"):
            response = get(web, path, headers={"Host": host.format(port=web.port)})
            assert response.status_code == 421, path
            assert "DNS rebinding" in response.text

    @pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}",
                                      "LOCALHOST:{port}"])
    def test_loopback_spellings_are_accepted(self, web_page: StartWeb, host: str) -> None:
        """Every spelling of this machine with the right port is served."""
        web = web_page()
        response = get(web, "/healthz", headers={"Host": host.format(port=web.port)})
        assert response.status_code == 200

    def test_retry_with_a_rebound_host_does_nothing(self, web_page: StartWeb) -> None:
        """A rebinding page cannot act either: refused before the CSRF check."""
        web = web_page()
        made = files(web)
        csrf = csrf_of(get(web, "/").text)
        response = retry(web, made.failed, csrf, headers={"Host": f"evil.example:{web.port}"})
        assert response.status_code == 421
        assert source_state(web, made.failed) == "failed"


class TestToken:
    """With a token (required beyond loopback): bearer or session cookie, else 401."""

    def web(self, web_page: StartWeb) -> RunningWeb:
        """A page that requires TOKEN."""
        return web_page(HttpConfig(token=Secret(TOKEN)))

    def test_without_the_token_only_health_and_login(self, web_page: StartWeb) -> None:
        """/, /metrics and /api/status ask for the token; /healthz does not."""
        web = self.web(web_page)
        page = get(web, "/")
        assert page.status_code == 401 and 'name="token"' in page.text
        assert TOKEN not in page.text
        metrics = get(web, "/metrics")
        assert metrics.status_code == 401 and "Bearer" in metrics.headers["www-authenticate"]
        assert get(web, "/api/status").status_code == 401
        assert get(web, "/healthz").status_code == 200

    def test_bearer_token(self, web_page: StartWeb) -> None:
        """Prometheus's bearer token opens /metrics; a wrong one does not."""
        web = self.web(web_page)
        ok = get(web, "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and "watcherd_sources" in ok.text
        wrong = get(web, "/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})
        assert wrong.status_code == 401

    def test_login_sets_a_session_cookie(self, web_page: StartWeb) -> None:
        """The login form trades the token for an HttpOnly cookie that is not the token."""
        web = self.web(web_page)
        with httpx.Client(base_url=web.url, timeout=10) as client:
            bad = client.post("/login", data={"token": "wrong"})
            assert bad.status_code == 401 and "not the token" in bad.text
            good = client.post("/login", data={"token": TOKEN})
            assert good.status_code == 303
            cookie = good.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert TOKEN not in cookie
            page = client.get("/")
            assert page.status_code == 200 and 'id="counts"' in page.text

    def test_retry_needs_the_token_too(self, web_page: StartWeb) -> None:
        """A CSRF token without the access token does nothing."""
        web = self.web(web_page)
        made = files(web)
        assert web.server is not None
        csrf = web.server.app.guard.csrf_token()
        response = retry(web, made.failed, csrf)
        assert response.status_code == 401
        assert source_state(web, made.failed) == "failed"
        response = retry(web, made.failed, csrf, headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 303
        assert source_state(web, made.failed) == "pending"


class TestServer:
    """The HTTP layer: bad requests end the connection only."""

    def test_malformed_requests_get_4xx(self, web_page: StartWeb) -> None:
        """Garbage, an oversized head or body, and a wrong version are refused."""
        web = web_page()
        host = f"127.0.0.1:{web.port}"
        cases = [
            (b"garbage\r\n\r\n", 400),
            (f"GET / HTTP/1.1\r\nHost: {host}\r\nX: {'a' * 20000}\r\n\r\n".encode(), 431),
            (f"POST /retry HTTP/1.1\r\nHost: {host}\r\nContent-Length: 999999\r\n\r\n".encode(),
             413),
            (f"POST /retry HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(), 411),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"GET http://evil/ HTTP/1.1\r\nHost: evil\r\n\r\n", 400),
        ]
        for data, status in cases:
            with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            assert int(answer.split(b" ", 2)[1]) == status, (data[:40], answer[:80])
        assert get(web, "/healthz").status_code == 200

    def test_unknown_paths(self, web_page: StartWeb) -> None:
        """Unknown paths are 404 (JSON-free text)."""
        web = web_page()
        for path in ("/favicon.ico", "/admin", "/api", "/metrics/"):
            assert get(web, path).status_code == 404


def test_journal_unreadable_is_said(web_page: StartWeb) -> None:
    """A journal that cannot be read shows why, with zero counts, instead of failing."""
    web = web_page()
    assert web.server is not None
    reader = web.server.app.reader
    reader.path = web.journal_path.with_name("missing.db")
    reader.invalidate()
    body = get(web, "/api/status").json()
    assert body["error"].startswith("the journal cannot be read")
    assert sum(body["counts"].values()) == 0
    families = {f.name: f for f in text_string_to_metric_families(get(web, "/metrics").text)}
    assert families["watcherd_journal_readable"].samples[0].value == 0
    assert json.dumps(body)  # serialisable as it is
