"""The disk scan: what lies under the models root (and ``--temp-dir``), measured, and the
removal of what a cleanup policy chose.

``survey`` walks the tree once without following a symlink: a directory a model points at is
measured (its bytes, staging excluded) and its own staging area noted; a directory holding a
model below it is walked into; an update's ``.<name>.model-agent-next`` (or ``-old``) and a
destination that only holds a download's staging are partial downloads; any other directory
is an orphan. The agent's state directory and the temp dir are never walked as models.

``remove`` deletes one chosen directory only if it is still a real directory (not a symlink)
whose resolved parent lies under the given root, and, for a partial download, only while it
holds the staging lock (a pull that starts meanwhile fails with Busy and retries).

Blocking throughout: call from a thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import pathlib
import shutil
import stat
from collections.abc import Iterable, Iterator

from model_agent.disk import policy
from model_agent.download import staging

__all__ = ["SIBLING_SUFFIXES", "Survey", "disk_usage", "inside", "remove", "survey"]

#: Names ``agent_disk`` gives an update's next version and a parked old one.
SIBLING_SUFFIXES = (".model-agent-next", ".model-agent-old")
_LOCK = ".lock"


@dataclasses.dataclass
class Survey:
    areas: list[policy.Area] = dataclasses.field(default_factory=list)
    orphans: list[policy.Orphan] = dataclasses.field(default_factory=list)
    models: dict[str, int] = dataclasses.field(default_factory=dict)  # path -> bytes


def _real_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _files(path: str, exclude: frozenset[str]) -> Iterator[os.stat_result]:
    """lstat of ``path`` and of everything below it (symlinks not followed; top-level names
    in ``exclude`` skipped)."""
    with contextlib.suppress(OSError):
        yield os.lstat(path)
    for top, dirs, names in os.walk(path, followlinks=False, onerror=None):
        if top == path:
            dirs[:] = [d for d in dirs if d not in exclude]
            names = [n for n in names if n not in exclude]
        for name in (*dirs, *names):
            with contextlib.suppress(OSError):
                yield os.lstat(os.path.join(top, name))


def disk_usage(path: str, *, exclude: Iterable[str] = ()) -> tuple[int, float]:
    """(bytes allocated on disk, newest mtime) of the tree at ``path``; hard links once."""
    seen: set[tuple[int, int]] = set()
    total, newest = 0, 0.0
    for st in _files(path, frozenset(exclude)):
        newest = max(newest, st.st_mtime)
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        if not stat.S_ISDIR(st.st_mode):
            total += st.st_blocks * 512
    return total, newest


def _locked(staging_dir: str) -> bool:
    """Whether a pull holds the staging lock in ``staging_dir``."""
    try:
        fd = os.open(os.path.join(staging_dir, _LOCK), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: treat as in use
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def staging_dir_of(area: str) -> str:
    """The directory whose ``.lock`` a pull into ``area`` holds."""
    inner = os.path.join(area, staging.STAGING_NAME)
    return inner if _real_dir(inner) else area


def _area(path: str, destination: str) -> policy.Area:
    nbytes, newest = disk_usage(path)
    return policy.Area(path, destination, nbytes, newest, _locked(staging_dir_of(path)))


def _sibling_base(name: str) -> str | None:
    for suffix in SIBLING_SUFFIXES:
        if name.startswith(".") and name.endswith(suffix) and len(name) > len(suffix) + 1:
            return name[1 : -len(suffix)]
    return None


def survey(
    root: str,
    *,
    claims: policy.Claims,
    skip: Iterable[str] = (),
    temp_dir: str | None = None,
) -> Survey:
    """See the module docstring. ``skip``: directories never walked (the state dir)."""
    found = Survey()
    skipped = {os.path.abspath(p) for p in skip}
    if temp_dir:
        skipped.add(os.path.abspath(temp_dir))
    _walk(os.path.abspath(root), claims, skipped, found)
    for path in sorted(claims.pointed):
        if path not in found.models and _real_dir(path) and inside(path, root):
            found.models[path] = disk_usage(path, exclude=(staging.STAGING_NAME,))[0]
    if temp_dir and _real_dir(temp_dir):
        _temp_areas(temp_dir, claims, found)
    return found


def inside(path: str, root: str) -> bool:
    """Whether ``path`` lies strictly below ``root`` (no I/O)."""
    return path.startswith(os.path.abspath(root).rstrip("/") + "/")


def _walk(directory: str, claims: policy.Claims, skipped: set[str], found: Survey) -> None:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        path = entry.path
        if path in skipped or entry.name == staging.STAGING_NAME:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue  # files and symlinks are never walked, counted or removed
        except OSError:
            continue
        if path in claims.pointed:
            found.models[path] = disk_usage(path, exclude=(staging.STAGING_NAME,))[0]
            own = os.path.join(path, staging.STAGING_NAME)
            if _real_dir(own):
                found.areas.append(_area(own, path))
            continue
        if claims.holds_below(path):
            _walk(path, claims, skipped, found)
            continue
        base = _sibling_base(entry.name)
        if base is not None:
            found.areas.append(_area(path, os.path.join(directory, base)))
        elif _real_dir(os.path.join(path, staging.STAGING_NAME)):
            found.areas.append(_area(path, path))
        else:
            found.orphans.append(policy.Orphan(path, disk_usage(path)[0]))


def _temp_areas(temp_dir: str, claims: policy.Claims, found: Survey) -> None:
    """Staging directories in ``--temp-dir``, each matched to its destination by name."""
    owners = {
        staging.Staging(pathlib.Path(p), temp_dir=pathlib.Path(temp_dir)).root.name: p
        for p in claims.pointed
    }
    try:
        entries = sorted(os.scandir(temp_dir), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        with contextlib.suppress(OSError):
            if entry.name.startswith("model-agent-") and entry.is_dir(follow_symlinks=False):
                found.areas.append(_area(entry.path, owners.get(entry.name, "")))


def remove(path: str, *, root: str) -> bool:
    """Delete the directory ``path`` under ``root`` (see the module docstring); False when
    it was not removed (gone, a symlink, outside, or a pull holds it)."""
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            return False
    except OSError:
        return False
    real_root = os.path.realpath(root)
    parent = os.path.realpath(os.path.dirname(path))
    if not (parent + "/").startswith(real_root.rstrip("/") + "/") or parent == "/":
        return False
    target = os.path.join(parent, os.path.basename(path))
    if target == real_root or os.path.realpath(target) != target:
        return False
    lock_dir = staging_dir_of(target)
    fd: int | None = None
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(os.path.join(lock_dir, _LOCK), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        shutil.rmtree(target)
        return True
    except FileNotFoundError:
        return False
    finally:
        if fd is not None:
            os.close(fd)
