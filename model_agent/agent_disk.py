"""What the agent keeps on disk about the models it placed, and how it moves them.

Ownership records: one small JSON file per model at
``<state_dir>/agent/<digest of the ConfigMap key>.json`` (kind, namespace, name, uid, URI,
path, whether the agent owns the files). Written before the first byte of a download, so a
model deleted while the agent was down can still be cleaned up after a restart; removed when
the model is deleted.

Placement helpers: the sibling directory an update downloads into, the one-rename switch
(``renameat2(RENAME_EXCHANGE)`` on Linux; a two-rename fallback elsewhere), moving a
completion manifest with its files, and ``remove_placed``: removal of exactly what the agent
placed for one model (its completion manifest's files and its staging area's planned files),
never through a symlink out, leaving and logging anything else. Blocking: call from a thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import errno
import hashlib
import json
import logging
import os
import pathlib
import secrets
import shutil
import time
from typing import Any

from model_agent import errors, manifest, planning
from model_agent.download import staging
from model_agent.trust import confine, paths

log = logging.getLogger("model_agent.agent")

__all__ = [
    "Record",
    "delete_record",
    "exchange",
    "load_records",
    "relocate_manifest",
    "remove_placed",
    "remove_tree",
    "save_record",
    "sibling",
]

_RECORDS = "agent"
_MAX_RECORD = 64 * 1024
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclasses.dataclass(frozen=True, kw_only=True)
class Record:
    kind: str
    namespace: str
    name: str
    uid: str
    config_key: str
    label_key: str
    uri: str
    path: str
    owned: bool
    reserve: bool = False


def _record_path(state_dir: pathlib.Path, config_key: str) -> pathlib.Path:
    digest = hashlib.sha256(config_key.encode()).hexdigest()[:32]
    return state_dir / _RECORDS / f"{digest}.json"


def save_record(state_dir: pathlib.Path, record: Record) -> None:
    path = _record_path(state_dir, record.config_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(json.dumps(dataclasses.asdict(record)), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def delete_record(state_dir: pathlib.Path, config_key: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        _record_path(state_dir, config_key).unlink()


def load_records(state_dir: pathlib.Path) -> list[Record]:
    """Every readable record (unreadable ones are skipped)."""
    folder = state_dir / _RECORDS
    found: list[Record] = []
    if not folder.is_dir():
        return found
    fields = {f.name for f in dataclasses.fields(Record)}
    for path in sorted(folder.glob("*.json")):
        try:
            if path.stat().st_size > _MAX_RECORD:
                continue
            raw: Any = json.loads(path.read_text(encoding="utf-8"))
            found.append(Record(**{k: v for k, v in raw.items() if k in fields}))
        except (OSError, ValueError, TypeError, AttributeError):
            continue
    return found


def sibling(path: pathlib.Path) -> pathlib.Path:
    """Where the next version of ``path`` is downloaded: beside it, same filesystem."""
    return path.with_name(f".{path.name}.model-agent-next")


def _renameat2(a: pathlib.Path, b: pathlib.Path) -> bool:
    """Atomically swap two paths; False where the kernel or filesystem cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    function = getattr(libc, "renameat2", None)
    if function is None:
        return False
    result = function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a))


def exchange(new: pathlib.Path, current: pathlib.Path) -> None:
    """Make ``new`` appear at ``current`` in one rename; the old version ends up at ``new``
    (the caller removes it). Without RENAME_EXCHANGE: two renames (a brief gap)."""
    if not current.exists():
        os.rename(new, current)
        return
    if _renameat2(new, current):
        return
    parked = current.with_name(f".{current.name}.model-agent-old")
    remove_tree(parked)
    os.rename(current, parked)
    os.rename(new, current)
    os.rename(parked, new)


