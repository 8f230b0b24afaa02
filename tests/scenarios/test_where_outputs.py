"""Where transcripts go, with a real daemon: an output folder, names that fit, notes apps and
speakers by name, and outputs written again from the stored results (issue 23)."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.daemon_harness import DaemonProcess, wait_until, watcherd, write_config
from tests.sim import GladiaSimulator, make_wav

KEY = "sk-test-outputs23-0123456789"
SIM_OPTIONS = {"job_seconds": 0.2, "concurrency": 3}

Start = Callable[..., tuple[DaemonProcess, Path]]


@pytest.fixture
def start(tmp_path: Path, sim: GladiaSimulator) -> Iterator[Start]:
    """Starts a daemon on ``root`` with ``extra`` config lines in its [[watch]] table."""
    started: list[DaemonProcess] = []

    def run(root: Path, extra: str = "", *, outputs: tuple[str, ...] = ("txt", "json"),
            options: dict[str, object] | None = None) -> tuple[DaemonProcess, Path]:
        config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                              journal=tmp_path / "state" / "journal.db", watches=[root],
                              outputs=outputs, options=options, extra=extra)
        daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
        started.append(daemon)
        daemon.wait_for_event("starting")
        return daemon, config

    yield run
    for daemon in started:
        daemon.stop()


def _wav(path: Path, salt: str) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_wav(path, seconds=0.6, salt=salt)


def _creates(sim: GladiaSimulator) -> int:
    return sum(1 for r in sim.requests() if r.method == "POST" and "pre-recorded" in r.path)


def _front_matter(text: str) -> dict[str, object]:
    assert text.startswith("---\n"), text[:80]
    block, _, _ = text[4:].partition("\n---\n")
    value = yaml.safe_load(block)
    assert isinstance(value, dict)
    return value


@contextlib.contextmanager
def _read_only(source: Path, root: Path) -> Iterator[str]:
    """``source`` seen read-only at ``root``: a read-only bind mount when this runs as root
    (chmod does not stop root), else the folder itself with mode 0555."""
    if os.geteuid() != 0:
        root.symlink_to(source)
        for folder, _, _ in os.walk(source):
            os.chmod(folder, 0o555)
        try:
            yield "chmod 0555"
        finally:
            for folder, _, _ in os.walk(source):
                os.chmod(folder, 0o755)
        return
    root.mkdir()
    try:
        subprocess.run(["mount", "--bind", str(source), str(root)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot bind-mount here: {exc}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(root)], check=True,
                       capture_output=True)
        with pytest.raises(OSError):
            (root / "probe").write_bytes(b"")  # the mount really is read-only, even for root
        yield "read-only bind mount"
    finally:
        subprocess.run(["umount", str(root)], check=False, capture_output=True)


def test_a_read_only_root_gets_its_transcripts_in_the_output_folder(
        tmp_path: Path, start: Start, sim: GladiaSimulator) -> None:
    """A watch root that cannot be written (a read-only mount) with output_dir: the outputs
    mirror the source's path beneath the output folder, folders made with its permissions,
    and doctor says the root is only read."""
    source = tmp_path / "recorder"
    made = _wav(source / "a" / "b" / "x.wav", "ro-1")
    _wav(source / "top.wav", "ro-2")
    out = tmp_path / "transcripts"
    out.mkdir()
    os.chmod(out, 0o750)
    root = tmp_path / "share"
    with _read_only(source, root):
        daemon, config = start(root, f'output_dir = "{out}"\n')
        wait_until(lambda: (out / "a" / "b" / "x.txt").exists() and (out / "top.txt").exists(),
                   timeout=60, message="outputs in the output folder")
        assert (out / "a" / "b" / "x.json").exists()
        job = json.loads((out / "a" / "b" / "x.json").read_text(encoding="utf-8"))
        assert job["status"] == "done"
        assert sorted(p.name for p in (source / "a" / "b").iterdir()) == ["x.wav"]
        assert sorted(p.name for p in source.iterdir()) == ["a", "top.wav"]
        for folder in (out / "a", out / "a" / "b"):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o750 & ~_umask()
        assert (source / "a" / "b" / "x.wav").read_bytes() == made
        doctor = watcherd("doctor", "--config", str(config))
        assert "it is only read: transcripts go to" in doctor.stdout, doctor.stdout
        assert "is not writable" not in doctor.stdout
        assert daemon.terminate() == 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_tree_moved_inside_the_root_carries_its_outputs(
        tmp_path: Path, start: Start, sim: GladiaSimulator) -> None:
    """With output_dir, a folder moved within the root gets its outputs at the mirrored new
    place from the stored result (no new job), and the old ones watcherd wrote go."""
    root, out = tmp_path / "inbox", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    _wav(root / "old" / "talk.wav", "move-1")
    daemon, _ = start(root, f'output_dir = "{out}"\n')
    wait_until(lambda: (out / "old" / "talk.txt").exists(), timeout=60, message="first outputs")
    creates = _creates(sim)
    (root / "new").mkdir()
    (root / "old").rename(root / "new" / "deeper")
    wait_until(lambda: (out / "new" / "deeper" / "talk.txt").exists(), timeout=60,
               message="outputs at the new place")
    wait_until(lambda: not (out / "old" / "talk.txt").exists(), timeout=30,
               message="old outputs removed")
    assert not (out / "old" / "talk.json").exists()
    assert _creates(sim) == creates
    assert daemon.terminate() == 0


def test_output_name_with_every_token(tmp_path: Path, start: Start) -> None:
    """{date}, {watch}, {stem}, {ext} and {lang} all fill in."""
    root = tmp_path / "inbox"
    root.mkdir()
    _wav(root / "memo.wav", "tokens")
    daemon, _ = start(root, 'id = "desk"\noutput_name = "{date}_{watch}_{stem}-{ext}.{lang}"\n')
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    name = f"{today}_desk_memo-wav.en"
    wait_until(lambda: (root / f"{name}.txt").exists() and (root / f"{name}.json").exists(),
               timeout=60, message=f"{name}.txt")
    assert not (root / "memo.txt").exists()
    assert daemon.terminate() == 0


@pytest.mark.parametrize(("template", "says"), [
    ("../{stem}", "not a path"),
    ("{stem}..x", "may not contain \"..\""),
    ("{stem}/x", "not a path"),
    ("{date}", "must contain {stem}"),
    ("{stem}-{nope}", "unknown field {nope}"),
    ("{stem:>10}", "is not a placeholder"),
    (".{stem}", 'may not start with "."'),
])
def test_bad_output_names_are_refused_at_start(tmp_path: Path, template: str, says: str
                                               ) -> None:
    root = tmp_path / "inbox"
    root.mkdir()
    config = write_config(tmp_path / "config.toml", api_url="http://127.0.0.1:9", api_key=KEY,
                          journal=tmp_path / "journal.db", watches=[root],
                          extra=f"output_name = {json.dumps(template)}\n")
    run = watcherd("run", "--config", str(config), timeout=60)
    assert run.returncode == 2, run.stderr
    assert "watch[1].output_name" in run.stderr and says in run.stderr, run.stderr
    assert not (tmp_path / "journal.db").exists()


def test_an_output_folder_inside_the_root_must_be_excluded(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    root.mkdir()
    config = write_config(tmp_path / "config.toml", api_url="http://127.0.0.1:9", api_key=KEY,
                          journal=tmp_path / "journal.db", watches=[root],
                          extra=f'output_dir = "{root / "transcripts"}"\n')
    run = watcherd("run", "--config", str(config), timeout=60)
    assert run.returncode == 2
    assert "outputs must never become inputs" in run.stderr
    assert 'exclude = ["transcripts"]' in run.stderr
    config.write_text(config.read_text(encoding="utf-8") + 'exclude = ["transcripts"]\n',
                      encoding="utf-8")
    check = watcherd("config", "show", "--config", str(config), timeout=60)
    assert check.returncode == 0, check.stderr


def test_media_names_for_a_file_with_two_translations(tmp_path: Path, start: Start) -> None:
    """subtitle_names = "media": NAME.<detected>.srt/.vtt and each translation's own."""
    root = tmp_path / "inbox"
    root.mkdir()
    _wav(root / "film.wav", "media")
    daemon, _ = start(root, 'subtitle_names = "media"\n', outputs=("txt", "srt", "vtt"),
                      options={"translation": True,
                               "translation_config": {"target_languages": ["fr", "de"]}})
    expected = {"film.wav", "film.txt", "film.en.srt", "film.en.vtt", "film.fr.txt",
                "film.fr.srt", "film.fr.vtt", "film.de.txt", "film.de.srt", "film.de.vtt"}
    wait_until(lambda: {p.name for p in root.iterdir()} >= expected, timeout=60,
               message="media names")
    assert {p.name for p in root.iterdir()} == expected
    assert (root / "film.fr.srt").read_text(encoding="utf-8").startswith("1\n")
    assert (root / "film.en.vtt").read_text(encoding="utf-8").startswith("WEBVTT")
    assert daemon.terminate() == 0


