"""The status page in a real browser: Debian's Chromium, headless, driven by selenium.

The browser is started here, by the test, with a fresh profile; the test is skipped (with the
reason) only when Chromium or its driver is not installed. It checks what a person sees: the
counts, the lists, the Retry button requeueing a failed file, the page updating itself
without a reload, and it saves screenshots (to tmp_path, and to $WATCHERD_SCREENSHOTS when
set: that is how docs/status-*.png are made).
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import wait_until
from tests.unit.web.test_harness import (
    RunningWeb,
    WebFiles,
    populate_web_journal,
    source_state,
    web_job,
)
from watcherd import outputs
from watcherd.journal import FileStat, Journal

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e '.[test]')")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

StartWeb = Callable[..., RunningWeb]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Chromium is not installed: apt-get install chromium chromium-driver "
           "(.ci/run installs them)",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile, quit afterwards."""
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless", "--no-sandbox", "--disable-gpu",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                     f"--user-data-dir={tmp_path / 'chromium-profile'}",
                     "--window-size=1280,1500", "--lang=en-US"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def save_screenshot(driver: WebDriver, tmp_path: Path, name: str) -> Path:
    """Save the browser's view as NAME.png in tmp_path (and in $WATCHERD_SCREENSHOTS)."""
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = os.environ.get("WATCHERD_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / path.name)
    return path


def shown_counts(driver: WebDriver) -> dict[str, int]:
    """The counts as the browser renders them (read in one script: the page may update)."""
    found = driver.execute_script(
        "var out = {};"
        "document.querySelectorAll('#counts li').forEach(function (li) {"
        "  out[li.dataset.state] = parseInt(li.querySelector('b').textContent, 10); });"
        "return out;")
    assert isinstance(found, dict)
    return {str(k): int(v) for k, v in found.items()}


def test_page_counts_retry_and_live_updates(web_page: StartWeb, browser: WebDriver,
                                            tmp_path: Path) -> None:
    """The page loads with the right counts; Retry requeues; it updates without a reload."""
    web = web_page()
    made = web.setup_result
    assert isinstance(made, WebFiles)
    web.progress.report(made.working, fraction=0.6, phase="transcribing")
    browser.get(web.url + "/")
    assert browser.title == "watcherd"
    counts = shown_counts(browser)
    assert counts["failed"] == 2 and counts["waiting"] == 1 and counts["done"] == 1
    assert counts["transcribing"] == 1 and counts["submitted"] == 1 and counts["pending"] == 1
    failed_text = browser.find_element(By.ID, "failed").text
    assert "broken.mp3" in failed_text and "cannot be decoded as audio" in failed_text
    assert "60%" in browser.find_element(By.ID, "working").text
    # No script error, nothing blocked by the Content-Security-Policy.
    # (selenium leaves get_log untyped)
    console = browser.get_log("browser")  # type: ignore[no-untyped-call]
    errors = [e for e in console if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert errors == []
    save_screenshot(browser, tmp_path, "status-page-test")

    button = browser.find_element(By.CSS_SELECTOR, f'button[data-id="{made.failed}"]')
    button.click()
    wait_until(lambda: source_state(web, made.failed) == "pending", timeout=20,
               message="the retried file back in the queue")
    wait_until(lambda: shown_counts(browser).get("failed") == 1, timeout=20,
               message="the page showing one failed file")
    assert web.retried and web.retried[0].name == "broken.mp3"
    assert not browser.find_elements(By.CSS_SELECTOR, f'button[data-id="{made.failed}"]')

    # Live update: mark this document, change the journal, see the change in the same one.
    browser.execute_script("window.__sameDocument = 42;")
    web.call(lambda j: j.transition(j.get(made.pending), "failed", actor="test",
                                    last_error="made to fail while the page was open"))
    wait_until(lambda: shown_counts(browser).get("failed") == 2, timeout=30,
               message="the page updating itself")
    assert browser.execute_script("return window.__sameDocument;") == 42
    assert "made to fail while the page was open" in browser.find_element(By.ID, "failed").text


def test_transcript_link_opens_the_transcript(web_page: StartWeb, browser: WebDriver) -> None:
    """The recently finished file's link shows its transcript text."""
    web = web_page()
    browser.get(web.url + "/")
    link = browser.find_element(By.CSS_SELECTOR, "#recent a[href$='/txt']")
    browser.get(link.get_attribute("href") or "")
    assert "hello from the status page" in browser.find_element(By.TAG_NAME, "body").text


# -- the README's screenshots ---------------------------------------------------------------


def busy_journal(journal: Journal, root: Path) -> None:
    """A busy day: files finished over 24 hours, several in flight, a queue, one waiting."""
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(16)
    now = time.time()
    st = FileStat(1000, 1, 1, 1)
    done_names = [f"meetings/2026-05-{day:02d} standup {n}.m4a" for day in range(1, 9)
                  for n in range(1, 12)]
    done = journal.observe_many([(str(root / n), str(root), st, "{}") for n in done_names])
    job = web_job("Good morning everyone, let's start with the release checklist.")
    for index, source in enumerate(done):
        hours_ago = rng.random() ** 1.5 * 23.5
        finished = now - hours_ago * 3600
        latency = rng.uniform(40, 400) * (1 + (hours_ago < 6) * 1.5)
        key = f"k{index}"
        source = journal.transition(source, "pending", actor="test", content_key=key)
        journal.store_result(source, job)
        base = root / Path(done_names[index]).with_suffix("")
        base.parent.mkdir(parents=True, exist_ok=True)
        outputs.write_outputs(base, ("txt", "srt"), job)
        journal.transition(source, "done", actor="test", created_at=finished - latency,
                           done_at=finished, engine="gladia" if index % 3 else "local",
                           output_base=str(root / Path(done_names[index]).with_suffix("")))
    flight = journal.observe_many([(str(root / n), str(root), st, "{}") for n in (
        "interviews/Ana Müller, product research.mp3", "lectures/Week 7 - Fourier.mp4",
        "podcast/Episode 42.wav", "calls/Support call 0815.ogg")])
    journal.transition(flight[0], "transcribing", actor="test", engine="local",
                       content_key="f0")
    journal.transition(flight[1], "submitted", actor="test", engine="gladia",
                       content_key="f1", job_id="45463597-20b7-4af7-b3b3-f5fb778203ab")
    journal.transition(flight[2], "submitted", actor="test", engine="gladia",
                       content_key="f2", job_id="8a1f6c2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b")
    journal.transition(flight[3], "uploading", actor="test", engine="gladia",
                       content_key="f3")
    journal.observe_many([(str(root / f"inbox/scan {n:03d}.wav"), str(root), st, "{}")
                          for n in range(14)])
    (waiting,) = journal.observe_many([(str(root / "calls/Sales sync.ogg"), str(root), st,
                                        "{}")])
    journal.transition(waiting, "waiting", actor="test", content_key="w", attempts=1,
                       last_error="Gladia could not serve the upload request now: 503 "
                                  "Service Unavailable", next_attempt_at=now + 95)


def failures_journal(journal: Journal, root: Path) -> None:
    """A bad moment: several files failed for different reasons, others waiting."""
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    st = FileStat(1000, 1, 1, 1)
    failed = {
        "scans/broken export.mp3": "it cannot be decoded as audio (Invalid data found when "
        "processing input); it is probably corrupt or not a recording; replace the file (a "
        "changed file is picked up again)",
        "lectures/Full day recording.mp4": "the recording is 212 minutes long; Gladia accepts "
        "at most 135 minutes: split it (e.g. ffmpeg -f segment) and drop the parts",
        "calls/empty.wav": "the file is empty; replace it with the full recording",
        "meetings/board 2026-05-04.m4a": "Gladia refused the job (HTTP 422): "
        "language_config.languages: 'xx' is not a supported language; fix [defaults.options] "
        "and run `watcherd retry`",
    }
    made = journal.observe_many([(str(root / n), str(root), st, "{}") for n in failed])
    for source, reason in zip(made, failed.values(), strict=True):
        journal.transition(source, "failed", actor="test", last_error=reason)
    waiting = journal.observe_many([(str(root / n), str(root), st, "{}") for n in (
        "interviews/Field notes 3.wav", "interviews/Field notes 4.wav")])
    for index, source in enumerate(waiting):
        journal.transition(source, "waiting", actor="test", content_key=f"w{index}",
                           attempts=3 + index, next_attempt_at=now + 240 + 60 * index,
                           last_error="cannot reach the Gladia API at https://api.gladia.io: "
                                      "[Errno -3] Temporary failure in name resolution")
    done = journal.observe_many([(str(root / f"meetings/weekly {n}.m4a"), str(root), st, "{}")
                                 for n in range(5)])
    for index, source in enumerate(done):
        finished = now - (index * 3.3 + 1) * 3600
        journal.transition(source, "done", actor="test", created_at=finished - 140 - index * 30,
                           done_at=finished, engine="gladia",
                           output_base=str(root / f"meetings/weekly {index}"))


def test_screenshot_busy_moment(web_page: StartWeb, browser: WebDriver,
                                tmp_path: Path) -> None:
    """A busy page: progress bars, a queue, the charts filled; saved as status-busy.png."""
    web = web_page(setup=lambda j: busy_journal(j, tmp_path / "busy"))
    flight = web.call(lambda j: j.in_states(["transcribing", "submitted", "uploading"]))
    by_state = {s.path.rsplit("/", 1)[-1]: s.id for s in flight}
    web.progress.report(by_state["Ana Müller, product research.mp3"], fraction=0.64,
                        phase="transcribing")
    web.progress.report(by_state["Week 7 - Fourier.mp4"], phase="processing",
                        expected_end=time.time() + 4 * 60)
    web.progress.report(by_state["Episode 42.wav"], phase="queued",
                        expected_end=time.time() + 9 * 60)
    web.progress.report(by_state["Support call 0815.ogg"], fraction=0.3, phase="uploading")
    browser.get(web.url + "/")
    counts = shown_counts(browser)
    assert counts["done"] == 88 and counts["pending"] == 14 and counts["waiting"] == 1
    bars = browser.find_elements(By.CSS_SELECTOR, "#charts rect.bar")
    assert len(bars) >= 10
    assert "64%" in browser.find_element(By.ID, "working").text
    save_screenshot(browser, tmp_path, "status-busy")


def test_screenshot_with_failures(web_page: StartWeb, browser: WebDriver,
                                  tmp_path: Path) -> None:
    """A page with failures and retries pending; saved as status-failures.png."""
    web = web_page(setup=lambda j: failures_journal(j, tmp_path / "bad"))
    browser.get(web.url + "/")
    counts = shown_counts(browser)
    assert counts["failed"] == 4 and counts["waiting"] == 2 and counts["done"] == 5
    assert len(browser.find_elements(By.CSS_SELECTOR, "#failed button")) == 4
    save_screenshot(browser, tmp_path, "status-failures")


def test_populated_journal_helper_is_what_the_page_shows(tmp_path: Path) -> None:
    """The shared journal helper makes the situations the browser tests expect."""
    with Journal.open(tmp_path / "j.db", exclusive=True) as journal:
        made = populate_web_journal(journal, tmp_path / "inbox")
        assert journal.counts()["failed"] == 2 and journal.get(made.done).state == "done"
