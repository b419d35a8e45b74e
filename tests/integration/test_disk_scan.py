"""The disk scan and the cleanup policies on real files in tmp_path.

Aspects: the survey sorts a models root into placed models (measured, staging excluded),
their own staging areas, abandoned destinations that only a download wrote, update siblings,
temp-dir staging matched to its destination, and orphans, never walking the state directory,
a symlink or a directory that holds a model below it; an area is locked while a pull holds
its staging lock; the partial policy removes only abandoned, unlocked, old areas and keeps a
wanted model's resume data whatever its age; orphans are removed only when a grace is set and
after it; ``remove`` refuses a symlink, a path outside the root, a path reached through a
symlinked parent, the root itself, and a staging area whose lock a pull holds (the attacks),
and removes a real orphan without following the symlinks inside it.
"""

from __future__ import annotations

import fcntl
import os
import pathlib

from model_agent.disk import policy, scan
from model_agent.download import staging


def write(path: pathlib.Path, nbytes: int = 10_000) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * nbytes)
    return path


def layout(root: pathlib.Path, temp: pathlib.Path) -> policy.Claims:
    write(root / "vendor" / "ready" / "model.safetensors", 50_000)
    write(root / "vendor" / "ready" / staging.STAGING_NAME / "abc.part", 7_000)
    write(root / "vendor" / ".ready.model-agent-next" / staging.STAGING_NAME / "d.part", 3_000)
    write(root / "vendor" / "stray" / "weights.bin", 20_000)
    write(root / "abandoned" / "config.json", 100)
    write(root / "abandoned" / staging.STAGING_NAME / "e.part", 5_000)
    write(root / ".model-agent" / "manifests" / "m.json", 100)
    write(root / "loose-file", 100)
    (root / "link").symlink_to(temp)
    wanted = str(root / "vendor" / "ready")
    write(staging.Staging(pathlib.Path(wanted), temp_dir=temp).root / "f.part", 1_000)
    write(temp / "model-agent-0123456789abcdef01234567" / "g.part", 2_000)
    return policy.Claims(pointed=frozenset({wanted}), kept=frozenset({wanted}))


def test_the_survey_sorts_models_partials_and_orphans(tmp_path: pathlib.Path) -> None:
    root, temp = tmp_path / "models", tmp_path / "temp"
    temp.mkdir()
    claims = layout(root, temp)
    found = scan.survey(str(root), claims=claims, skip=[root / ".model-agent"], temp_dir=str(temp))
    ready = str(root / "vendor" / "ready")
    assert set(found.models) == {ready}
    assert 50_000 <= found.models[ready] < 57_000  # its staging is not model bytes
    areas = {a.path: a for a in found.areas}
    assert set(areas) == {
        f"{ready}/{staging.STAGING_NAME}",
        str(root / "vendor" / ".ready.model-agent-next"),
        str(root / "abandoned"),
        str(staging.Staging(pathlib.Path(ready), temp_dir=temp).root),
        str(temp / "model-agent-0123456789abcdef01234567"),
    }
    assert areas[str(root / "vendor" / ".ready.model-agent-next")].destination == ready
    assert areas[str(temp / "model-agent-0123456789abcdef01234567")].destination == ""
    assert [o.path for o in found.orphans] == [str(root / "vendor" / "stray")]
    assert found.orphans[0].nbytes >= 20_000
    abandoned = {a.path for a in found.areas if policy.is_abandoned(a, claims)}
    assert abandoned == {
        str(root / "abandoned"),
        str(temp / "model-agent-0123456789abcdef01234567"),
    }


