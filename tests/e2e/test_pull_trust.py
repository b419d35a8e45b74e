"""`model-agent pull --path DIR` into a directory it does not own alone (docs/security.md).

Aspects: files already in DIR that the model does not name survive a pull and a re-pull of a
revision that dropped a file (only the dropped file, which the earlier pull placed, goes); a
folder symlink planted in DIR that leads out makes the pull fail naming the file, and nothing
is written outside; a file symlink planted at a model file's name is replaced, its target kept.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.harness import hub, modelfiles

pytestmark = pytest.mark.timeout(120)
REPO = "org/model"


@pytest.fixture
def local_hub() -> Iterator[hub.LocalHub]:
    with hub.LocalHub().serve_in_thread() as server:
        yield server


def pull(
    local_hub: hub.LocalHub, dest: pathlib.Path, tmp_path: pathlib.Path, revision: str = "main"
) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable, "-m", "model_agent.cli", "pull", f"hf://{REPO}@{revision}",
        "--path", str(dest),
        "--param", f"endpoint={local_hub.endpoint}",
    ]  # fmt: skip
    env = {**os.environ, "MODEL_AGENT_STATE_DIR": str(tmp_path / "state")}
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, check=False)


def test_pull_keeps_unrelated_files_and_removes_only_what_it_placed(
    local_hub: hub.LocalHub, tmp_path: pathlib.Path
) -> None:
    files = modelfiles.tiny_llama_files(tmp_path / "src", extra={"extra.txt": b"e" * 32})
    first_sha = local_hub.add_repo(REPO, files)
    dest = tmp_path / "dest"
    (dest / "mine").mkdir(parents=True)
    (dest / "notes.txt").write_text("mine")
    (dest / "mine" / "keep.txt").write_text("mine too")
    first = pull(local_hub, dest, tmp_path, first_sha)
    assert first.returncode == 0, first.stderr
    assert (dest / "extra.txt").read_bytes() == b"e" * 32
    second_sha = local_hub.add_repo(REPO, {k: v for k, v in files.items() if k != "extra.txt"})
    second = pull(local_hub, dest, tmp_path, second_sha)
    assert second.returncode == 0, second.stderr
    assert not (dest / "extra.txt").exists()
    assert (dest / "notes.txt").read_text() == "mine"
    assert (dest / "mine" / "keep.txt").read_text() == "mine too"
    assert sorted(os.listdir(dest)) == sorted([*files.keys() - {"extra.txt"}, "mine", "notes.txt"])


def test_a_planted_symlink_never_leads_a_pull_out_of_its_directory(
    local_hub: hub.LocalHub, tmp_path: pathlib.Path
) -> None:
    files = modelfiles.tiny_llama_files(tmp_path / "src", extra={"sub/x.txt": b"x" * 32})
    local_hub.add_repo(REPO, files)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.json").write_text("victim")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "config.json").symlink_to(outside / "victim.json")
    (dest / "sub").symlink_to(outside)
    result = pull(local_hub, dest, tmp_path)
    assert result.returncode != 0
    assert "sub/x.txt" in result.stderr and "outside" in result.stderr, result.stderr
    assert sorted(os.listdir(outside)) == ["victim.json"]
    assert (outside / "victim.json").read_text() == "victim"
    # Without the folder symlink the pull completes; the file symlink is replaced, not followed.
    (dest / "sub").unlink()
    result = pull(local_hub, dest, tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (dest / "config.json").is_symlink()
    assert (dest / "config.json").read_bytes() == files["config.json"]
    assert (outside / "victim.json").read_text() == "victim"
