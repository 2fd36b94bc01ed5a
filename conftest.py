"""What every test and doctest run shares (tests/conftest.py has the tests' own fixtures)."""

import os
import shutil
import tempfile

_inductor_cache: list[str] = []  # the folder this session made, to remove at its end


def pytest_configure(config):
    """torch makes its compile cache folder in /tmp (torchinductor_<user>) when a module imported
    during collection, a test or a benchmark's child process touches inductor: the session gets
    its own, removed at the end (set before collection; child processes inherit it)."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        _inductor_cache.append(tempfile.mkdtemp(prefix="multicon-inductor-"))
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = _inductor_cache[0]


def pytest_unconfigure(config):
    while _inductor_cache:
        shutil.rmtree(_inductor_cache.pop(), ignore_errors=True)
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
