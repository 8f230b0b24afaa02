"""The local engine's choices (issue 15): ``[local] model`` = "base" or a model folder,
``device``, ``compute_type``; the bundled weights loaded from their packages, kept once on
disk."""

from __future__ import annotations

import asyncio
import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.speech import ENGLISH_TEXT, speak, word_error_rate
from watcherd.config import LOCAL_COMPUTE_TYPES, Config, parse_config
from watcherd.engines.local import model_for
from watcherd.engines.local.model import (
    MODEL_FILES,
    ModelError,
    ModelSpec,
    bundled_model,
    choose_device,
    ensure_model,
    folder_model,
    folder_problem,
    local_engine_installed,
    model_dir,
)
from watcherd.engines.local.runner import TranscriberPool
from watcherd.errors import ConfigError

needs_model = pytest.mark.skipif(not local_engine_installed(),
                                 reason="the local extra is not installed")


def config_with(local: str, base: Path) -> Config:
    """Parse a config whose [local] table is ``local`` (paths relative to ``base``)."""
    return parse_config(tomllib.loads(f"[local]\n{local}\n"), source=base / "c.toml", env={})


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled model joined into a folder once (ensure_model), for model folders."""
    if not local_engine_installed():
        pytest.skip("the local extra is not installed")
    return ensure_model(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def model_folder(joined: Path, tmp_path: Path) -> Path:
    """A user's model folder made of hard links to the verified joined model."""
    folder = tmp_path / "my-whisper"
    folder.mkdir()
    for name in MODEL_FILES:
        os.link(joined / name, folder / name)
    return folder


# -- [local] in the config ------------------------------------------------------------------


def test_defaults_are_base_auto_auto(tmp_path: Path) -> None:
    """No [local] table: the bundled model, device and compute type chosen at start."""
    config = config_with("", tmp_path)
    local = config.local
    assert (local.model, local.device, local.compute_type) == ("base", "auto", "auto")


@needs_model
def test_a_model_folder_is_accepted_relative_to_the_config(
    model_folder: Path, tmp_path: Path
) -> None:
    """model = "my-whisper" next to the config file names that folder, made absolute."""
    config = config_with('model = "my-whisper"\ndevice = "cpu"\ncompute_type = "int8"',
                         tmp_path)
    assert config.local.model == str(model_folder)


def test_a_name_that_is_not_a_folder_is_a_config_error(tmp_path: Path) -> None:
    """model = "large-v3" (not downloaded, not a folder) says it never downloads."""
    with pytest.raises(ConfigError) as caught:
        config_with('model = "large-v3"', tmp_path)
    message = str(caught.value)
    assert "local.model" in message and 'neither "base"' in message
    assert "never downloads" in message


def test_a_folder_without_the_model_files_names_what_lacks(tmp_path: Path) -> None:
    """A folder lacking model.bin and the vocabulary is refused, each named."""
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(ConfigError) as caught:
        config_with(f'model = "{folder}"', tmp_path)
    assert "model.bin" in str(caught.value) and "vocabulary.txt" in str(caught.value)
    (folder / "model.bin").write_bytes(b"x")
    (folder / "vocabulary.json").write_text("[]")
    assert folder_problem(folder) is None


@pytest.mark.parametrize(("key", "value"), [("device", "tpu"), ("compute_type", "int4")])
def test_unknown_device_or_compute_type_is_a_config_error(
    tmp_path: Path, key: str, value: str
) -> None:
    """device and compute_type accept only what CTranslate2 offers."""
    with pytest.raises(ConfigError, match=f"local.{key}"):
        config_with(f'{key} = "{value}"', tmp_path)


@given(device=st.sampled_from(["auto", "cpu", "cuda"]),
       compute=st.sampled_from(LOCAL_COMPUTE_TYPES), gpus=st.integers(0, 8))
def test_choose_device_resolves_auto_only(device: str, compute: str, gpus: int) -> None:
    """auto becomes CUDA exactly when a GPU is seen; compute auto follows the device."""
    chosen_device, chosen_compute = choose_device(device, compute, gpus=gpus)
    expected_device = ("cuda" if gpus > 0 else "cpu") if device == "auto" else device
    assert chosen_device == expected_device
    if compute == "auto":
        assert chosen_compute == ("float16" if chosen_device == "cuda" else "int8")
    else:
        assert chosen_compute == compute


# -- the bundled model, once on disk ------------------------------------------------------


@needs_model
def test_bundled_model_reads_the_packages_and_drops_the_old_copy(joined: Path) -> None:
    """The spec points into the packages; an old joined copy in the cache is removed."""
    cache = joined.parent.parent
    assert model_dir(cache).is_dir()
    spec = bundled_model(cache)
    parts = dict(spec.parts)
    assert set(parts) == set(MODEL_FILES)
    assert len(parts["model.bin"]) == 2
    assert all("site-packages" in p or "dist-packages" in p
               for paths in parts.values() for p in paths)
    assert not model_dir(cache).exists()
    # The stamp makes the next check cheap; the answer is the same.
    assert bundled_model(cache) == spec
    ensure_model(cache)  # other tests in this module still want the joined folder


@needs_model
def test_model_for_a_folder_and_for_base(model_folder: Path, tmp_path: Path) -> None:
    """model_for() gives a folder spec for a path and a package spec for "base"."""
    config = config_with(f'model = "{model_folder}"\ndevice = "cpu"', tmp_path)
    spec = model_for(config)
    assert spec == ModelSpec(label=str(model_folder), folder=str(model_folder),
                             device="cpu", compute_type="int8")
    (model_folder / "model.bin").unlink()
    with pytest.raises(ModelError, match=r"lacks model\.bin"):
        folder_model(model_folder)


async def _transcribe(spec: ModelSpec | Path, audio: Path) -> str:
    engine = TranscriberPool(spec, workers=1, cpu_threads=1)
    try:
        await engine.start()
        job = await engine.transcribe(audio, {})
    finally:
        await engine.close()
    return str(job["result"]["transcription"]["full_transcript"])


@needs_model
@pytest.mark.parametrize("source", ["packages", "folder"])
def test_real_speech_through_each_kind_of_model(
    source: str, model_folder: Path, tmp_path: Path
) -> None:
    """Real speech is transcribed from the package files and from a model folder alike."""
    audio = speak(ENGLISH_TEXT, tmp_path / "english.wav")
    spec = (bundled_model(tmp_path / "cache") if source == "packages"
            else folder_model(model_folder))
    text = asyncio.run(_transcribe(spec, audio))
    assert word_error_rate(ENGLISH_TEXT, text) < 0.35, text