def test_an_area_a_pull_holds_is_locked_and_cannot_be_removed(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "models"
    write(root / "gone" / staging.STAGING_NAME / "a.part")
    lock = root / "gone" / staging.STAGING_NAME / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        [area] = scan.survey(str(root), claims=policy.Claims()).areas
        assert area.locked
        assert (
            policy.due_partials([area], policy.Claims(), now=area.last_write + 10**6, ttl=1) == []
        )
        assert not scan.remove(str(root / "gone"), root=str(root))
        assert (root / "gone").exists()
    finally:
        os.close(fd)
    [area] = scan.survey(str(root), claims=policy.Claims()).areas
    assert not area.locked
    assert scan.remove(str(root / "gone"), root=str(root))
    assert not (root / "gone").exists()


def test_the_partial_policy_waits_for_the_ttl_and_spares_wanted_models() -> None:
    old = policy.Area("/m/a", "/m/a", 10, last_write=1000.0, locked=False)
    wanted = policy.Area("/m/b/.model-agent-partial", "/m/b", 10, last_write=0.0, locked=False)
    claims = policy.Claims(pointed=frozenset({"/m/b"}), kept=frozenset({"/m/b"}))
    assert policy.due_partials([old, wanted], claims, now=1000.0 + 59, ttl=60) == []
    assert policy.due_partials([old, wanted], claims, now=1000.0 + 60, ttl=60) == [old]
    assert policy.due_partials([old, wanted], claims, now=10**9, ttl=None) == []


def test_orphans_go_only_after_the_grace_and_only_when_it_is_set() -> None:
    sightings = policy.Sightings()
    orphan = policy.Orphan("/m/stray", 5)
    assert sightings.update(["/m/stray"], now=100.0) == ["/m/stray"]
    assert sightings.update(["/m/stray"], now=150.0) == []
    assert policy.due_orphans([orphan], sightings.first, now=150.0, grace=None) == []
    assert policy.due_orphans([orphan], sightings.first, now=150.0, grace=60) == []
    assert policy.due_orphans([orphan], sightings.first, now=160.0, grace=60) == [orphan]
    sightings.update([], now=170.0)  # gone once: the count starts again
    sightings.update(["/m/stray"], now=200.0)
    assert policy.due_orphans([orphan], sightings.first, now=210.0, grace=60) == []


def test_remove_refuses_symlinks_outside_paths_and_the_root(tmp_path: pathlib.Path) -> None:
    root, outside = tmp_path / "models", tmp_path / "outside"
    write(outside / "victim" / "precious", 100)
    root.mkdir()
    (root / "to-outside").symlink_to(outside / "victim")
    (root / "parent-link").symlink_to(outside)
    assert not scan.remove(str(root / "to-outside"), root=str(root))  # a symlink
    assert not scan.remove(str(root / "parent-link" / "victim"), root=str(root))  # via a link
    assert not scan.remove(str(outside / "victim"), root=str(root))  # outside
    assert not scan.remove(str(root / ".." / "outside" / "victim"), root=str(root))
    assert not scan.remove(str(root), root=str(root))
    assert (outside / "victim" / "precious").exists() and (root / "to-outside").is_symlink()


def test_remove_deletes_an_orphan_without_following_its_symlinks(tmp_path: pathlib.Path) -> None:
    root, outside = tmp_path / "models", tmp_path / "outside"
    write(outside / "precious", 100)
    write(root / "stray" / "deep" / "file", 100)
    (root / "stray" / "deep" / "escape").symlink_to(outside)
    assert scan.remove(str(root / "stray"), root=str(root))
    assert not (root / "stray").exists()
    assert (outside / "precious").read_bytes() == b"x" * 100


def test_disk_usage_counts_hard_links_once_and_never_follows_symlinks(
    tmp_path: pathlib.Path,
) -> None:
    big = write(tmp_path / "elsewhere" / "big", 1_000_000)
    folder = tmp_path / "model"
    write(folder / "a", 40_000)
    os.link(folder / "a", folder / "b")
    (folder / "c").symlink_to(big)
    nbytes, newest = scan.disk_usage(str(folder))
    assert 40_000 <= nbytes < 100_000
    assert newest > 0
