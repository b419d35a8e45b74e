"""The ownership registry and the symlink-safe file operations on a real filesystem.

Aspects: a claim on an equal, nested or surrounding directory by another owner fails naming
the holder while the same owner may claim again; claims survive a new ``Registry`` (a restart)
and release frees the directory; unreadable records are skipped; ``make_dirs`` refuses a symlink
that leads out before creating anything beyond it; ``unlink_inside`` never follows a symlinked
folder out and removes a symlink itself, not its target; ``remove_placed`` removes only the
manifest's and the staging plan's files and leaves (and reports) the rest.
"""

from __future__ import annotations

import os
import pathlib

import pytest

from model_agent import agent_disk, errors, manifest
from model_agent.download import staging
from model_agent.trust import confine, ownership


def test_claims_are_exclusive_and_survive_a_restart(tmp_path: pathlib.Path) -> None:
    state = tmp_path / "state"
    registry = ownership.Registry(state)
    registry.claim("/m/a", owner="ns.basemodel.a", uid="u1")
    registry.claim("/m/a", owner="ns.basemodel.a", uid="u1")  # idempotent
    for other in ("/m/a", "/m/a/sub", "/m"):
        with pytest.raises(errors.PathConflictError, match=r"ns\.basemodel\.a"):
            registry.claim(other, owner="ns.basemodel.b")
    registry.claim("/m/ab", owner="ns.basemodel.b")
    (state / "owners" / "junk.json").write_text("{not json")
    again = ownership.Registry(state)  # a restart
    assert {c.owner for c in again.load()} == {"ns.basemodel.a", "ns.basemodel.b"}
    with pytest.raises(errors.PathConflictError):
        again.claim("/m/a/sub", owner="ns.basemodel.c")
    assert again.holder("/m/a/sub") == ownership.Claim("/m/a", "ns.basemodel.a", "u1")
    assert [c.path for c in again.release("ns.basemodel.a")] == ["/m/a"]
    again.claim("/m/a/sub", owner="ns.basemodel.c")
    assert ownership.Registry(state).holder("/m/a") is not None  # c's /m/a/sub overlaps


def test_make_dirs_checks_each_component_before_creating_the_next(tmp_path: pathlib.Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(errors.UnsafePathError, match="outside"):
        confine.make_dirs(root, root / "link" / "a" / "b")
    assert os.listdir(outside) == []
    (root / "inner").symlink_to(root)  # a symlink that stays inside is followed
    assert confine.make_dirs(root, root / "inner" / "x").is_dir()
    assert (root / "x").is_dir()


def test_unlink_inside_never_follows_a_symlink_out(tmp_path: pathlib.Path) -> None:
    root, outside = tmp_path / "model", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("v")
    (root / "sub").symlink_to(outside)
    (root / "file").symlink_to(outside / "victim")
    with pytest.raises(errors.UnsafePathError):
        confine.unlink_inside(root, "sub/victim", root=root)
    assert confine.unlink_inside(root, "file", root=root)
    assert (outside / "victim").read_text() == "v"


def test_remove_placed_removes_only_what_the_agent_placed(tmp_path: pathlib.Path) -> None:
    root, state = tmp_path / "models", tmp_path / "state"
    destination = root / "m"
    (destination / "deep").mkdir(parents=True)
    for name in ("a.bin", "deep/b.bin", "unknown.txt", "partial.bin"):
        (destination / name).write_text(name)
    entries = tuple(
        manifest.Entry(n, os.stat(destination / n).st_size, 0, None)
        for n in ("a.bin", "deep/b.bin")
    )
    manifest.save(
        manifest.Manifest(
            destination=str(destination), uri="hf://o/r", request_key="k", revision="r",
            files=entries, owner="ns.basemodel.m",
        ),
        state_dir=state,
    )  # fmt: skip
    with staging.Staging(destination) as stage:
        stage.record_plan({"partial.bin"})
    left = agent_disk.remove_placed(destination, owner="ns.basemodel.m", state_dir=state, root=root)
    assert left == ["unknown.txt"]
    assert sorted(os.listdir(destination)) == ["unknown.txt"]
    assert manifest.load(destination, state_dir=state) is None


def test_remove_placed_keeps_files_another_model_placed(tmp_path: pathlib.Path) -> None:
    root, state = tmp_path / "models", tmp_path / "state"
    destination = root / "m"
    destination.mkdir(parents=True)
    (destination / "a.bin").write_text("a")
    manifest.save(
        manifest.Manifest(
            destination=str(destination), uri="hf://o/r", request_key="k", revision="r",
            files=(manifest.Entry("a.bin", 1, 0, None),), owner="other.basemodel.x",
        ),
        state_dir=state,
    )  # fmt: skip
    agent_disk.remove_placed(destination, owner="ns.basemodel.m", state_dir=state, root=root)
    assert (destination / "a.bin").read_text() == "a"