def relocate_manifest(
    source: pathlib.Path, target: pathlib.Path, *, state_dir: pathlib.Path, config_key: str
) -> dict[str, Any] | None:
    """After ``exchange``: the manifest of ``source`` now describes ``target``. Moves it,
    points ``artifact.parentPath`` at ``target`` and returns the stored config."""
    stored = manifest.load(source, state_dir=state_dir)
    manifest.forget(target, state_dir=state_dir)
    if stored is None:
        return None
    config = dict(stored.config) if stored.config is not None else None
    if config is not None:
        artifact = dict(config.get("artifact") or {})
        artifact["parentPath"] = {config_key: str(target)}
        config["artifact"] = artifact
    manifest.save(
        dataclasses.replace(stored, destination=os.path.abspath(target), config=config),
        state_dir=state_dir,
    )
    manifest.forget(source, state_dir=state_dir)
    return config


def remove_tree(path: pathlib.Path, *, attempts: int = 10) -> None:
    """Remove a directory tree (or a file); missing is fine. A file that appears while the
    tree is removed (a cancelled download's last write) makes it try again."""
    for attempt in range(attempts):
        try:
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.exists():
                shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if attempt + 1 >= attempts:
                raise
            time.sleep(0.05)


def remove_placed(
    destination: pathlib.Path,
    *,
    owner: str,
    state_dir: pathlib.Path,
    root: pathlib.Path,
    temp_dir: pathlib.Path | None = None,
) -> list[str]:
    """Remove what the agent placed at ``destination`` for ``owner``: the files of its
    completion manifest (when the manifest is ``owner``'s or has no owner) and the files its
    staging areas planned, then the staging areas and the directories left empty. Anything
    else stays and is logged; returns the names left behind (at most 20)."""
    if os.path.islink(destination):
        log.warning("model %s: %s is a symlink; nothing removed through it", owner, destination)
        return [str(destination)]
    if not os.path.lexists(destination):
        manifest.forget(destination, state_dir=state_dir)
        _remove_stages(destination, temp_dir)
        return []
    if not paths.inside(confine.resolve(destination), confine.resolve(root)):
        log.warning("model %s: %s resolves outside %s; nothing removed", owner, destination, root)
        return [str(destination)]
    names: list[str] = []
    stored = manifest.load(destination, state_dir=state_dir)
    if stored is not None and stored.owner not in (None, owner):
        log.warning(
            "model %s: the files at %s were placed for %s; kept", owner, destination, stored.owner
        )
    elif stored is not None:
        names.extend(e.path for e in stored.files)
    stages = [staging.Staging(destination)]
    if temp_dir is not None:
        stages.append(staging.Staging(destination, temp_dir=temp_dir))
    for stage in stages:
        names.extend(stage.planned())
    removed = []
    for name in sorted(set(names)):
        try:
            relative = planning.safe_relative_path(name)
            if confine.unlink_inside(destination, relative, root=destination):
                removed.append(relative)
        except (OSError, errors.UnsafePathError) as exc:
            log.warning("model %s: kept %s: %s", owner, name, exc)
    _remove_stages(destination, temp_dir)
    manifest.forget(destination, state_dir=state_dir)
    confine.prune_empty(destination, removed, root=destination, itself=True)
    leftovers = _leftovers(destination)
    if leftovers:
        log.warning(
            "model %s: left %s in place (not placed by the agent for this model): %s",
            owner,
            destination,
            ", ".join(leftovers),
        )
    return leftovers


def _remove_stages(destination: pathlib.Path, temp_dir: pathlib.Path | None) -> None:
    with contextlib.suppress(OSError, errors.UnsafePathError):
        staging.Staging(destination).remove()
    if temp_dir is not None:
        with contextlib.suppress(OSError, errors.UnsafePathError):
            staging.Staging(destination, temp_dir=temp_dir).remove()


def _leftovers(destination: pathlib.Path, limit: int = 20) -> list[str]:
    found: list[str] = []
    if os.path.islink(destination) or not os.path.isdir(destination):
        return found
    for folder, dirs, files in os.walk(destination):
        links = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
        for name in sorted(files + links):
            found.append(os.path.relpath(os.path.join(folder, name), destination))
            if len(found) >= limit:
                return found
    return found or sorted(os.listdir(destination))[:limit]
