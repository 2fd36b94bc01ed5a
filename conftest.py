"""What every test and doctest run shares (tests/conftest.py has the tests' own fixtures)."""

import pytest


@pytest.fixture(autouse=True)
def _inductor_cache_under_pytest(tmp_path_factory, monkeypatch):
    """torch makes its compile cache folder in /tmp (torchinductor_<user>) when a doctest, a test
    or a benchmark's child process touches inductor; under pytest it goes with its temporary
    folders."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor")))
