"""Test-wide isolation: no test may read or write the real home folder (ONE and matplotlib write there)."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MPLCONFIGDIR", str(home / ".mpl"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    yield home


@pytest.fixture
def fresh_plugins():
    """Plugins loaded anew for the test (and dropped after): tests that pip-install or register
    plugins, or run neds-run in-process, must not see another test's plugin set."""
    from neds_framework.plugins import reset_plugins

    reset_plugins()
    yield
    reset_plugins()
