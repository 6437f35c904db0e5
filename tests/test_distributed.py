"""Multi-process training under torchrun (gloo, 2 CPU processes): parity with one process, failures."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from neds_framework.engine.record import RunRecord
from tests import helpers

NEDS_RUN = str(Path(sys.executable).with_name("neds-run"))
ROOT = Path(__file__).resolve().parents[1]


def recipe(folder: Path) -> Path:
    return helpers.tiny_recipe(folder, epochs=4, extra="eval: {figures: false}\n")


def run(*args, cwd, env=None, timeout=600):
    return subprocess.run([NEDS_RUN, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    path = recipe(tmp_path)
    one = run(path, "--set", "run.name=one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = run(path, "--nproc", "2", "--set", "run.name=two", "--set", "train.batch_size=8", cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("evaluation on the test split") == 1  # rank 0 alone evaluates and prints
    a, b = RunRecord.load(tmp_path / "runs" / "one"), RunRecord.load(tmp_path / "runs" / "two")
    assert b.meta_value("world_size") == 2 and a.meta_value("world_size") == 1
    steps_a, steps_b = a.history["step"]["step"], b.history["step"]["step"]
    assert steps_a[-1] == steps_b[-1]  # the same number of optimiser steps per process
    val_a, val_b = a.history["epoch"]["val_loss"][-1], b.history["epoch"]["val_loss"][-1]
    assert val_b == pytest.approx(val_a, rel=0.15)
    rows_a = {(r[1], r[2], r[3]) for r in _table(a)}
    assert rows_a == {(r[1], r[2], r[3]) for r in _table(b)}  # the same evaluation, gathered on rank 0
    state = b.checkpoint("last")
    assert len(state["rank_generators"]) == 2  # each rank's random stream, for an exact resume


def _table(record):
    from neds_framework.engine.record import read_table

    return read_table(record)


FAILING_PLUGIN = '''
    import os

    import torch.distributed as dist

    from neds_framework import hookimpl
    from neds_framework.engine import distributed
    from neds_framework.errors import NedsRunError


    def fail_on_rank_one(context):
        distributed.setup()
        if distributed.world().rank == 1:
            raise NedsRunError("rank 1 gave up on purpose")
        dist.barrier()  # rank 0 would wait here for ever if the job were not stopped


    @hookimpl
    def neds_register_stages(register):
        register("fail_on_rank_one", fail_on_rank_one)
'''


def test_a_failing_rank_stops_the_whole_job_with_its_error(tmp_path):
    site = tmp_path / "site"
    (site / "failing_stage-0.1.dist-info").mkdir(parents=True)
    (site / "failing_stage.py").write_text(textwrap.dedent(FAILING_PLUGIN))
    (site / "failing_stage-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: failing-stage\nVersion: 0.1\n")
    (site / "failing_stage-0.1.dist-info" / "entry_points.txt").write_text("[neds.plugins]\nfailing_stage = failing_stage\n")
    path = tmp_path / "fail.yaml"
    path.write_text(f"stages: [fail_on_rank_one]\nrun: {{dir: {tmp_path / 'runs'}}}\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    done = run(path, "--nproc", "2", cwd=tmp_path, env=env, timeout=300)
    assert done.returncode != 0
    assert "rank 1 gave up on purpose" in done.stderr


def test_a_killed_two_process_run_resumes_to_the_same_weights(tmp_path):
    """kill -9 of the whole job (launcher and both ranks) after its first checkpoint, then
    --resume with two processes: the same weights, bit for bit, as an uninterrupted 2-process run."""
    import signal
    import time

    import torch

    path = helpers.tiny_recipe(tmp_path, epochs=3, extra="eval: {figures: false}\n")
    args = ["--nproc", "2", "--set", "train.batch_size=8", "--set", "stages=[prepare, train]"]
    whole = run(path, *args, "--set", "run.name=whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]

    killed = tmp_path / "runs" / "killed"
    proc = subprocess.Popen([NEDS_RUN, str(path), *args, "--set", "run.name=killed"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (killed / "run.h5").exists():  # the first epoch's checkpoint has landed
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert RunRecord.load(killed).checkpoint("last")["epoch"] < 3

    resumed = run(path, *args, "--resume", killed, cwd=tmp_path)  # the killed job's lock is stale: taken over
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = RunRecord.load(tmp_path / "runs" / "whole").checkpoint("last")["model"]
    b = RunRecord.load(killed).checkpoint("last")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len(RunRecord.load(killed).history["epoch"]["train_loss"]) == 3


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_localhost_match_two_processes_on_one(tmp_path):
    """Two launchers (two "machines", one process each, static rendezvous over TCP, gloo) train to
    the same weights, bit for bit, as one launcher with two processes."""
    import torch

    path = helpers.tiny_recipe(tmp_path, epochs=2, extra="eval: {figures: false}\n")
    args = ["--set", "train.batch_size=8", "--set", "stages=[prepare, train]"]
    single = run(path, "--nproc", "2", *args, "--set", "run.name=single", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-2000:]

    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [subprocess.Popen([NEDS_RUN, str(path), "--nnodes", "2", "--node-rank", str(rank), "--nproc", "1",
                               "--rdzv-endpoint", endpoint, *args, "--set", "run.name=nodes"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (1, 0)]  # node 1 first: it waits at the rendezvous for node 0
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-2000:]
    assert "on node 1 of 2" in outputs[0][1] and "on node 0 of 2" in outputs[1][1]
    a = RunRecord.load(tmp_path / "runs" / "single")
    b = RunRecord.load(tmp_path / "runs" / "nodes")
    assert b.meta_value("world_size") == 2
    wa, wb = a.checkpoint("last")["model"], b.checkpoint("last")["model"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("flags, message", [
    (["--nnodes", "2"], "needs --rdzv-endpoint HOST:PORT"),
    (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "--node-rank: expected 0 .. 1"),
    (["--nnodes", "2", "--rdzv-endpoint", "node0"], "--rdzv-endpoint: expected HOST:PORT"),
    (["--nnodes", "0"], "--nnodes: expected at least 1"),
])
def test_bad_launch_flags_are_one_line(tmp_path, flags, message):
    done = run(helpers.tiny_recipe(tmp_path), *flags, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
