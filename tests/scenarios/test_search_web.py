"""The status page's search: the box on the page, the results, the transcript at the time a
hit is said (real server on loopback; the box and the link in real Chromium)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon_harness import wait_until
from tests.scenarios import test_web_browser as web_browser
from tests.unit.web.test_harness import RunningWeb
from watcherd.journal import FileStat, Journal

StartWeb = Callable[..., RunningWeb]
# The browser suite's fixture: headless Chromium, skipped with the reason when not installed.
browser = web_browser.browser


def _long_meeting(journal: Journal, root: Path) -> int:
    """A done file whose transcript has 80 utterances, the budget said at 10:00 only; and a
    file whose transcript holds markup."""
    root.mkdir(parents=True, exist_ok=True)
    said = [{"start": float(i * 15), "end": float(i * 15 + 10),
             "text": f"Item {i} of the meeting, nothing special."} for i in range(80)]
    said[40]["text"] = "Then we argued about the budget for a while."
    jobs: list[tuple[str, dict[str, Any]]] = [
        ("meeting.wav", {"id": "j1", "status": "done",
                         "result": {"transcription": {"utterances": said}}}),
        ("nasty.wav", {"id": "j2", "status": "done", "result": {"transcription": {
            "utterances": [{"start": 3.0, "end": 4.0,
                            "text": "the budget <script>alert(1)</script> & more"}]}}}),
    ]
    ids = []
    for index, (name, job) in enumerate(jobs):
        [s] = journal.observe_many([(str(root / name), str(root), FileStat(1, index, 1, 1),
                                     "{}")])
        s = journal.transition(s, "pending", actor="test", content_key=f"k{index}",
                               sha256=str(index) * 64)
        journal.store_result(s, job)
        journal.transition(s, "done", actor="test", done_at=time.time(),
                           output_base=str(root / name.rsplit(".", 1)[0]))
        ids.append(s.id)
    return ids[0]


def _get(web: RunningWeb, path: str) -> httpx.Response:
    return httpx.get(web.url + path, timeout=10)


def test_search_json_page_and_view(web_page: StartWeb, tmp_path: Path) -> None:
    web = web_page(setup=lambda j: _long_meeting(j, tmp_path / "inbox"))
    found = _get(web, "/api/search?q=budget").json()
    hits = {h["path"].rsplit("/", 1)[-1]: h for h in found["hits"]}
    assert set(hits) == {"meeting.wav", "nasty.wav"}
    assert (hits["meeting.wav"]["start"], hits["meeting.wav"]["time"]) == (600.0, "10:00")
    page = _get(web, "/search?q=budget").text
    assert "<mark>budget</mark>" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f'href="/view/{hits["meeting.wav"]["id"]}#t600"' in page
    view = _get(web, f"/view/{hits['meeting.wav']['id']}").text
    assert 'id="t600"' in view and "argued about the budget" in view
    assert _get(web, "/view/999999").status_code == 404
    # The status page itself carries the box.
    assert 'action="/search"' in _get(web, "/").text


@pytest.mark.parametrize("query", ["-", "%22", "*", "-budget"])
def test_a_query_with_nothing_to_find_says_so(web_page: StartWeb, tmp_path: Path,
                                              query: str) -> None:
    web = web_page(setup=lambda j: _long_meeting(j, tmp_path / "inbox"))
    answer = _get(web, f"/api/search?q={query}")
    assert answer.status_code == 400 and answer.json()["error"].startswith("the search")
    page = _get(web, f"/search?q={query}")
    assert page.status_code == 200 and 'id="search-error"' in page.text


def test_the_search_box_finds_and_links_to_the_moment(
        web_page: StartWeb, browser: Any, tmp_path: Path) -> None:
    """Type in the page's box, get the hit with its snippet, follow it to 10:00 in the
    transcript: the utterance said then is the link's target, scrolled into view."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    web = web_page(setup=lambda j: _long_meeting(j, tmp_path / "inbox"))
    browser.get(web.url + "/")
    box = browser.find_element(By.CSS_SELECTOR, "form.search input[name=q]")
    box.send_keys('"about the budget"', Keys.ENTER)
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "li.hit"),
                           timeout=15, message="search results")
    [hit] = browser.find_elements(By.CSS_SELECTOR, "li.hit")
    assert "meeting.wav" in hit.text
    assert hit.find_element(By.TAG_NAME, "mark").text == "about the budget"
    hit.find_element(By.CSS_SELECTOR, "a.at").click()
    wait_until(lambda: "/view/" in browser.current_url, timeout=15,
                           message="the transcript")
    assert browser.current_url.endswith("#t600")
    target = browser.find_element(By.CSS_SELECTOR, ".utterance:target")
    assert "argued about the budget" in target.text
    top = browser.execute_script("return arguments[0].getBoundingClientRect().top", target)
    height = browser.execute_script("return window.innerHeight")
    assert 0 <= top < height  # scrolled to: 80 utterances do not fit above it
    web_browser.save_screenshot(browser, tmp_path, "search-result")
