"""The agent's on-disk bookkeeping and placement, on real files.

Aspects: ownership records round-trip, skip unreadable files and are deleted; the update
switch swaps two directories in one rename (both contents survive, swapped); moving a
completion manifest makes the restart fast path see the new files at the final path; tree
removal tolerates missing paths and removes files and trees.
"""

from __future__ import annotations

import dataclasses
import sys
import threading

from model_agent import agent_disk, manifest


def record(**changes) -> agent_disk.Record:
    base = agent_disk.Record(
        kind="BaseModel",
        namespace="default",
        name="m",
        uid="u",
        config_key="default.basemodel.m",
        label_key="models.ome.io/default.basemodel.m",
        uri="hf://org/m",
        path="/mnt/models/default.basemodel.m",
        owned=True,
    )
    return dataclasses.replace(base, **changes)


def test_records_round_trip_and_unreadable_ones_are_skipped(tmp_path):
    agent_disk.save_record(tmp_path, record())
    agent_disk.save_record(
        tmp_path, record(config_key="clusterbasemodel.x", kind="ClusterBaseModel")
    )
    (tmp_path / "agent" / "garbage.json").write_text("{not json")
    found = {r.config_key: r for r in agent_disk.load_records(tmp_path)}
    assert found["default.basemodel.m"] == record()
    assert set(found) == {"default.basemodel.m", "clusterbasemodel.x"}
    agent_disk.delete_record(tmp_path, "default.basemodel.m")
    agent_disk.delete_record(tmp_path, "default.basemodel.m")  # twice is fine
    assert [r.config_key for r in agent_disk.load_records(tmp_path)] == ["clusterbasemodel.x"]


_RENAMES: list[tuple[str, ...]] | None = None


def _audit(event: str, args: tuple) -> None:
    if _RENAMES is not None and event in ("os.rename", "os.replace"):
        _RENAMES.append(tuple(str(a) for a in args[:2]))


sys.addaudithook(_audit)  # permanent for the process; records only while _RENAMES is a list


def test_exchange_swaps_two_directories_in_one_atomic_rename(tmp_path):
    """The switch is one renameat2(RENAME_EXCHANGE): no os.rename runs (the three-rename
    fallback would leave a moment with nothing at the path), and a reader polling the path
    from another thread never finds it missing."""
    global _RENAMES
    current, new = tmp_path / "model", agent_disk.sibling(tmp_path / "model")
    current.mkdir()
    (current / "version").write_text("old")
    new.mkdir()
    (new / "version").write_text("new")
    missing, done = [], threading.Event()

    def observe() -> None:
        while not done.is_set():
            try:
                (current / "version").read_text()
            except FileNotFoundError:
                missing.append(True)

    reader = threading.Thread(target=observe)
    reader.start()
    _RENAMES = []
    try:
        for _ in range(50):  # swap back and forth while the reader polls
            agent_disk.exchange(new, current)
        renames = list(_RENAMES)
    finally:
        _RENAMES = None
        done.set()
        reader.join()
    assert renames == []
    assert not missing
    assert (current / "version").read_text() == "old"  # an even number of swaps
    agent_disk.exchange(new, current)
    assert (current / "version").read_text() == "new"
    assert (new / "version").read_text() == "old"


def test_exchange_into_a_missing_path_is_a_plain_rename(tmp_path):
    new = tmp_path / ".next"
    new.mkdir()
    (new / "f").write_text("x")
    agent_disk.exchange(new, tmp_path / "model")
    assert (tmp_path / "model" / "f").read_text() == "x"
    assert not new.exists()


def test_a_moved_manifest_makes_the_final_path_complete(tmp_path):
    state = tmp_path / "state"
    staged = tmp_path / ".m.next"
    final = tmp_path / "m"
    staged.mkdir()
    (staged / "a.txt").write_text("hello")
    stat = (staged / "a.txt").stat()
    manifest.save(
        manifest.Manifest(
            destination=str(staged),
            uri="hf://org/m@v2",
            request_key="k",
            revision="v2",
            files=(manifest.Entry("a.txt", stat.st_size, stat.st_mtime_ns, None),),
            config={"artifact": {"sha": "v2", "parentPath": {"key": str(staged)}}},
        ),
        state_dir=state,
    )
    agent_disk.exchange(staged, final)
    config = agent_disk.relocate_manifest(staged, final, state_dir=state, config_key="key")
    assert config is not None and config["artifact"]["parentPath"] == {"key": str(final)}
    moved = manifest.load(final, state_dir=state)
    assert moved is not None and manifest.matches_disk(moved)
    assert manifest.load(staged, state_dir=state) is None


def test_remove_tree_handles_files_trees_and_missing_paths(tmp_path):
    tree = tmp_path / "tree" / "deep"
    tree.mkdir(parents=True)
    (tree / "f").write_text("x")
    single = tmp_path / "single"
    single.write_text("y")
    agent_disk.remove_tree(tmp_path / "tree")
    agent_disk.remove_tree(single)
    agent_disk.remove_tree(tmp_path / "missing")
    assert not (tmp_path / "tree").exists() and not single.exists()
