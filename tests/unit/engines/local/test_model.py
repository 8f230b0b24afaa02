"""The local model loader: join the weight packages, verify every byte, publish atomically."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import platformdirs
import pytest

from watcherd.engines.local.model import (
    MODEL_FILES,
    MODEL_REVISION,
    STAMP_NAME,
    ModelError,
    ensure_model,
    local_engine_installed,
    model_dir,
    package_files,
    verify,
)

needs_model = pytest.mark.skipif(
    not local_engine_installed(),
    reason="the local extra is not installed: pip install -e '.[local]'",
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _flip_byte(path: Path, offset: int = 100) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture(scope="module")
def built_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One joined model folder shared by the tests that only read it."""
    if not local_engine_installed():
        pytest.skip("the local extra is not installed: pip install -e '.[local]'")
    return ensure_model(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def model_copy(built_model: Path, tmp_path: Path) -> Path:
    """A private copy of the model: small files copied, model.bin linked (never modified)."""
    copy = tmp_path / "model"
    copy.mkdir()
    for name in MODEL_FILES:
        if name == "model.bin":
            (copy / name).symlink_to(built_model / name)
        else:
            shutil.copy2(built_model / name, copy / name)
    return copy


def _fake_dist(site: Path, name: str, files: dict[str, Path | bytes | None]) -> None:
    """Install a stand-in weight package in ``site``: RECORD lists every file, None = absent."""
    package = name.replace("-", "_")
    info = site / f"{package}-1.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n")
    data = site / package / "data"
    data.mkdir(parents=True)
    records = []
    for filename, content in files.items():
        records.append(f"{package}/data/{filename},,")
        if isinstance(content, Path):
            (data / filename).symlink_to(content)
        elif isinstance(content, bytes):
            (data / filename).write_bytes(content)
    (info / "RECORD").write_text("".join(f"{line}\n" for line in records))


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for stand-in packages (sys.path is restored afterwards)."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    yield site


def _real_files() -> dict[str, Path]:
    found = package_files()
    parts = found["model.bin"]
    real = {name: paths[0] for name, paths in found.items() if name != "model.bin"}
    real.update({f"model.bin.part{i}": p for i, p in enumerate(parts, start=1)})
    return real


def _leftovers(parent: Path, target: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p != target)


# -- paths and detection -----------------------------------------------------------------


def test_model_dir_defaults_to_the_user_cache_folder() -> None:
    """Without a cache folder the model lives under platformdirs' cache dir for watcherd."""
    expected = Path(platformdirs.user_cache_dir("watcherd")) / "models"
    assert model_dir() == expected / f"whisper-base-{MODEL_REVISION}"


def test_model_dir_honours_a_given_cache_folder(tmp_path: Path) -> None:
    """A given cache folder replaces the default one."""
    assert model_dir(tmp_path) == tmp_path / "models" / f"whisper-base-{MODEL_REVISION}"


@needs_model
def test_package_files_finds_both_parts_in_order() -> None:
    """The two model.bin parts come from the two packages, part 1 first, sizes adding up."""
    parts = package_files()["model.bin"]
    assert [p.name for p in parts] == ["model.bin.part1", "model.bin.part2"]
    assert sum(p.stat().st_size for p in parts) == MODEL_FILES["model.bin"][1]


# -- joining -----------------------------------------------------------------------------


@needs_model
def test_ensure_model_joins_and_verifies_every_file(tmp_path: Path) -> None:
    """The published folder holds the four files with the pinned hashes, and no temp folder."""
    folder = ensure_model(tmp_path)
    assert folder == model_dir(tmp_path)
    for name, (sha256, size) in MODEL_FILES.items():
        assert (folder / name).stat().st_size == size
        assert _sha256(folder / name) == sha256, name
    assert _leftovers(folder.parent, folder) == []


@needs_model
def test_ensure_model_is_idempotent(tmp_path: Path) -> None:
    """A second call reuses the verified folder instead of joining the parts again."""
    folder = ensure_model(tmp_path)
    before = (folder / "model.bin").stat()
    assert ensure_model(tmp_path) == folder
    after = (folder / "model.bin").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert (folder / STAMP_NAME).is_file()


@needs_model
def test_ensure_model_rebuilds_a_damaged_cache_from_the_packages(tmp_path: Path) -> None:
    """An altered file in the cache is never used: the folder is rebuilt from verified parts."""
    folder = ensure_model(tmp_path)
    _flip_byte(folder / "vocabulary.txt")
    assert ensure_model(tmp_path) == folder
    assert _sha256(folder / "vocabulary.txt") == MODEL_FILES["vocabulary.txt"][0]
    assert _leftovers(folder.parent, folder) == []


# -- verifying ---------------------------------------------------------------------------


@needs_model
def test_verify_accepts_an_intact_copy(model_copy: Path) -> None:
    """A byte-identical copy passes a full verification."""
    verify(model_copy, full=True)


@needs_model
def test_verify_refuses_a_flipped_byte_in_config(model_copy: Path) -> None:
    """One changed byte in config.json (same size) is caught by its SHA-256."""
    _flip_byte(model_copy / "config.json")
    with pytest.raises(ModelError, match=r"config\.json does not match its pinned SHA-256"):
        verify(model_copy)