def test_markdown_front_matter_reads_back_and_a_template_fills_in(
        tmp_path: Path, start: Start, sim: GladiaSimulator) -> None:
    """NAME.md's front matter parses with a YAML parser into the job's facts; md_template
    gets the same fields; then `render` writes the template's version without a request."""
    root = tmp_path / "inbox"
    root.mkdir()
    wav = root / "Réunion: «été» #1.wav"
    _wav(wav, "notes")
    daemon, config = start(root, outputs=("md", "json"),
                           options={"diarization": True,
                                    "diarization_config": {"number_of_speakers": 2}})
    md = root / "Réunion: «été» #1.md"
    # The outputs are written one after the other: wait for both, not the first.
    wait_until(lambda: md.exists() and md.with_suffix(".json").exists(), timeout=60,
               message="NAME.md and NAME.json")
    job = json.loads(md.with_suffix(".json").read_text(encoding="utf-8"))
    front = _front_matter(md.read_text(encoding="utf-8"))
    assert front == {
        "title": wav.name, "date": job["created_at"][:10],
        "duration": round(job["result"]["metadata"]["audio_duration"], 1),
        "language": "en", "speakers": ["Speaker 1", "Speaker 2"], "engine": "gladia",
        # The job's request_params.model says which model ran (the simulator echoes it).
        "model": "solaria-1", "job_id": job["id"], "source": str(wav.resolve()),
    }
    assert "\n---\n\n# Réunion" in md.read_text(encoding="utf-8")
    creates = len(sim.requests())
    daemon.terminate()

    template = tmp_path / "note.md"
    template.write_text("{front_matter}\n# {title}\n\nOn {date}, {duration}, {language}; "
                        "{speakers} ({engine} {model}, {job_id}) from {source}.\n\n"
                        "{transcript}{{not a field}}\n", encoding="utf-8")
    config.write_text(config.read_text(encoding="utf-8")
                      + f'md_template = "{template}"\n', encoding="utf-8")
    rendered = watcherd("render", "--config", str(config))
    assert rendered.returncode == 0, rendered.stderr
    text = md.read_text(encoding="utf-8")
    assert _front_matter(text)["job_id"] == job["id"]
    assert f"\n# {wav.name}\n\nOn {job['created_at'][:10]}, 00:0" in text
    assert f"; Speaker 1, Speaker 2 (gladia solaria-1, {job['id']}) from {wav.resolve()}." in text
    assert "**[00:00] Speaker 1:**" in text and text.endswith("{not a field}\n")
    assert len(sim.requests()) == creates

    template.write_text("# {title} {missing}\n", encoding="utf-8")
    refused = watcherd("run", "--config", str(config), timeout=60)
    assert refused.returncode == 2
    assert "md_template" in refused.stderr and "unknown field {missing}" in refused.stderr


