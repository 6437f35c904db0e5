"""Issue #15: every error a user or a disk can cause is one line naming the file (or key) and the fix.

Damaged data files, a full or read-only disk, a store path that is a folder, absurd model sizes,
tampered or foreign run records, and two runs into one run folder: each gives exit code 2 (bad
input) or 1 (a failed run) and a single line, never "unexpected error" and never a traceback.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from neds_framework import cli
from neds_framework.atomic import atomic_write_text
from neds_framework.engine.record import RunRecord
from neds_framework.engine.run_lock import LOCK_NAME, RunLock
from neds_framework.errors import NedsError, NedsRunError, os_error
from neds_ibl.one_connect import OneSettings
from neds_ibl.source import IblSettings, IblSource
from neds_ibl.synth import SynthSettings, generate
from tests.helpers import tiny_recipe

NEDS_RUN = str(Path(sys.executable).with_name("neds-run"))
ALF = "alf"
SPIKES = "alf/probe00/pykilosort"

pytestmark = pytest.mark.usefixtures("fresh_plugins")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    eids = generate(root, SynthSettings(sessions=1, seed=5, trials=60, units=24))
    return root, eids[0]


@pytest.fixture
def cache(pristine, tmp_path):
    """A private copy of the generated cache, to damage."""
    root, eid = pristine
    copy = tmp_path / "cache"
    shutil.copytree(root, copy)
    session = next(copy.glob("*/Subjects/*/*/*"))
    return copy, eid, session


def _source(root) -> IblSource:
    return IblSource(IblSettings(one=OneSettings(mode="local", cache_dir=str(root))))


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(300))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(200)


DAMAGE = {  # what is damaged -> (file relative to the session folder, how)
    "spike times garbage": (f"{SPIKES}/spikes.times.npy", _garbage),
    "spike times truncated": (f"{SPIKES}/spikes.times.npy", _truncate),
    "spike clusters garbage": (f"{SPIKES}/spikes.clusters.npy", _garbage),
    "trials table garbage": (f"{ALF}/_ibl_trials.table.pqt", _garbage),
    "cluster metrics garbage": (f"{SPIKES}/clusters.metrics.pqt", _garbage),
    "wheel garbage": (f"{ALF}/_ibl_wheel.position.npy", _garbage),
    "camera garbage": (f"{ALF}/leftCamera.ROIMotionEnergy.npy", _garbage),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_session_file_is_named(cache, case):
    root, eid, session = cache
    relative, damage = DAMAGE[case]
    damage(session / relative)
    with pytest.raises(NedsRunError) as err:
        _source(root).prepare(eid)
    message = str(err.value)
    assert message.startswith(str(session / relative)) and "\n" not in message, message
    assert "download it again" in message and "allow_pickle" not in message


@pytest.mark.parametrize("table", ["sessions.pqt", "datasets.pqt"])
def test_a_damaged_one_cache_table_is_named(cache, table):
    root, eid, _ = cache
    _garbage(root / table)
    with pytest.raises(NedsError) as err:
        _source(root).prepare(eid)
    assert str(err.value).startswith(str(root / table)) and "regenerate the cache" in str(err.value)


def test_spike_times_shorter_than_their_clusters_are_refused(cache):
    root, eid, session = cache
    path = session / SPIKES / "spikes.times.npy"
    times = np.load(path)
    np.save(path, times[: len(times) // 2])
    with pytest.raises(NedsRunError, match=r"spikes.times has \d+ rows but spikes.clusters \d+"):
        _source(root).prepare(eid)


def _shorten(relative: str, keep: float = 0.5):
    def damage(session: Path) -> None:
        path = session / relative
        values = np.load(path)
        np.save(path, values[: int(len(values) * keep)])
    return damage


def _empty_trials(session: Path) -> None:
    import pandas as pd

    path = session / ALF / "_ibl_trials.table.pqt"
    pd.read_parquet(path).iloc[:0].to_parquet(path)


def _clusters_out_of_range(session: Path) -> None:
    path = session / SPIKES / "spikes.clusters.npy"
    ids = np.load(path)
    ids[-1] = 10_000
    np.save(path, ids)


def _nan_spike_time(session: Path) -> None:
    path = session / SPIKES / "spikes.times.npy"
    times = np.load(path)
    times[3] = np.nan
    np.save(path, times)


DISAGREE = {  # readable files whose contents do not fit together -> (damage, what the message says)
    "wheel positions shorter than timestamps": (_shorten(f"{ALF}/_ibl_wheel.position.npy"), r"its wheel files do not agree"),
    "empty trials table": (_empty_trials, r"its trials files do not agree"),
    "cluster ids past the clusters table": (_clusters_out_of_range, r"spikes.clusters holds ids 0\.\.10000 but the clusters files describe \d+"),
    "a NaN spike time": (_nan_spike_time, r"spikes.times holds non-finite values"),
}


@pytest.mark.parametrize("case", sorted(DISAGREE))
def test_files_that_do_not_agree_are_one_line_naming_the_session(cache, case):
    """Each file reads, but together they make no session: one line naming the session and the
    files, never a bug traceback (the class behind brainbox's and ONE's own ValueErrors)."""
    root, eid, session = cache
    damage, expected = DISAGREE[case]
    damage(session)
    with pytest.raises((NedsRunError, NedsError)) as err:
        _source(root).prepare(eid)
    message = str(err.value)
    assert eid in message and "\n" not in message and re.search(expected, message), message


@pytest.mark.parametrize("remove, expected", [
    (f"{SPIKES}/spikes.times.npy", r"probe00: the spike sorting lacks spikes.times; download it again"),
    (f"{ALF}/_ibl_wheel.position.npy", r"its wheel files lack 'position' \(a file missing"),
    (f"{ALF}/_ibl_trials.table.pqt", r"no trials found"),
    (f"{ALF}/leftCamera.ROIMotionEnergy.npy", r"its whisker files lack 'ROIMotionEnergy'"),
])
def test_files_the_cache_lists_but_the_folder_lacks(cache, remove, expected):
    root, eid, session = cache
    (session / remove).unlink()
    with pytest.raises(NedsRunError) as err:
        _source(root).prepare(eid)
    assert eid in str(err.value) and re.search(expected, str(err.value)) and "\n" not in str(err.value), err.value


def test_a_damaged_file_through_the_cli_is_one_line_and_exit_1(cache, tmp_path):
    root, eid, session = cache
    _truncate(session / SPIKES / "spikes.times.npy")
    recipe = tiny_recipe(tmp_path, stages="[prepare]", cache="cache")
    proc = subprocess.run([NEDS_RUN, str(recipe)], capture_output=True, text=True)
    err = [line for line in proc.stderr.splitlines() if line.startswith("neds-run: ")]
    assert proc.returncode == 1 and len(err) == 1, proc.stderr
    assert "spikes.times.npy" in err[0] and "unexpected" not in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- paths and disks


def test_a_store_path_that_is_a_folder(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path, stages="[prepare]", sessions=1)
    (tmp_path / "store.h5").mkdir()
    assert cli.main([str(recipe)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("neds-run:")]
    assert len(err) == 1 and "data.store" in err[0] and "is a folder" in err[0]


def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "run.h5"
    target.write_text("previous")

    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(NedsRunError) as err:
        atomic_write_text(target, "new")
    assert str(err.value).startswith(f"{target}: No space left on device") and "free space" in str(err.value)
    assert err.value.exit_code == 1
    assert target.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["run.h5"]


def _little_room(monkeypatch, free: int) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=free))


def test_a_store_without_room_is_refused_before_hdf5_writes(cache, tmp_path, monkeypatch):
    """HDF5 can segfault closing a file whose write hit a full disk (seen on a 300 KiB tmpfs), so
    the store writer checks the room for each session first; the old store stays as it was."""
    from neds_framework.data.store_write import StoreWriter

    root, eid, _ = cache
    session = _source(root).prepare(eid)
    target = tmp_path / "store.h5"
    target.write_text("previous")
    _little_room(monkeypatch, 1 << 20)
    with pytest.raises(NedsRunError) as err:
        with StoreWriter(target, {"x": 1}) as writer:
            writer.add(session)
    message = str(err.value)
    assert message.startswith(f"{target}: not enough free space for session {eid}") and "data.store" in message
    assert target.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["cache", "store.h5"]


def test_a_run_record_without_room_is_refused(tmp_path, monkeypatch):
    record = RunRecord(tmp_path / "run")
    record.put_checkpoint("last", {"w": torch.zeros(1 << 20)})  # 4 MiB of weights
    _little_room(monkeypatch, 2 << 20)
    with pytest.raises(NedsRunError, match=r"run\.h5: not enough free space for the run record \(about 8\.\d MiB"):
        record.save()
    assert not (tmp_path / "run" / "run.h5").exists()


def test_tensorboard_disk_errors_name_the_event_folder(tmp_path):
    from neds_framework.engine.tensorboard import DiskErrorsNamed

    class Full:
        log_dir = "x"

        def add_scalar(self, *args):
            raise OSError(errno.ENOSPC, "No space left on device")  # as the writer thread's error comes back

    writer = DiskErrorsNamed(Full(), tmp_path / "tensorboard")
    assert writer.log_dir == "x"
    with pytest.raises(NedsRunError, match=r"tensorboard: No space left on device while writing TensorBoard events"):
        writer.add_scalar("loss", 1.0, 0)


def test_a_background_thread_disk_error_prints_no_traceback(capsys, monkeypatch):
    import threading

    monkeypatch.delenv("NEDS_DEBUG", raising=False)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    cli.main(["plugins"])  # installs the hook
    capsys.readouterr()

    def fail():
        raise OSError(errno.ENOSPC, "No space left on device")

    thread = threading.Thread(target=fail)
    thread.start()
    thread.join()
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["recipes/quickstart.yaml", "--nosuch"], "unrecognized arguments: --nosuch; see 'neds-run --help'"),
    (["inspect"], "inspect: the following arguments are required: run; see 'neds-run inspect --help'"),
    (["validate", "x.yaml", "--nproc", "2"], "validate: unrecognized arguments: --nproc 2"),
])
def test_command_line_mistakes_are_one_line(argv, expected, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "usage:" not in err, err


def test_h5py_style_disk_errors_become_one_line():
    """HDF5's text spans lines and names the temp file; the errno inside it decides the message."""
    exc = OSError("Unable to synchronously create file (file write failed: time = Wed\n, filename = '/x/.s.tmp', "
                  "errno = 28, error message = 'No space left on device')")
    error = os_error(exc, "/x/store.h5", "writing it")
    assert str(error) == ("/x/store.h5: No space left on device while writing it; free space there, or point "
                          "run.dir (or the path named) at a disk with room")
    assert "\n" not in str(error) and error.exit_code == 1


