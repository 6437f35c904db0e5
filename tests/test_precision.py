"""train.amp / eval.amp: `auto` resolved for the device, reported in the run, refused where it cannot run."""

from __future__ import annotations

import pytest
import torch

from neds_framework.engine import precision
from neds_framework.engine.precision import autocast_factory, resolve_amp
from neds_framework.errors import NedsError
from neds_framework import cli
from tests.helpers import tiny_recipe

CPU = torch.device("cpu")


def test_auto_is_bf16_only_on_a_cpu_with_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    mode, why = resolve_amp("auto", CPU)
    assert mode == "bf16" and "auto chose bf16" in why
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    mode, why = resolve_amp("auto", CPU)
    assert mode == "off" and "fp32" in why and "amp: bf16" in why
    assert resolve_amp("bf16", CPU)[0] == "bf16" and resolve_amp("off", CPU)[0] == "off"


def test_what_a_device_cannot_run_is_refused_naming_the_key():
    with pytest.raises(NedsError, match="eval.amp: fp16 autocast is for GPUs"):
        resolve_amp("fp16", CPU, "eval.amp")
    with pytest.raises(NedsError, match="train.amp: expected one of auto, off, bf16, fp16, got 'half'"):
        resolve_amp("half", CPU)


def test_the_autocast_of_each_mode():
    with autocast_factory("off", CPU)():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with autocast_factory("bf16", CPU)():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


@pytest.mark.usefixtures("fresh_plugins")
def test_the_run_records_the_precision_it_chose(tmp_path, capsys):
    from neds_framework.engine.record import RunRecord

    recipe = tiny_recipe(tmp_path, epochs=1, extra="eval: {figures: false, tensorboard: false}\n")
    assert cli.main([str(recipe)]) == 0
    meta = RunRecord.load(tmp_path / "runs" / "tiny").meta
    expected = "bf16" if precision.cpu_has_bf16() else "off"
    assert meta["amp"] == expected and meta["amp_reason"].startswith("train.amp: auto chose")
    assert meta["eval_amp"] == expected and meta["eval_amp_reason"].startswith("eval.amp: auto chose")
    capsys.readouterr()
    assert cli.main([str(recipe), "--set", "train.amp=fp16", "--set", "train.device=cpu"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("neds-run:")]
    assert len(err) == 1 and "train.amp: fp16 autocast is for GPUs" in err[0]
