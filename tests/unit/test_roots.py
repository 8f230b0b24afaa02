"""The watch roots' resolver (watcherd.roots): nothing it opens lies outside its root.

Real folders and real links; Hypothesis builds trees of folders, links (to folders, to files,
to links, with ``..``, absolute and relative) inside and outside a root and checks that what
the resolver accepts is beneath the root, that it opens exactly what it accepted, and that a
folder swapped for a link between resolving and opening is refused, never followed.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watcherd import roots
from watcherd.roots import LinkOnPath, LinkOutside, Place, Roots, open_folder


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A watch root and an outside folder next to it, each with a file."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    (root / "a" / "b" / "in.wav").write_bytes(b"inside")
    (outside / "secret.wav").write_bytes(b"secret")
    return root, outside


def _read(place: Place) -> bytes:
    fd = place.open()
    with os.fdopen(fd, "rb") as f:
        return f.read()


def test_links_inside_are_followed_links_out_refused_at_any_depth(
        tree: tuple[Path, Path]) -> None:
    root, outside = tree
    wall = Roots([(root, "inside")])
    (root / "in-link.wav").symlink_to(root / "a" / "b" / "in.wav")
    (root / "a" / "rel-link.wav").symlink_to("b/in.wav")
    (root / "out.wav").symlink_to(outside / "secret.wav")
    (root / "a" / "b" / "deep-out.wav").symlink_to("../../../outside/secret.wav")
    (root / "a" / "folder-out").symlink_to(outside)
    (root / "a" / "hop.wav").symlink_to(root / "out.wav")  # a link to a link out
    assert _read(wall.locate(root / "in-link.wav")) == b"inside"
    assert _read(wall.locate(root / "a" / "rel-link.wav")) == b"inside"
    for path in (root / "out.wav", root / "a" / "b" / "deep-out.wav",
                 root / "a" / "folder-out" / "secret.wav", root / "a" / "folder-out",
                 root / "a" / "hop.wav", root / "a" / "b" / ".." / ".." / ".." / "outside"):
        with pytest.raises(LinkOutside) as caught:
            wall.locate(path)
        assert "a link to a place outside the watched folders" in caught.value.message
        assert caught.value.transient is False


def test_follow_links_anywhere_follows_every_link(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    (root / "out.wav").symlink_to(outside / "secret.wav")
    assert _read(Roots([(root, "anywhere")]).locate(root / "out.wav")) == b"secret"


def test_a_path_in_no_root_is_a_named_file(tree: tuple[Path, Path]) -> None:
    """``watcherd transcribe FILE`` names files anywhere: they are opened by their real path."""
    root, outside = tree
    place = Roots([(root, "inside")]).locate(outside / "secret.wav")
    assert place.top == os.sep and place.path == (outside / "secret.wav").resolve()
    assert _read(place) == b"secret"


def test_innermost_root_decides(tree: tuple[Path, Path]) -> None:
    """A root nested in a root that follows anywhere keeps its own "inside"."""
    root, outside = tree
    (root / "a" / "out.wav").symlink_to(outside / "secret.wav")
    wall = Roots([(root, "anywhere"), (root / "a", "inside")])
    with pytest.raises(LinkOutside):
        wall.locate(root / "a" / "out.wav")


def test_a_folder_swapped_for_a_link_after_resolving_is_refused(
        tree: tuple[Path, Path]) -> None:
    """Resolved while ``a`` was a folder; by the open, ``a`` is a link out: refused."""
    root, outside = tree
    wall = Roots([(root, "inside")])
    place = wall.locate(root / "a" / "b" / "in.wav")
    os.rename(root / "a", root / "a-old")
    (outside / "b").mkdir()
    (outside / "b" / "in.wav").write_bytes(b"victim")
    (root / "a").symlink_to(outside)
    with pytest.raises(LinkOnPath):
        place.open()
    with pytest.raises(LinkOnPath):
        place.stat()
    with pytest.raises(LinkOnPath), place.folder():
        pass


def test_the_last_component_swapped_for_a_link_is_refused(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    place = Roots([(root, "inside")]).locate(root / "a" / "b" / "in.wav")
    (root / "a" / "b" / "in.wav").unlink()
    (root / "a" / "b" / "in.wav").symlink_to(outside / "secret.wav")
    with pytest.raises(LinkOnPath):
        place.open()
    assert os.path.islink(root / "a" / "b" / "in.wav")
    # stat of the last component never follows: it reports the link itself.
    assert not os.path.samestat(place.stat(), os.stat(outside / "secret.wav"))


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x\0y"])
def test_open_folder_takes_plain_names_only(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        open_folder(tmp_path, [name])


def test_install_and_current() -> None:
    before = roots.current()
    try:
        wall = Roots([("/srv/x", "inside")])
        roots.install(wall)
        assert roots.current() is wall
    finally:
        roots.install(before)


# -- Hypothesis: trees of links against the resolver ------------------------------------------

NAMES = st.sampled_from(["a", "b", "c", "x.wav"])
#: Where a link may point: somewhere in the root, outside, up with "..", or at another link.
TARGETS = st.one_of(
    st.lists(NAMES, min_size=0, max_size=3).map(lambda parts: ("root", parts)),
    st.lists(NAMES, min_size=0, max_size=2).map(lambda parts: ("outside", parts)),
    st.lists(st.sampled_from(["..", "a", "b", "x.wav"]), min_size=1, max_size=4).map(
        lambda parts: ("relative", parts)),
)
ENTRIES = st.lists(
    st.tuples(st.lists(NAMES, min_size=1, max_size=3),
              st.one_of(st.just(("dir", [])), st.just(("file", [])), TARGETS)),
    min_size=1, max_size=12,
)


def _build(base: Path, entries: list[tuple[list[str], tuple[str, list[str]]]]) -> None:
    for parts, (kind, target) in entries:
        path = base / "root" / Path(*parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "dir":
                path.mkdir(exist_ok=True)
            elif kind == "file":
                path.write_bytes(b"in:" + "/".join(parts).encode())
            elif kind == "relative":
                path.symlink_to(os.path.join(*target))
            else:
                path.symlink_to(base / kind / Path(*target))
        except OSError:
            continue  # a name already taken by another kind, or a parent that is a file


def _walk_paths(top: Path) -> Iterator[Path]:
    """Every path under ``top`` as written (links not followed), and a few through links."""
    for folder, dirs, files in os.walk(top, followlinks=False):
        for name in dirs + files:
            yield Path(folder, name)
            yield Path(folder, name, "x.wav")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(entries=ENTRIES)
def test_nothing_the_resolver_opens_lies_outside_its_root(
        tmp_path_factory: pytest.TempPathFactory,
        entries: list[tuple[list[str], tuple[str, list[str]]]]) -> None:
    base = tmp_path_factory.mktemp("wall")
    try:
        (base / "root").mkdir()
        (base / "outside" / "a").mkdir(parents=True)
        (base / "outside" / "x.wav").write_bytes(b"SECRET")
        (base / "outside" / "a" / "x.wav").write_bytes(b"SECRET")
        _build(base, entries)
        root_real = os.path.realpath(base / "root")
        wall = Roots([(base / "root", "inside")])
        for path in _walk_paths(base / "root"):
            try:
                place = wall.locate(path)
            except LinkOutside:
                real = os.path.realpath(path)
                assert not (real + os.sep).startswith(root_real + os.sep)
                continue
            assert place.top == root_real
            assert all(p not in ("", ".", "..") and os.sep not in p for p in place.parts)
            assert str(place.path).startswith(root_real)
            try:
                data = _read(place)
            except (OSError, ValueError):
                continue  # a folder, a broken link, a loop: nothing read
            assert not data.startswith(b"SECRET"), (path, place)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(1, 4), swap_at=st.integers(0, 3))
def test_a_swap_at_any_depth_is_never_followed(
        tmp_path_factory: pytest.TempPathFactory, depth: int, swap_at: int) -> None:
    """Resolve ROOT/d0/.../x.wav, swap folder ``swap_at`` for a link out, then open: refused."""
    base = tmp_path_factory.mktemp("swap")
    try:
        root, outside = base / "root", base / "outside"
        folders = [f"d{i}" for i in range(depth)]
        (root / Path(*folders)).mkdir(parents=True)
        (root / Path(*folders) / "x.wav").write_bytes(b"mine")
        victim = outside / Path(*folders[min(swap_at, depth - 1) + 1:])
        victim.mkdir(parents=True, exist_ok=True)
        (victim / "x.wav").write_bytes(b"SECRET")
        place = Roots([(root, "inside")]).locate(root / Path(*folders) / "x.wav")
        swapped = root / Path(*folders[: min(swap_at, depth - 1) + 1])
        os.rename(swapped, swapped.with_name(swapped.name + "-old"))
        swapped.symlink_to(outside)
        with pytest.raises(LinkOnPath):
            place.open()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_an_entry_of_ours_is_never_followed_at_its_own_name(tree: tuple[Path, Path]) -> None:
    """An output (or the output base) replaced by a link: its folder is resolved, the link
    itself is opened as a link, which is refused; nothing is read or written elsewhere."""
    root, outside = tree
    wall = Roots([(root, "inside")])
    (root / "a" / "talk.txt").symlink_to(outside / "secret.wav")
    place = wall.locate_entry(root / "a" / "talk.txt")
    assert place.path == root.resolve() / "a" / "talk.txt"
    with pytest.raises(LinkOnPath):
        place.open()
    # A link named like an output base does not move the outputs into another folder.
    (root / "a" / "talk").symlink_to(root / "a" / "b")
    assert wall.locate_entry(root / "a" / "talk").parts == ("a", "talk")


def _loops(path: Path) -> bool:
    try:
        os.path.realpath(path, strict=True)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _answer(wall: Roots, path: Path) -> Place | str:
    try:
        return wall.locate(path)
    except LinkOutside:
        return "outside"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(entries=ENTRIES, order=st.randoms(use_true_random=False))
def test_a_batch_resolves_each_path_as_a_fresh_resolution_would(
        tmp_path_factory: pytest.TempPathFactory,
        entries: list[tuple[list[str], tuple[str, list[str]]]], order: Any) -> None:
    """Within folders_resolved_once (the settle's batches), each path is placed exactly where
    locate places it alone, whatever links the tree holds and in whatever order paths come."""
    base = tmp_path_factory.mktemp("batch")
    try:
        (base / "root").mkdir()
        (base / "outside" / "a").mkdir(parents=True)
        _build(base, entries)
        wall = Roots([(base / "root", "inside")])
        paths = list(_walk_paths(base / "root"))
        order.shuffle(paths)
        alone = [_answer(wall, path) for path in paths]
        with roots.folders_resolved_once():
            batched = [_answer(wall, path) for path in paths]
        root_real = os.path.realpath(base / "root")
        for path, fresh, placed in zip(paths, alone, batched, strict=True):
            if _loops(path):
                # os.path.realpath gives up inside a loop of links and returns the rest of
                # the path unresolved, so its answer depends on where it met the loop; both
                # answers are still within the root (or refused), which is all the wall needs.
                assert isinstance(placed, str) or placed.top == root_real
            else:
                assert placed == fresh, path
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_folder_swapped_within_a_batch_is_refused_not_followed(
        tree: tuple[Path, Path]) -> None:
    """A folder resolved earlier in the block and then swapped for a link out: the next file
    in it is placed by the stale resolution, and its open refuses the link (never reads it)."""
    root, outside = tree
    (root / "a" / "b" / "two.wav").write_bytes(b"mine")
    (outside / "two.wav").write_bytes(b"SECRET")
    wall = Roots([(root, "inside")])
    with roots.folders_resolved_once():
        assert _read(wall.locate(root / "a" / "b" / "in.wav")) == b"inside"
        os.rename(root / "a" / "b", root / "a" / "b-old")
        (root / "a" / "b").symlink_to(outside)
        with pytest.raises(LinkOnPath):
            wall.locate(root / "a" / "b" / "two.wav").open()
    # Outside the block the path resolves afresh: out of the root, refused as such.
    with pytest.raises(LinkOutside):
        wall.locate(root / "a" / "b" / "two.wav")