@needs_model
def test_verify_refuses_a_truncated_model_bin(model_copy: Path, built_model: Path) -> None:
    """A truncated model.bin is refused by its size, with what to do about it."""
    (model_copy / "model.bin").unlink()
    with (built_model / "model.bin").open("rb") as f:
        (model_copy / "model.bin").write_bytes(f.read(1 << 20))
    with pytest.raises(ModelError, match=r"model\.bin is 1048576 bytes, expected 145217532"
                       r".*delete the folder"):
        verify(model_copy)


@needs_model
def test_verify_refuses_a_folder_without_tokenizer(model_copy: Path) -> None:
    """Without tokenizer.json faster-whisper would go to a hub: the loader refuses first."""
    (model_copy / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"tokenizer\.json is missing"):
        verify(model_copy)


@needs_model
def test_quick_verify_catches_an_edit_that_restores_the_mtime(model_copy: Path) -> None:
    """The stamp keys on ctime too, so an edit hidden behind a restored mtime is re-hashed."""
    verify(model_copy)  # writes the stamp
    target = model_copy / "vocabulary.txt"
    st = target.stat()
    _flip_byte(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ModelError, match=r"vocabulary\.txt does not match"):
        verify(model_copy)


@needs_model
def test_full_verify_rehashes_despite_a_matching_stamp(model_copy: Path) -> None:
    """Even a forged stamp that matches the altered file cannot hide it from verify(full=True)."""
    verify(model_copy)
    _flip_byte(model_copy / "vocabulary.txt")
    # Forge the stamp: trust the altered file's current stat, as a careless tool might.
    stamp = (model_copy / STAMP_NAME).read_text()
    st = (model_copy / "vocabulary.txt").stat()
    data = json.loads(stamp)
    data["files"]["vocabulary.txt"] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    (model_copy / STAMP_NAME).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"vocabulary\.txt does not match"):
        verify(model_copy, full=True)


def test_verify_refuses_a_missing_folder(tmp_path: Path) -> None:
    """A folder that does not exist is a ModelError, not a download."""
    with pytest.raises(ModelError, match="does not exist"):
        verify(tmp_path / "nowhere")


# -- damaged or missing packages -----------------------------------------------------------


def test_a_package_that_is_not_installed_is_named(tmp_path: Path) -> None:
    """A weight package that is not installed gives a ModelError naming it and the fix."""
    with pytest.raises(ModelError,
                       match=r"watcherd-absent-part9 is not installed.*watcherd\[local\]"):
        ensure_model(tmp_path, packages=("watcherd-absent-part9",))
    assert not model_dir(tmp_path).exists()


@needs_model
def test_a_missing_part_is_refused(tmp_path: Path, fake_site: Path) -> None:
    """A package whose model.bin part is gone is refused, and nothing is published."""
    real = _real_files()
    _fake_dist(fake_site, "watcherd-test-part1", {
        "model.bin.part1": real["model.bin.part1"], "config.json": real["config.json"],
        "tokenizer.json": real["tokenizer.json"], "vocabulary.txt": real["vocabulary.txt"],
    })
    _fake_dist(fake_site, "watcherd-test-part2", {"model.bin.part2": None})
    with pytest.raises(ModelError, match=r"watcherd-test-part2 is damaged: its file "
                       r"model\.bin\.part2 is missing"):
        ensure_model(tmp_path, packages=("watcherd-test-part1", "watcherd-test-part2"))
    assert not model_dir(tmp_path).exists()


@needs_model
def test_a_part_absent_from_every_package_is_refused(tmp_path: Path, fake_site: Path) -> None:
    """When no package lists a part at all, the message names the missing part."""
    real = _real_files()
    _fake_dist(fake_site, "watcherd-test-part1", {
        "model.bin.part1": real["model.bin.part1"], "config.json": real["config.json"],
        "tokenizer.json": real["tokenizer.json"], "vocabulary.txt": real["vocabulary.txt"],
    })
    _fake_dist(fake_site, "watcherd-test-part2", {})
    with pytest.raises(ModelError, match=r"model\.bin\.part2 not found"):
        ensure_model(tmp_path, packages=("watcherd-test-part1", "watcherd-test-part2"))


@needs_model
def test_an_altered_part_is_refused_and_nothing_is_published(
    tmp_path: Path, fake_site: Path
) -> None:
    """A part with other bytes fails the joined file's check; no folder or temp is left."""
    real = _real_files()
    _fake_dist(fake_site, "watcherd-test-part1", {
        "model.bin.part1": real["model.bin.part1"], "config.json": real["config.json"],
        "tokenizer.json": real["tokenizer.json"], "vocabulary.txt": real["vocabulary.txt"],
    })
    _fake_dist(fake_site, "watcherd-test-part2", {"model.bin.part2": b"not the weights"})
    with pytest.raises(ModelError, match=r"model\.bin .*does not match the pinned size"
                       r".*force-reinstall"):
        ensure_model(tmp_path, packages=("watcherd-test-part1", "watcherd-test-part2"))
    target = model_dir(tmp_path)
    assert not target.exists()
    assert _leftovers(target.parent, target) == []
