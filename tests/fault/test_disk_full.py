"""A models filesystem that fills up under the agent (a real 8 MiB tmpfs, mounted when the
test runs as root; skipped with the reason otherwise).

Aspects: a model whose files do not fit is refused before any byte is fetched, ``Failed`` with
reason NoSpace; a model whose disk fills up while it downloads (another writer takes the space
mid-pull) ends ``Failed`` with reason NoSpace and "no space" in the message, its temporary
files are removed (no staging directory, no ``.part`` file anywhere on the filesystem) and no
file of it reaches a final path half-written; a model already Ready on the same filesystem keeps
its entry, its label, its files and their bytes untouched throughout; the agent keeps serving:
once space is freed, a spec change retries and the model becomes Ready.
"""

from __future__ import annotations

import os
import pathlib

import pytest

from tests.fault import support
from tests.fault.agents import Harness
from tests.fault.smallfs import SIZE, small_fs, world  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(120)


def snapshot(root: pathlib.Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        name: (path.stat().st_size, path.stat().st_mtime_ns, path.read_bytes())
        for name, path in support.final_files(root).items()
    }


def part_files(root: pathlib.Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.name.endswith((".part", ".incomplete")))


async def test_a_filesystem_that_fills_up_fails_the_model_cleans_up_and_spares_the_others(
    world: Harness, hf_hub, small_fs: pathlib.Path, tmp_path: pathlib.Path, request
) -> None:
    rng = support.seeded(request.node.name)
    small = support.model_files(tmp_path / "small")
    hf_hub.add_repo("org/small", small)
    big = support.model_files(
        tmp_path / "big",
        extra={f"weights-{i}.dat": support.patterned(1_500_000, rng) for i in range(3)},
    )
    hf_hub.add_repo("org/big", big)
    huge = support.model_files(tmp_path / "huge", extra={"weights.dat": b"h" * (SIZE + 1)})
    hf_hub.add_repo("org/huge", huge)

    instance = await world.start(max_attempts=2)
    world.create(instance, support.model("BaseModel", "small", "hf://org/small"))
    assert await world.settles("default.basemodel.small", "Ready", "Failed") == "Ready"
    small_root = world.root / "default.basemodel.small"
    before = snapshot(small_root)
    entry_before = world.view.data()["default.basemodel.small"]

    # refused up front: nothing of it is fetched
    world.create(instance, support.model("BaseModel", "huge", "hf://org/huge"))
    assert await world.settles("default.basemodel.huge", "Ready", "Failed") == "Failed"
    assert world.view.entry("default.basemodel.huge")["reason"] == "NoSpace"
    assert hf_hub.bytes_served("*weights.dat") == 0
    assert not (world.root / "default.basemodel.huge" / support.STAGING).exists()

    # the disk fills up mid-download
    hf_hub.faults.throttle(1_000_000)
    world.create(instance, support.model("BaseModel", "big", "hf://org/big"))
    await world.until(lambda: hf_hub.bytes_served("*weights-*") > 200_000)
    filler = small_fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)  # another writer takes the rest
    try:
        while True:
            os.write(fd, b"f" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)
    hf_hub.faults.throttle(None)
    assert await world.settles("default.basemodel.big", "Ready", "Failed", deadline=60) == "Failed"
    entry = world.view.entry("default.basemodel.big")
    assert entry["reason"] == "NoSpace", entry
    assert "no space" in entry["message"].lower(), entry
    big_root = world.root / "default.basemodel.big"
    await world.until(lambda: not (big_root / support.STAGING).exists())
    assert part_files(small_fs) == []
    assert support.corrupt_final_files(big_root, big) == []

    # the Ready model never noticed
    assert world.view.data()["default.basemodel.small"] == entry_before
    assert world.view.label("default.basemodel.small") == "Ready"
    assert snapshot(small_root) == before

    # space freed and the spec touched: the model is pulled again and verified
    filler.unlink()
    world.kube.patch(
        "basemodels",
        "big",
        {"spec": {"storage": {"parameters": {"retry": "1"}}}},
        "default",
    )
    instance.submit("MODIFIED", world.kube.get("basemodels", "big", "default"))
    await world.until(lambda: world.view.settled("default.basemodel.big", "Ready"), deadline=60)
    assert support.corrupt_final_files(big_root, big) == []
    assert set(support.final_files(big_root)) == set(big)