def test_speakers_by_name_in_every_format_and_renamed_after_the_fact(
        tmp_path: Path, start: Start, sim: GladiaSimulator) -> None:
    """[watch.speakers] names show in txt, srt, vtt and md, and NAME.json's watcherd block;
    `watcherd speakers FILE` renames them from the stored result with no request sent."""
    root = tmp_path / "inbox"
    root.mkdir()
    _wav(root / "call.wav", "speakers")
    daemon, config = start(root, '[watch.speakers]\n1 = "Alice"\n2 = "Bob"\n',
                           outputs=("txt", "srt", "vtt", "md", "json"),
                           options={"diarization": True, "subtitles": True,
                                    "diarization_config": {"number_of_speakers": 2}})
    wait_until(lambda: (root / "call.md").exists(), timeout=60, message="outputs")

    def read(suffix: str) -> str:
        return (root / f"call.{suffix}").read_text(encoding="utf-8")

    def names_everywhere(first: str, second: str) -> None:
        assert f"{first}: " in read("txt") and f"{second}: " in read("txt")
        assert "Speaker 1" not in read("txt")
        assert f"[{first}] " in read("srt") and f"[{second}] " in read("srt")
        assert f"[{first}] " in read("vtt")
        assert f"] {first}:**" in read("md") and f"| {first} |" in read("md")
        assert _front_matter(read("md"))["speakers"] == [first, second]
        job = json.loads(read("json"))
        assert job["watcherd"]["speakers"] == {"1": first, "2": second}
        assert job["result"]["transcription"]["utterances"][0]["speaker"] == 0  # Gladia's own

    names_everywhere("Alice", "Bob")
    before = len(sim.requests())
    renamed = watcherd("speakers", str(root / "call.wav"), "1=Carol", "--config", str(config))
    assert renamed.returncode == 0, renamed.stderr
    names_everywhere("Carol", "Bob")
    assert len(sim.requests()) == before
    bad = watcherd("speakers", str(root / "call.wav"), "one=Carol", "--config", str(config))
    assert bad.returncode == 2 and "expected NUMBER=NAME" in bad.stderr
    assert daemon.terminate() == 0


