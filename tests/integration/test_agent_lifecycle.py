"""Agent lifecycle corner cases found in review, each against the fake API server and hub.

Aspects: a delete that keeps failing backs off exponentially like any other work (it was
retried about every 2 s forever); a model whose URI is switched to ``pvc://`` is no longer
this agent's, so its entry, label and files go as for an unselected model; a lane whose task
makes no progress for far longer than the stall timeout is restarted, with a log line naming
the model, and reported by the liveness probe until it moves again.
"""

from __future__ import annotations

import asyncio
import base64

from tests.integration.test_agent import basemodel, model_files, status_of, world  # noqa: F401

KEY = "default.basemodel.m"
LABEL = "models.ome.io/default.basemodel.m"


async def test_a_failing_delete_backs_off_exponentially(world, tmp_path):
    world.hub.add_repo("org/m", model_files(tmp_path))
    # one label attempt per try, so each failed delete is one quick failure of the lane
    instance = await world.start(retry_base=0.05, retry_max=60.0, node_label_retry=0)
    stored = world.create(instance, basemodel("m", "hf://org/m"))
    await world.until(lambda: status_of(world, KEY) == "Ready")
    world.kube.fail_next(1000, method="PATCH", path_contains="/nodes/")
    world.kube.delete("basemodels", "m", "default")
    instance.submit("DELETED", stored)
    lane = instance.lanes[("BaseModel", "default", "m")]
    await world.until(lambda: lane.attempts >= 4 and lane.retry is not None)
    loop = asyncio.get_running_loop()
    delay = lane.retry.when() - loop.time()
    # attempt n waits base * 2**(n-1) with at most 25 % jitter either way
    assert delay > 0.05 * 2 ** (lane.attempts - 1) * 0.75 - 0.1, (lane.attempts, delay)
    world.kube.clear_faults()  # the API server recovers: the delete completes
    await world.until(lambda: world.entry(KEY) is None, deadline=30.0)


async def test_switching_a_model_to_pvc_removes_what_the_old_uri_placed(world, tmp_path):
    world.hub.add_repo("org/m", model_files(tmp_path))
    instance = await world.start()
    stored = world.create(instance, basemodel("m", "hf://org/m"))
    await world.until(lambda: status_of(world, KEY) == "Ready")
    assert (world.root / KEY / "config.json").is_file()
    await world.until(lambda: world.kube.get("basemodels", "m", "default")["spec"].get("modelType"))
    stored = world.kube.get("basemodels", "m", "default")  # the spec write-back changed it
    stored["spec"]["storage"]["storageUri"] = "pvc://claim/llama"
    updated = world.kube.replace(stored)
    instance.submit("MODIFIED", updated)
    await world.until(lambda: world.entry(KEY) is None and world.label(LABEL) is None)
    assert not (world.root / KEY).exists()


async def test_a_lane_stuck_on_a_request_that_never_answers_is_restarted(world, tmp_path, caplog):
    world.hub.add_repo("org/m", model_files(tmp_path))
    world.kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hf-token", "namespace": "default"},
            "data": {"token": base64.b64encode(b"hf_sometoken12").decode()},
        }
    )
    # The first read of the Secret hangs far past the watchdog's limit; the retry answers.
    world.kube.slow_next(1, 60.0, path_contains="/secrets/")
    instance = await world.start(stuck_after=1.0)
    world.create(instance, basemodel("m", "hf://org/m", key="hf-token"))
    await world.until(lambda: status_of(world, KEY) == "Ready")
    assert instance.health()["stuck_restarts"] == 1
    assert any(
        "default.basemodel.m" in r.getMessage() and "restarting it" in r.getMessage()
        for r in caplog.records
    )
