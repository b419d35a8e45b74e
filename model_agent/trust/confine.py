"""Paths that never lead out: resolve, create and remove inside a root, symlinks considered.

Every check is on resolved paths (``os.path.realpath``) and happens before anything is created:
``make_dirs`` walks the path one component at a time, checks each existing component resolves
inside the root, and only then creates the next one. ``unlink_inside`` removes a file only when
its directory resolves inside the root (a symlink at the final name is removed itself, never
followed). ``remove_tree_inside`` refuses a tree that is a symlink or resolves outside.

Blocking: call from a thread. Raises ``errors.UnsafePathError`` naming the path.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil

from model_agent import errors
from model_agent.trust import paths

__all__ = [
    "make_dirs",
    "prune_empty",
    "remove_tree_inside",
    "resolve",
    "unlink_inside",
    "within",
]


def resolve(path: os.PathLike[str] | str) -> str:
    """The absolute path with every existing symlink resolved."""
    return os.path.realpath(path)


def within(path: os.PathLike[str] | str, root: os.PathLike[str] | str, *, what: str = "") -> str:
    """``path`` resolved; ``UnsafePathError`` when it resolves outside ``root`` (resolved)."""
    real, real_root = resolve(path), resolve(root)
    if not paths.inside(real, real_root):
        label = what or str(path)
        raise errors.UnsafePathError(
            f"{label} resolves to {real}, outside {root} (a symlink leads out); refused"
        )
    return real


def make_dirs(root: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """Create ``target`` (a directory at or under ``root``) without following a symlink out
    of ``root``: each existing component is checked before the next is created."""
    relative = pathlib.PurePosixPath(
        os.path.relpath(os.path.abspath(target), os.path.abspath(root))
    )
    if relative.parts[:1] == ("..",):
        raise errors.UnsafePathError(f"{target} is not under {root}")
    within(root, root)  # root itself may be a symlink (the admin's choice)
    current = pathlib.Path(os.path.abspath(root))
    for part in relative.parts:
        if part == ".":
            continue
        current = current / part
        if not os.path.lexists(current):
            with contextlib.suppress(FileExistsError):
                os.mkdir(current)
        within(current, root)
        if not current.is_dir():
            raise errors.UnsafePathError(f"{current} exists and is not a directory")
    return current


def unlink_inside(directory: pathlib.Path, relative: str, *, root: pathlib.Path) -> bool:
    """Remove ``directory/relative`` when its parent resolves inside ``root``; True when
    removed, False when it was not there. A symlink at the final name is removed itself."""
    target = directory / relative
    within(target.parent, root, what=str(target))
    try:
        os.unlink(target)
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        raise errors.UnsafePathError(
            f"{target} is a directory, not a file the agent placed"
        ) from None
    return True


def prune_empty(
    directory: pathlib.Path, relatives: list[str], *, root: pathlib.Path, itself: bool = False
) -> None:
    """Remove the directories between each ``relative``'s parent and ``directory`` (and
    ``directory`` itself when ``itself``) that are now empty; non-empty ones stay."""
    candidates: set[pathlib.Path] = set()
    for relative in relatives:
        for parent in pathlib.PurePosixPath(relative).parents:
            if str(parent) != ".":
                candidates.add(directory / parent)
    if itself:
        candidates.add(directory)
    for candidate in sorted(candidates, key=lambda p: len(p.parts), reverse=True):
        if os.path.islink(candidate) or not os.path.isdir(candidate):
            continue
        if not paths.inside(resolve(candidate), resolve(root)):
            continue
        with contextlib.suppress(OSError):
            os.rmdir(candidate)


def remove_tree_inside(tree: pathlib.Path, *, root: pathlib.Path) -> None:
    """Remove a directory tree the agent owns entirely (a staging area), never through a
    symlink: a symlink at ``tree`` is removed itself; a tree resolving outside is refused."""
    if os.path.islink(tree):
        os.unlink(tree)
        return
    if not os.path.lexists(tree):
        return
    within(tree, root)
    shutil.rmtree(tree, ignore_errors=True)
