"""The prepare stage and the synth command, through `neds-run` as a user runs them."""

from __future__ import annotations

import textwrap

import h5py
import numpy as np
import pytest

from neds_framework import cli
from neds_framework.data.store import SessionStore
from neds_ibl.one_cache import session_eid


pytestmark = pytest.mark.usefixtures("fresh_plugins")  # plugins loaded per test (conftest)


def recipe(tmp_path, extra: str = "", sessions: int = 2) -> str:
    path = tmp_path / "prep.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            stages: [prepare]
            run: {{dir: {tmp_path / 'runs'}}}
            data:
              store: {tmp_path / 'store.h5'}
              source:
                name: ibl
                one: {{mode: local, cache_dir: {tmp_path / 'cache'}}}
                synthesize: {{sessions: {sessions}, seed: 1, trials: 80, units: 40}}
            """
        )
        + extra
    )
    return str(path)


def test_synth_command_writes_a_one_cache(tmp_path, capsys):
    assert cli.main(["synth", "--out", str(tmp_path / "c"), "--sessions", "1", "--trials", "40", "--units", "10", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    eid = session_eid("synthlab", "SYN000", "2024-01-01", 1)
    assert eid in out
    assert (tmp_path / "c" / "sessions.pqt").exists()
    assert (tmp_path / "c" / "synthlab" / "Subjects" / "SYN000" / "2024-01-01" / "001" / "neds_truth" / "truth.rates.npy").exists()
    assert cli.main(["synth", "--out", str(tmp_path / "c"), "--sessions", "0"]) == 2


def test_prepare_builds_skips_and_rebuilds(tmp_path, capsys):
    path = recipe(tmp_path)
    assert cli.main([path]) == 0
    out = capsys.readouterr().out
    assert "prepared 2 session(s)" in out
    store = tmp_path / "store.h5"
    with SessionStore(store) as s:
        assert len(s.eids) == 2
        info = s.info(s.eids[0])
        assert {"spikes", "wheel", "whisker", "choice", "block"} <= set(info.modalities)
        first_hash = s.settings_hash
    mtime = store.stat().st_mtime_ns

    assert cli.main([path]) == 0  # same settings: skipped, file untouched
    assert "is current" in capsys.readouterr().out
    assert store.stat().st_mtime_ns == mtime

    assert cli.main([path, "--set", "data.source.rate_threshold_hz=2.0"]) == 0  # new settings: rebuilt
    assert "prepared 2 session(s)" in capsys.readouterr().out
    with SessionStore(store) as s:
        assert s.settings_hash != first_hash
        assert s.settings["rate_threshold_hz"] == 2.0

    assert cli.main([path, "--set", "prepare.force=true", "--set", "data.source.rate_threshold_hz=2.0"]) == 0
    assert "prepared 2 session(s)" in capsys.readouterr().out


def test_splits_do_not_depend_on_the_other_sessions(tmp_path):
    path = recipe(tmp_path)
    assert cli.main([path]) == 0
    with SessionStore(tmp_path / "store.h5") as s:
        eids = list(s.eids)
        together = {name: s.split(eids[1], name) for name in ("train", "val", "test")}
    alone = tmp_path / "alone.h5"
    assert cli.main([path, "--set", f"data.source.eids=[{eids[1]}]", "--set", f"data.store={alone}"]) == 0
    with SessionStore(alone) as s:
        assert s.eids == [eids[1]]
        for name, idx in together.items():
            np.testing.assert_array_equal(s.split(eids[1], name), idx)


def test_store_is_plain_hdf5(tmp_path):
    assert cli.main([recipe(tmp_path, sessions=1)]) == 0
    with h5py.File(tmp_path / "store.h5", "r") as f:
        (eid,) = list(f["sessions"])
        spikes = f["sessions"][eid]["modalities"]["spikes"]
        assert spikes.dtype == np.uint8 and spikes.ndim == 3
        assert f["sessions"][eid]["truth"]["rates"].shape == spikes.shape


def test_prepare_errors_are_one_line(tmp_path, capsys):
    path = recipe(tmp_path)
    assert cli.main([path, "--set", "data.source.eids=[00000000-0000-4000-8000-000000000000]"]) == 2
    err = capsys.readouterr().err
    assert "not in the ONE cache" in err.strip().splitlines()[-1] and "Traceback" not in err
    bad = tmp_path / "nodata.yaml"
    bad.write_text("stages: [prepare]\n")
    assert cli.main([str(bad)]) == 2
    assert "data: missing" in capsys.readouterr().err


def test_quickstart_recipe_validates():
    assert cli.main(["validate", "recipes/quickstart.yaml"]) == 0
