"""Pure path relations on already-resolved absolute POSIX paths.

``overlaps``: equal, or one inside the other (two models cannot both place files there).
``inside``: ``path`` is ``root`` or below it. Component-wise, so ``/m/a`` and ``/m/ab`` are
unrelated. Resolving symlinks is the caller's job (``confine.resolve``).
"""

from __future__ import annotations

import posixpath

__all__ = ["inside", "overlaps"]


def _norm(path: str) -> str:
    return posixpath.normpath(path) if path else path


def inside(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or lies under it."""
    path, root = _norm(path), _norm(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def overlaps(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are the same directory or one contains the other."""
    return inside(a, b) or inside(b, a)
