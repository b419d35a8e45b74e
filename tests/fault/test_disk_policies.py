"""The node's disk as a managed resource, on a real 8 MiB tmpfs (mounted when the test runs
as root, as CI does; skipped with the reason otherwise).

Aspects: three models whose sum does not fit start at once: two are admitted and become
Ready, the third waits (``Updating`` with reason ``WaitingForDiskSpace`` and a message naming
the bytes; not a byte staged; the wait gauge set; the lane watchdog leaves it alone), and
proceeds to Ready when one of the others is deleted, with no ENOSPC anywhere; a crash-left
partial download of a model deleted while the agent was down (and that no record claims) is
reported as partial bytes, kept while younger than ``--partial-ttl`` and removed once older;
an orphan directory is reported (log line, gauges) and kept while ``--orphan-grace`` is off,
then removed when the admin enables it, while the Ready model's directory, a symlink under
the root and the file it points to outside the root stay untouched, and so does a directory
the path-ownership registry gives a model.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import time

import prometheus_client as prom
import pytest

from model_agent import metrics, spec
from tests.fault import support
from tests.fault.agents import Harness
from tests.fault.smallfs import SIZE, small_fs, world  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(120)
WEIGHTS = 3_000_000  # two models fit in 8 MiB, three do not


def gauge(recorder: metrics.Metrics, name: str) -> float:
    value = recorder.registry.get_sample_value(name)
    return 0.0 if value is None else value


def staged_parts(root: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in root.rglob("*.part")] if root.exists() else []


async def test_three_models_that_do_not_fit_together_take_turns(
    world: Harness, hf_hub, tmp_path: pathlib.Path, request, caplog
) -> None:
    rng = support.seeded(request.node.name)
    names = ("m1", "m2", "m3")
    sources = {
        name: support.model_files(
            tmp_path / name, extra={"weights.dat": support.patterned(WEIGHTS, rng)}
        )
        for name in names
    }
    for name, files in sources.items():
        hf_hub.add_repo(f"org/{name}", files)
    hf_hub.faults.throttle(4_000_000)  # all three are decided while the first two still run
    recorder = metrics.Metrics(prom.CollectorRegistry())
    caplog.set_level(logging.INFO, logger="model_agent")
    instance = await world.start(recorder=recorder, stuck_after=2.0)
    for name in names:
        world.create(instance, support.model("BaseModel", name, f"hf://org/{name}"))
    keys = {name: f"default.basemodel.{name}" for name in names}

    def waiting() -> list[str]:
        return [
            name
            for name in names
            if (world.view.entry(keys[name]) or {}).get("reason") == "WaitingForDiskSpace"
        ]

    await world.until(lambda: len(waiting()) == 1)
    [third] = waiting()
    entry = world.view.entry(keys[third])
    assert entry["status"] == "Updating", entry
    assert "bytes needed" in entry["message"] and "available" in entry["message"], entry
    assert world.view.label(keys[third]) == "Updating"
    assert gauge(recorder, "model_agent_disk_waiting_downloads") == 1
    assert gauge(recorder, "model_agent_disk_promised_bytes") >= 2 * WEIGHTS

    first_two = [n for n in names if n != third]
    for name in first_two:
        assert await world.settles(keys[name], "Ready", "Failed", deadline=60) == "Ready"
    hf_hub.faults.throttle(None)
    await asyncio.sleep(3.0)  # longer than the watchdog's stuck_after
    # both done, and the third still does not fit in what they left
    assert world.view.status(keys[third]) == "Updating"
    assert staged_parts(world.root / keys[third]) == []
    restarted = [r.getMessage() for r in caplog.records if "made no progress" in r.getMessage()]
    assert not [m for m in restarted if keys[third] in m], restarted  # waiting is not stuck
    assert gauge(recorder, "model_agent_disk_waiting_downloads") == 1

    gone = first_two[0]
    stored = world.kube.get("basemodels", gone, "default")
    world.kube.delete("basemodels", gone, "default")
    instance.submit("DELETED", stored)
    assert await world.settles(keys[third], "Ready", "Failed", deadline=60) == "Ready"
    assert support.corrupt_final_files(world.root / keys[third], sources[third]) == []
    assert set(support.final_files(world.root / keys[third])) == set(sources[third])
    assert world.view.status(keys[first_two[1]]) == "Ready"
    assert not any(world.view.status(keys[n]) == "Failed" for n in names)
    assert gauge(recorder, "model_agent_disk_waiting_downloads") == 0
    assert gauge(recorder, "model_agent_disk_promised_bytes") == 0


def age(path: pathlib.Path, seconds: float) -> None:
    """Make every file and directory under ``path`` look last written ``seconds`` ago."""
    then = time.time() - seconds
    for item in [path, *path.rglob("*")]:
        os.utime(item, (then, then), follow_symlinks=False)


async def test_a_crash_left_partial_of_a_deleted_model_goes_after_its_ttl(
    world: Harness, hf_hub, tmp_path: pathlib.Path, request
) -> None:
    rng = support.seeded(request.node.name)
    files = support.model_files(
        tmp_path / "src", extra={"weights.dat": support.patterned(WEIGHTS, rng)}
    )
    hf_hub.add_repo("org/left", files)
    hf_hub.faults.throttle(500_000)
    first = await world.start(disk_scan_interval="off")
    world.create(first, support.model("BaseModel", "left", "hf://org/left"))
    await world.until(lambda: hf_hub.bytes_served() > 300_000)
    await world.stop_all()  # the agent goes away mid-download: the partial stays for resume
    hf_hub.faults.throttle(None)
    destination = world.root / "default.basemodel.left"
    assert (destination / support.STAGING).is_dir() and staged_parts(destination)
    # Deleted while no agent ran, and no record claims it any more (as after a removal that
    # failed: the record goes with the key) or never did (an older agent's leftovers).
    world.kube.delete("basemodels", "left", "default")
    state = world.root / spec.STATE_DIR_NAME
    for record in [*(state / "agent").glob("*.json"), *(state / "owners").glob("*.json")]:
        record.unlink()

    recorder = metrics.Metrics(prom.CollectorRegistry())
    second = await world.start(
        recorder=recorder, partial_ttl="1h", disk_scan_interval="0.1", orphan_grace="0s"
    )
    assert second.janitor is not None
    await world.until(lambda: second.janitor is not None and second.janitor.rounds >= 3)
    assert gauge(recorder, "model_agent_disk_partial_bytes") > 0
    assert gauge(recorder, "model_agent_disk_orphan_directories") == 0  # a partial, not an orphan
    assert destination.is_dir() and staged_parts(destination)  # younger than its TTL: kept

    age(destination, 2 * 3600)
    await world.until(lambda: not destination.exists())
    removed = recorder.registry.get_sample_value(
        "model_agent_disk_cleanup_removed_total", {"kind": "partial"}
    )
    assert removed == 1
    rounds = second.janitor.rounds
    await world.until(lambda: second.janitor is not None and second.janitor.rounds > rounds + 1)
    assert gauge(recorder, "model_agent_disk_partial_bytes") == 0


async def test_an_orphan_is_reported_and_removed_only_when_enabled(
    world: Harness, hf_hub, tmp_path: pathlib.Path, caplog
) -> None:
    hf_hub.add_repo("org/kept", support.model_files(tmp_path / "src"))
    stray = world.root / "stray"
    (stray / "sub").mkdir(parents=True)
    (stray / "sub" / "weights.bin").write_bytes(b"s" * 200_000)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(b"p" * 1000)
    (stray / "escape").symlink_to(outside)  # inside an orphan: unlinked, never followed
    (world.root / "link").symlink_to(outside)  # a symlink under the root: never touched

    recorder = metrics.Metrics(prom.CollectorRegistry())
    caplog.set_level(logging.WARNING, logger="model_agent.disk")
    instance = await world.start(recorder=recorder, disk_scan_interval="0.1")
    world.create(instance, support.model("BaseModel", "kept", "hf://org/kept"))
    key = "default.basemodel.kept"
    assert await world.settles(key, "Ready", "Failed") == "Ready"
    assert instance.janitor is not None
    held = world.root / "held-by-kept"  # a directory the ownership registry gives the model
    (held / "f").parent.mkdir()
    (held / "f").write_bytes(b"h" * 1000)
    instance.work.owners.claim(await asyncio.to_thread(os.path.realpath, held), owner=key)
    rounds = instance.janitor.rounds
    await world.until(lambda: instance.janitor is not None and instance.janitor.rounds > rounds + 3)

    reports = [r.getMessage() for r in caplog.records if "orphan directory" in r.getMessage()]
    assert len(reports) == 1 and str(stray) in reports[0], reports
    assert gauge(recorder, "model_agent_disk_orphan_directories") == 1
    assert gauge(recorder, "model_agent_disk_orphan_bytes") >= 200_000
    assert (stray / "sub" / "weights.bin").exists()  # reported only: --orphan-grace is off
    labels = {"model_type": "BaseModel", "namespace": "default", "name": "kept"}
    assert recorder.registry.get_sample_value("model_agent_model_disk_bytes", labels) > 0

    await world.stop_all()
    instance = await world.start(recorder=None, disk_scan_interval="0.1", orphan_grace="0s")
    await world.until(lambda: not stray.exists())
    assert (held / "f").exists()
    assert (outside / "precious").read_bytes() == b"p" * 1000
    assert (world.root / "link").is_symlink()
    assert world.view.settled(key, "Ready")
    assert set(support.final_files(world.root / key)) == set(hf_hub_files(tmp_path / "src"))


def hf_hub_files(folder: pathlib.Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file()}
