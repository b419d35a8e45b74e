"""The NVML stand-in: ``fake_nvml`` makes pynvml see the GPUs a test describes.

A session fixture compiles ``tests/harness/nvml/fake_nvml.c`` with gcc into a temporary
``libnvidia-ml.so.1`` (SONAME ``libnvidia-ml.so.1``). ``fake_nvml(devices=..., init_error=...)``
then sets the environment the library reads at ``nvmlInit``, puts its directory first on
``LD_LIBRARY_PATH`` for subprocesses, and loads it into this process with ``RTLD_GLOBAL`` so
that pynvml's ``CDLL("libnvidia-ml.so.1")`` resolves to it by SONAME.

Once loaded in-process the stand-in stays loaded (pynvml caches its handle); without
``FAKE_NVML_DEVICES`` it answers ``NVML_ERROR_DRIVER_NOT_LOADED``, like a node without GPUs.
The "no NVML at all" case (``NVMLError_LibraryNotFound``) must run in a subprocess.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence

import pytest

SOURCE = pathlib.Path(__file__).parent / "nvml" / "fake_nvml.c"
SONAME = "libnvidia-ml.so.1"

#: Compute capability by model, so tests need not spell it out.
_CAPABILITY = (
    (r"B200|B100|GB200", (10, 0)),
    (r"H100|H200|H800|GH200|H20\b", (9, 0)),
    (r"L40S|L40|L4\b", (8, 9)),
    (r"A10G|A10\b|A40", (8, 6)),
    (r"A100|A800|A30", (8, 0)),
    (r"T4\b", (7, 5)),
    (r"V100", (7, 0)),
)

Device = tuple[str, int] | tuple[str, int, tuple[int, int] | None]


def default_capability(name: str) -> tuple[int, int] | None:
    for pattern, capability in _CAPABILITY:
        if re.search(pattern, name):
            return capability
    return None


def device_spec(devices: Sequence[Device]) -> str:
    """``FAKE_NVML_DEVICES`` for a device list: ``NAME:MIB[:MAJOR.MINOR],...``."""
    entries = []
    for device in devices:
        name, mib = device[0], device[1]
        if "," in name or ":" in name:
            raise ValueError(f"device name {name!r} may not contain ',' or ':'")
        capability = device[2] if len(device) > 2 else default_capability(name)
        entry = f"{name}:{mib}"
        if capability:
            entry += f":{capability[0]}.{capability[1]}"
        entries.append(entry)
    return ",".join(entries)


@dataclasses.dataclass
class FakeNvml:
    """The stand-in as one test configured it."""

    library: pathlib.Path
    env: dict[str, str]
    handle: ctypes.CDLL

    def active_inits(self) -> int:
        """nvmlInit calls not yet matched by nvmlShutdown (in this process)."""
        return int(self.handle.fakeNvmlActiveInits())


@pytest.fixture(scope="session")
def fake_nvml_library(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """``libnvidia-ml.so.1`` compiled from the C stand-in, in a session temp directory."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler to build the NVML stand-in")
    directory = tmp_path_factory.mktemp("fake-nvml")
    library = directory / SONAME
    subprocess.run(
        [
            compiler,
            "-shared",
            "-fPIC",
            "-O1",
            "-Wall",
            "-Werror",
            f"-Wl,-soname,{SONAME}",
            "-o",
            str(library),
            str(SOURCE),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return library


@pytest.fixture
def fake_nvml(
    fake_nvml_library: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., FakeNvml]]:
    """``fake_nvml(devices=[("NVIDIA H100 80GB HBM3", 81559)], init_error=None, *,
    driver_version=None, unsupported=())``: pynvml in this process and in subprocesses started
    with ``.env`` sees those devices. ``init_error`` is an NVML return code that init returns;
    ``unsupported`` names NVML functions that answer NVML_ERROR_NOT_SUPPORTED."""
    handle = ctypes.CDLL(str(fake_nvml_library), mode=ctypes.RTLD_GLOBAL)
    original_search = os.environ.get("LD_LIBRARY_PATH", "")

    def configure(
        devices: Sequence[Device] = (),
        init_error: int | None = None,
        *,
        driver_version: str | None = None,
        unsupported: Sequence[str] = (),
    ) -> FakeNvml:
        monkeypatch.setenv("FAKE_NVML_DEVICES", device_spec(devices))
        for name, value in (
            ("FAKE_NVML_INIT_ERROR", None if init_error is None else str(init_error)),
            ("FAKE_NVML_DRIVER_VERSION", driver_version),
            ("FAKE_NVML_UNSUPPORTED", ",".join(unsupported) or None),
        ):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        search = [str(fake_nvml_library.parent)]
        if original_search:
            search.append(original_search)
        monkeypatch.setenv("LD_LIBRARY_PATH", os.pathsep.join(search))
        return FakeNvml(library=fake_nvml_library, env=dict(os.environ), handle=handle)

    yield configure
    assert handle.fakeNvmlActiveInits() == 0, "nvmlInit without a matching nvmlShutdown"
