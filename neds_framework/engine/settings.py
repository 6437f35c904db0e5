"""Settings of the engine's stages (attrs only: importing them costs no torch import).

Recipes are validated against these when a run starts and by `neds-run validate`, which must
stay fast.
"""

from __future__ import annotations

import attrs

from neds_framework.errors import NedsError


@attrs.frozen
class OptimizerSettings:
    name: str = "AdamW"
    lr: float = 2e-4  # the peak learning rate under a schedule with warm-up
    weight_decay: float = 0.01
    options: dict[str, float] = attrs.field(factory=dict)  # other keyword arguments, e.g. {eps: 1.0e-8}


@attrs.frozen
class ScheduleSettings:
    name: str = "onecycle"
    warmup: float = 0.15  # share of all steps spent warming up
    start_factor: float = 0.1  # onecycle starts at lr * start_factor (reference: div_factor 10)
    end_factor: float = 1e-4  # onecycle ends at start * end_factor (reference: final_div_factor 1e4)


AMP_MODES = ("off", "bf16", "fp16")


@attrs.frozen
class TrainSettings:
    """Settings of the train stage (recipe section `train:`)."""

    epochs: int = 100
    batch_size: int = 16
    max_steps: int = 0  # stop after this many optimiser steps (0: no limit)
    optimizer: OptimizerSettings = OptimizerSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    grad_clip: float = 0.0  # clip the gradient norm at this value (0: off; the reference never clipped)
    accumulate: int = 1  # batches per optimiser step
    amp: str = "off"  # off | bf16 (CPU or GPU) | fp16 (GPU)
    compile: bool = False  # torch.compile the model
    validate_every: int = 1  # epochs between validations
    patience: int = 0  # stop after this many validations without improvement (0: never)
    workers: int = 0  # DataLoader worker processes reading the store
    threads: int = 0  # torch CPU threads (0: torch's default)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # Treat subnormal floats (< 1.2e-38) as 0 on CPU: attention softmax tails underflow into
    # them and x86 computes with them ~100x slower (an 11x slower training step was measured).
    flush_denormal: bool = True
    progress: bool = True

    def check(self) -> None:
        if self.amp not in AMP_MODES:
            raise NedsError(f"train.amp: expected one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if min(self.epochs, self.batch_size, self.accumulate, self.validate_every) < 1:
            raise NedsError("train: epochs, batch_size, accumulate and validate_every must be at least 1")


