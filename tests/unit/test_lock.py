"""The lock files and their check (.ci/check_lock.py, run by .ci/run).

Aspects: the committed locks agree with pyproject.toml; a requirement added to pyproject.toml
without a new lock fails the check, naming the lock and the missing pin; a pin outside a
requirement's specifier fails it; every pin in the locks carries a hash (pip's
--require-hashes mode needs one for each); the image builds from a digest-pinned base and the
hashed runtime lock."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def check_lock():
    spec = importlib.util.spec_from_file_location("check_lock", ROOT / ".ci" / "check_lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def copy(tmp_path, check_lock):
    for name in ("pyproject.toml", "requirements.lock", "requirements-dev.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    check_lock.ROOT = tmp_path
    return tmp_path


def test_the_committed_locks_agree_with_pyproject(check_lock):
    assert check_lock.main() == 0


def test_a_new_requirement_without_a_new_lock_fails(copy, check_lock, capsys):
    text = (copy / "pyproject.toml").read_text()
    (copy / "pyproject.toml").write_text(
        text.replace('    "yarl>=1.9",\n', '    "yarl>=1.9",\n    "left-pad-py>=1",\n')
    )
    assert check_lock.main() == 1
    err = capsys.readouterr().err
    assert "requirements.lock was not made from today's pyproject.toml" in err
    assert "left-pad-py is not pinned" in err


def test_a_pin_outside_the_specifier_fails(copy, check_lock, capsys):
    lock = copy / "requirements.lock"
    lock.write_text(re.sub(r"^aiohttp==\S+", "aiohttp==3.0.0", lock.read_text(), flags=re.M))
    assert check_lock.main() == 1
    assert "aiohttp==3.0.0 does not satisfy aiohttp>=3.9" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["requirements.lock", "requirements-dev.lock"])
def test_every_pin_has_a_hash(name):
    blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / name).read_text())
    pinned = [b for b in blocks if re.match(r"^[A-Za-z0-9][^\n]*==", b)]
    assert pinned
    assert all("--hash=sha256:" in block for block in pinned)


def test_the_image_builds_from_a_digest_pinned_base_and_the_hashed_lock():
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.M)
    assert base and re.search(r"@sha256:[0-9a-f]{64}$", base.group(1)), "base not pinned"
    assert "--require-hashes -r requirements.lock" in text
    assert "--no-deps ." in text  # the package itself adds no unlocked dependency
