"""Hook environments for any name: exact raw bytes, unambiguous output lists, one-line texts."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcherd.service import hook_env, run_hook

# One name component: any bytes but "/" and NUL (":" and newlines included).
raw_names = st.binary(min_size=1, max_size=80).map(
    lambda b: b.replace(b"/", b"_").replace(b"\0", b"_")
).filter(lambda b: b not in (b".", b".."))
paths = raw_names.map(lambda raw: Path(os.fsdecode(b"/in/" + raw)))
texts = st.text(st.characters() | st.sampled_from(["\n", "\x1b", "\x00", "\udce9", "\ud83d"]))
# What a one-line text for people must never hold.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


@given(paths, st.lists(paths, max_size=12), texts, texts)
def test_output_lists_round_trip_for_any_names(
    source: Path, outputs: list[Path], job_id: str, error: str
) -> None:
    """The JSON array and the numbered variables give back exactly the outputs, any names."""
    env = hook_env(source, "done", outputs, job_id, error)
    expected = [str(p) for p in outputs]
    assert env["WATCHERD_SOURCE"] == str(source)
    assert json.loads(env["WATCHERD_OUTPUTS_JSON"]) == expected
    assert env["WATCHERD_OUTPUTS_JSON"].isascii()
    count = int(env["WATCHERD_OUTPUT_COUNT"])
    assert [env[f"WATCHERD_OUTPUT_{n}"] for n in range(1, count + 1)] == expected
    assert f"WATCHERD_OUTPUT_{count + 1}" not in env
    # The old colon-joined variable only when splitting it gives the list back.
    if any(":" in p for p in expected):
        assert "WATCHERD_OUTPUTS" not in env
    else:
        joined = env["WATCHERD_OUTPUTS"]
        assert (joined.split(":") if joined else []) == expected
    # Texts for people are one line; every value can be handed to a program (no NUL, encodable).
    assert CONTROL.search(env["WATCHERD_JOB_ID"]) is None
    assert CONTROL.search(env["WATCHERD_ERROR"]) is None
    for value in env.values():
        assert b"\0" not in os.fsencode(value)


def test_a_long_error_is_cut_to_fit_an_environment_string() -> None:
    """A huge error text is cut (a program cannot start with a 128 KiB variable)."""
    env = hook_env(Path("/in/a.wav"), "failed", (), None, "x" * 1_000_000)
    assert len(env["WATCHERD_ERROR"]) == 4000 and env["WATCHERD_ERROR"].endswith("\u2026")


# The hook: writes every WATCHERD_* variable it received, as raw bytes in hex, to argv[1].
DUMP_ENV = (
    "import json, os, sys\n"
    "seen = {k.decode(): v.hex() for k, v in os.environb.items() if k.startswith(b'WATCHERD_')}\n"
    "open(sys.argv[1], 'w').write(json.dumps(seen))\n"
)


def received(record: Path) -> dict[str, bytes]:
    """The WATCHERD_* variables a hook wrote with DUMP_ENV, as the raw bytes it got."""
    return {k: bytes.fromhex(v) for k, v in json.loads(record.read_text()).items()}


def test_a_real_hook_receives_the_raw_bytes_of_any_name(tmp_path: Path) -> None:
    """A Latin-1 name with a newline, ':' and quotes reaches the hook byte for byte."""
    raw_source = b'/in/caf\xe9 \n:"x".wav'
    raw_outputs = [b'/in/caf\xe9 \n:"x".txt', b'/in/caf\xe9 \n:"x".json']
    record = tmp_path / "env.json"
    env = hook_env(Path(os.fsdecode(raw_source)), "done",
                   [Path(os.fsdecode(r)) for r in raw_outputs], "job\x1b[2J",
                   "line one\nline \udce9two")
    result = asyncio.run(run_hook([sys.executable, "-c", DUMP_ENV, str(record)], env, 60))
    assert result.ok, result.describe()
    got = received(record)
    assert got["WATCHERD_SOURCE"] == raw_source
    assert got["WATCHERD_OUTPUT_COUNT"] == b"2"
    assert [got["WATCHERD_OUTPUT_1"], got["WATCHERD_OUTPUT_2"]] == raw_outputs
    decoded = json.loads(got["WATCHERD_OUTPUTS_JSON"])
    assert [os.fsencode(p) for p in decoded] == raw_outputs
    assert "WATCHERD_OUTPUTS" not in got  # a ":" in the names: splitting would be wrong
    assert got["WATCHERD_JOB_ID"] == b"job\\x1b[2J"
    assert got["WATCHERD_ERROR"] == b"line one\\nline \\xe9two"


def test_an_inherited_stale_outputs_variable_is_not_passed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A WATCHERD_OUTPUTS the daemon inherited never reaches a hook that was not given one."""
    monkeypatch.setenv("WATCHERD_OUTPUTS", "/stale/a.txt")
    monkeypatch.setenv("WATCHERD_OUTPUT_7", "/stale/b.txt")
    monkeypatch.setenv("WATCHERD_CONFIG", "/etc/watcherd.toml")
    record = tmp_path / "env.json"
    env = hook_env(Path("/in/a:b.wav"), "done", [Path("/in/a:b.txt")])
    result = asyncio.run(run_hook([sys.executable, "-c", DUMP_ENV, str(record)], env, 60))
    assert result.ok, result.describe()
    got = received(record)
    assert "WATCHERD_OUTPUTS" not in got and "WATCHERD_OUTPUT_7" not in got
    assert got["WATCHERD_OUTPUT_1"] == b"/in/a:b.txt"
    assert got["WATCHERD_CONFIG"] == b"/etc/watcherd.toml"  # not a hook variable: kept


def test_a_value_no_program_can_receive_is_reported_not_raised() -> None:
    """An argument with a NUL byte cannot start a program: an error result, no exception."""
    result = asyncio.run(run_hook([sys.executable, "-c", "pass", "a\0b"], {}, 30))
    assert not result.ok and result.returncode is None
    assert result.error is not None and "did not run" in result.describe()