@pytest.mark.parametrize("number, code, fix", [
    (errno.EROFS, 2, "writable folder"), (errno.EACCES, 2, "you can write"), (errno.EISDIR, 2, "not a folder"),
])
def test_unwritable_paths_are_bad_input(number, code, fix):
    error = os_error(OSError(number, os.strerror(number), "/data/runs"))
    assert str(error).startswith("/data/runs: ") and fix in str(error) and error.exit_code == code


def test_an_oserror_in_a_stage_is_one_line(tmp_path, monkeypatch, capsys):
    recipe = tiny_recipe(tmp_path, stages="[prepare]", sessions=1)

    def read_only(*_, **__):
        raise PermissionError(errno.EROFS, "Read-only file system", str(tmp_path / "runs"))

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert cli.main([str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err[err.index("neds-run: error"):] == f"neds-run: error: {tmp_path / 'runs'}: Read-only file system; choose a writable folder (e.g. --set run.dir=PATH)\n"


def test_synth_into_an_existing_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert cli.main(["synth", "--out", str(tmp_path / "taken")]) == 2
    assert "that is a file" in capsys.readouterr().err


def test_an_absurd_model_is_refused_by_validate(capsys):
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    assert cli.main(["validate", str(recipe), "--set", "model.hidden=65536", "--set", "model.heads=8"]) == 2
    err = capsys.readouterr().err
    assert "model: layers" in err and "GiB" in err and "choose a smaller model" in err and err.count("\n") == 1


def test_bare_neds_run_prints_usage_to_stderr(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("usage: neds-run")


# --------------------------------------------------------------------------- run records


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    recipe = tiny_recipe(folder, epochs=1, sessions=1, extra="eval: {figures: false}\n")
    proc = subprocess.run([NEDS_RUN, str(recipe)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return recipe, folder / "runs" / "tiny"


@pytest.fixture
def run_copy(trained, tmp_path):
    recipe, run = trained
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    return recipe, copy


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {Path(os.environ['HOME']) / 'pwned'}",))


def test_a_tampered_checkpoint_is_refused_naming_run_h5(run_copy, capsys):
    recipe, run = run_copy
    buffer = io.BytesIO()
    torch.save({"model": _Evil()}, buffer)
    with h5py.File(run / "run.h5", "a") as f:
        del f["checkpoints/last"]
        f["checkpoints/last"] = np.frombuffer(buffer.getvalue(), dtype=np.uint8)
    assert cli.main([str(recipe), "--resume", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{run / 'run.h5'}: dataset checkpoints/last was refused" in err
    assert "posix.system" in err and "tampered" in err and "weights_only" not in err
    assert not (Path(os.environ["HOME"]) / "pwned").exists()


@pytest.mark.parametrize("version", [7, None])
def test_a_run_record_of_another_schema_is_refused(run_copy, capsys, version):
    recipe, run = run_copy
    with h5py.File(run / "run.h5", "a") as f:
        if version is None:
            del f.attrs["schema_version"]
        else:
            f.attrs["schema_version"] = version
    found = "no schema version" if version is None else "schema version 7"
    for argv in (["inspect", str(run)], [str(recipe), "--resume", str(run)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert f"run record has {found}, this neds-framework reads version 1" in err and err.count("\n") == 1


def test_inspect_an_unknown_split_fails(trained, capsys):
    _, run = trained
    assert cli.main(["inspect", str(run), "--split", "nosuch"]) == 2
    assert "holds no evaluation on that split (evaluated: test)" in capsys.readouterr().err
    assert cli.main(["inspect", str(run)]) == 0


def test_a_finished_run_leaves_no_lock(trained):
    assert not (trained[1] / LOCK_NAME).exists()


# --------------------------------------------------------------------------- one writer per run folder


def test_a_live_run_folder_is_refused_with_its_pid(tmp_path, capsys):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(f'{{"pid": {other.pid}, "host": "{socket.gethostname()}", "started": "now"}}')
        with pytest.raises(NedsError, match=rf"in use by a live run \(PID {other.pid} on "):
            RunLock(tmp_path).acquire()
        recipe = tiny_recipe(tmp_path, stages="[prepare]", sessions=1)
        (tmp_path / "runs" / "tiny").mkdir(parents=True)
        shutil.copy(tmp_path / LOCK_NAME, tmp_path / "runs" / "tiny" / LOCK_NAME)
        assert cli.main([str(recipe)]) == 2
        assert f"PID {other.pid}" in capsys.readouterr().err
    finally:
        other.kill()
        other.wait()


def test_a_stale_lock_is_taken_over(tmp_path, capsys):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_NAME).write_text(f'{{"pid": {int(gone.stdout)}, "host": "{socket.gethostname()}"}}')
    with RunLock(tmp_path):
        assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_NAME).read_text()
    assert "stale lock" in capsys.readouterr().err
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_from_another_host_names_it(tmp_path):
    (tmp_path / LOCK_NAME).write_text('{"pid": 1, "host": "node-elsewhere-17"}')
    with pytest.raises(NedsError, match="locked by PID 1 on host node-elsewhere-17.*delete"):
        RunLock(tmp_path).acquire()


def test_a_second_writer_in_another_process_is_refused(tmp_path):
    with RunLock(tmp_path):
        proc = subprocess.run([sys.executable, "-c", "from neds_framework.engine.run_lock import RunLock; "
                               f"RunLock({str(tmp_path)!r}).acquire()"], capture_output=True, text=True)
    assert proc.returncode != 0 and f"in use by a live run (PID {os.getpid()}" in proc.stderr
    assert not (tmp_path / LOCK_NAME).exists()
