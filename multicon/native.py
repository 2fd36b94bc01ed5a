"""multicon's C kernels: compiled with the system's C compiler on first use, loaded with ctypes.

Nothing is built at install time and nothing but a C compiler is needed (``cc``, or ``$CC``):
the shared library is compiled once per source, compiler and CPU into a cache folder
(``$MULTICON_CACHE``, else ``$XDG_CACHE_HOME/multicon``, else ``~/.cache/multicon``) and written
atomically, so processes that start together never load a half-written file. ``-march=native``
lets the compiler use the CPU's vector units; the CPU's flags are part of the cache key, so a
cache shared between different machines never hands one a library it cannot run. OpenMP is used
when the compiler has it, else the kernels run on one thread.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

SOURCES = Path(__file__).resolve().parent / "csrc"
FLAGS = ["-O3", "-march=native", "-shared", "-fPIC"]


class NativeUnavailableError(RuntimeError):
    """A C kernel could not be compiled or loaded here (no compiler, or it failed)."""


def cache_dir() -> Path:
    if os.environ.get("MULTICON_CACHE"):
        return Path(os.environ["MULTICON_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "multicon"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler() -> str:
    cc = os.environ.get("CC", "cc")
    path = shutil.which(cc)
    if path is None:
        raise NativeUnavailableError(
            f"multicon's C kernels need a C compiler, and {cc!r} was not found "
            "(install gcc or clang, or set CC)"
        )
    return path


def _compile(cc: str, source: Path, target: Path, flags: list[str]) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        done = subprocess.run(
            [cc, *flags, str(source), "-o", str(built), "-lm"], capture_output=True, text=True
        )
        if done.returncode == 0:
            os.replace(built, target)  # atomic: a reader sees no file or a whole one
    return done


@functools.cache
def load(name: str) -> ctypes.CDLL:
    """The compiled ``csrc/<name>.c``, loaded (compiled first if the cache lacks it).

    Example:
        >>> lib = load("sgns")
        >>> lib.mc_openmp() in (0, 1)
        True
    """
    source = SOURCES / f"{name}.c"
    if not source.is_file():
        raise FileNotFoundError(f"no C source {source}")
    cc = _compiler()
    key = hashlib.sha256(
        b"\0".join(x.encode() for x in (source.read_text(), cc, " ".join(FLAGS), _cpu_flags()))
    ).hexdigest()[:16]
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}-{key}.so"
    if not target.is_file():
        # best first: OpenMP threads, then one thread, then without -march=native
        portable = [f for f in FLAGS if f != "-march=native"]
        for flags in ([*FLAGS, "-fopenmp"], FLAGS, portable):
            done = _compile(cc, source, target, flags)
            if done.returncode == 0:
                break
        else:
            raise NativeUnavailableError(
                f"compiling {source.name} with {cc} failed:\n{done.stderr[-2000:]}"
            )
        if "-fopenmp" not in flags:
            warnings.warn(
                f"{cc} has no OpenMP: multicon's {name} kernel runs on one thread", stacklevel=2
            )
    try:
        return ctypes.CDLL(str(target))
    except OSError as e:
        raise NativeUnavailableError(f"could not load {target}: {e}") from e


def available(name: str = "sgns") -> bool:
    """Whether the kernel ``name`` compiles and loads here."""
    try:
        load(name)
    except NativeUnavailableError:
        return False
    return True
