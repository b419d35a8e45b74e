"""No blocking file call runs on the event loop (DESIGN.md decision 14).

Aspects: inside every ``async def`` of ``model_agent/`` and ``handlers/`` (not in the plain
functions it defines or hands to a thread), no call opens, stats, renames, removes, creates,
lists, syncs or reads a file directly: those go through ``aiofiles`` or one thread call
(``asyncio.to_thread``, ``blocking.to_end``). The project's own blocking helpers (manifest
``load``/``save``, staging's directory walks, hashing, analysis) count as blocking too. The
scanner itself is checked on a planted example, so a broken scanner cannot pass silently.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

#: ``os.<name>(...)`` calls that touch the filesystem (``os.close`` does not block).
OS_CALLS = frozenset(
    "stat lstat open replace rename renames remove unlink makedirs mkdir rmdir removedirs "
    "listdir scandir walk statvfs fsync fdatasync truncate ftruncate access chmod chown utime "
    "link symlink readlink pread pwrite preadv pwritev read write sendfile copy_file_range".split()
)
OS_PATH_CALLS = frozenset(
    "exists lexists isfile isdir islink getsize getmtime realpath samefile ismount".split()
)
#: Method names that only ``pathlib.Path`` (or a file object) has, each a filesystem call.
PATH_METHODS = frozenset(
    "read_text write_text read_bytes write_bytes exists is_file is_dir is_symlink iterdir "
    "glob rglob stat lstat mkdir unlink rmdir touch symlink_to hardlink_to readlink "
    "samefile chmod".split()
)
#: Whole modules whose every call blocks on files.
BLOCKING_MODULES = frozenset({"shutil", "tempfile", "fcntl"})
#: The project's blocking helpers: ``module.function`` as called inside the package.
PROJECT_BLOCKING = frozenset(
    {
        "manifest.load",
        "manifest.save",
        "manifest.matches_disk",
        "manifest.forget",
        "pipeline.is_complete",
        "pipeline.load_config",
        "pipeline.forget",
        "inspection.inspect_directory",
        "verify.hash_file",
        "json.load",
        "json.dump",
    }
)
#: Methods of the project's classes that walk directories or read files (run in a thread).
PROJECT_METHODS = frozenset({"remove_stale", "resumable_bytes"})


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _blocking(call: ast.Call) -> str | None:
    name = _dotted(call.func)
    if name == "open":
        return name
    parts = name.split(".")
    if len(parts) == 2 and parts[0] == "os" and parts[1] in OS_CALLS:
        return name
    if len(parts) == 3 and parts[:2] == ["os", "path"] and parts[2] in OS_PATH_CALLS:
        return name
    if parts[0] in BLOCKING_MODULES and len(parts) == 2:
        return name
    if name in PROJECT_BLOCKING:
        return name
    if isinstance(call.func, ast.Attribute):
        attr = call.func.attr
        if attr in PATH_METHODS and not name.startswith(("aiofiles.", "self._idle")):
            return name
        if attr in PROJECT_METHODS:
            return name
    return None


class _Finder(ast.NodeVisitor):
    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[str] = []
        self._in_async: list[bool] = [False]

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._in_async.append(True)
        self.generic_visit(node)
        self._in_async.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._in_async.append(False)
        self.generic_visit(node)
        self._in_async.pop()

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._in_async.append(False)
        self.generic_visit(node)
        self._in_async.pop()

    def visit_Await(self, node: ast.Await) -> None:
        # ``await f(...)``: f is a coroutine function, not a blocking call; its arguments
        # are still checked.
        if isinstance(node.value, ast.Call):
            for child in [*node.value.args, *(k.value for k in node.value.keywords)]:
                self.visit(child)
            if isinstance(node.value.func, ast.Attribute):
                self.visit(node.value.func.value)
        else:
            self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if self._in_async[-1]:
            what = _blocking(node)
            if what is not None:
                self.found.append(f"{self.source}:{node.lineno}: {what}()")
        self.generic_visit(node)


def blocking_calls(text: str, source: str) -> list[str]:
    finder = _Finder(source)
    finder.visit(ast.parse(text))
    return finder.found


def test_the_scanner_finds_blocking_calls_in_a_coroutine_and_not_in_a_thread_helper() -> None:
    planted = """
async def bad(path, destination):
    data = open(path).read()
    os.replace(path, path)
    path.read_text()
    manifest.load(destination, state_dir=path)
    stage.remove_stale(set())

async def good(path):
    def in_thread():
        return open(path).read()
    await asyncio.to_thread(in_thread)
    await aiofiles.os.stat(path)
    await asyncio.to_thread(manifest.load, path)
    await stage.remove()
"""
    found = blocking_calls(planted, "planted.py")
    assert [line.split(": ", 1)[1] for line in found] == [
        "open()",
        "os.replace()",
        "path.read_text()",
        "manifest.load()",
        "stage.remove_stale()",
    ]


#: Modules whose coroutines run on a transfer thread's own event loop (``loops.Pool``), where a
#: blocking write or hash blocks that thread only, by design (decision 14).
TRANSFER_THREAD_MODULES = frozenset({"model_agent/download/transfer.py"})


@pytest.mark.parametrize("package", ["model_agent", "handlers"])
def test_no_coroutine_makes_a_blocking_file_call(package: str) -> None:
    found: list[str] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if str(path.relative_to(ROOT)) in TRANSFER_THREAD_MODULES:
            continue
        found += blocking_calls(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert found == []