def test_render_moves_outputs_to_a_new_output_dir_and_removes_the_old(
        tmp_path: Path, start: Start, sim: GladiaSimulator) -> None:
    """Outputs beside the sources; then output_dir and output_name change and `watcherd
    render` rewrites them there from the stored results and removes the ones it wrote (a
    file of the user's with an output's name stays)."""
    root, out = tmp_path / "inbox", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    _wav(root / "sub" / "one.wav", "render-1")
    daemon, config = start(root)
    wait_until(lambda: (root / "sub" / "one.json").exists(), timeout=60, message="outputs")
    (root / "sub" / "notes.txt").write_text("mine", encoding="utf-8")
    daemon.terminate()
    requests = len(sim.requests())
    config.write_text(config.read_text(encoding="utf-8")
                      + f'output_dir = "{out}"\noutput_name = "{{stem}}.transcript"\n',
                      encoding="utf-8")
    rendered = watcherd("render", "--config", str(config))
    assert rendered.returncode == 0, rendered.stderr
    assert "one.transcript.txt" in rendered.stdout
    assert sorted(p.name for p in (out / "sub").iterdir()) == [
        "one.transcript.json", "one.transcript.txt"]
    assert sorted(p.name for p in (root / "sub").iterdir()) == ["notes.txt", "one.wav"]
    assert len(sim.requests()) == requests
    again = watcherd("render", str(root / "sub" / "one.wav"), str(root / "nope.wav"),
                     "--config", str(config))
    assert again.returncode == 1 and "nope.wav: not in the journal" in again.stderr
    shutil.rmtree(out / "sub")


def test_retry_reprocess_renames_through_the_daemon_without_a_new_job(
        tmp_path: Path, start: Start, sim: GladiaSimulator) -> None:
    """`retry --reprocess` after a new output_name: the daemon rewrites the outputs from the
    stored result (no job created) and removes the ones it wrote under the old name."""
    root = tmp_path / "inbox"
    root.mkdir()
    _wav(root / "memo.wav", "reprocess")
    daemon, config = start(root)
    wait_until(lambda: (root / "memo.json").exists(), timeout=60, message="outputs")
    daemon.terminate()
    creates = _creates(sim)
    config.write_text(config.read_text(encoding="utf-8") + 'output_name = "{stem}.notes"\n',
                      encoding="utf-8")
    daemon = DaemonProcess(config, tmp_path / "daemon2.log").start()
    try:
        daemon.wait_for_event("starting")
        queued = watcherd("retry", "--reprocess", str(root / "memo.wav"), "--config",
                          str(config))
        assert queued.returncode == 0, queued.stderr
        wait_until(lambda: {p.name for p in root.iterdir()} == {
            "memo.wav", "memo.notes.txt", "memo.notes.json"}, timeout=60,
            message="renamed outputs, old ones removed")
        assert _creates(sim) == creates
        assert daemon.terminate() == 0
    finally:
        daemon.stop()
