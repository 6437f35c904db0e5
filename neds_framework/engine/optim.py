"""Optimisers and learning-rate schedules by name.

Every `torch.optim` optimiser and every torch-optimizer one (Lamb, RAdam, ...) is available by
its class name, case-insensitive, with extra keyword arguments from the recipe. torch-optimizer's
Lookahead is refused: its `state_dict()` is broken (it never calls `Optimizer.__init__`), so a
run using it could not checkpoint or resume.

Schedules: `onecycle` (the reference: one-cycle cosine, 15 % warm-up, start at max/10, end at
start/1e4, stepped every optimiser step), `cosine` (warm-up then cosine decay to 0), `constant`
(warm-up then flat), and `linear` (warm-up then linear decay to 0).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from neds_framework.engine.settings import OptimizerSettings, ScheduleSettings
from neds_framework.errors import NedsError

_REFUSED = {"lookahead": "its state_dict() is broken in torch-optimizer 0.3, so the run could not be checkpointed or resumed"}
SCHEDULES = ("onecycle", "cosine", "constant", "linear")


def _optimizer_classes() -> dict[str, type]:
    classes = {}
    try:
        import torch_optimizer

        for name in dir(torch_optimizer):
            obj = getattr(torch_optimizer, name)
            if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer):
                classes[name.lower()] = obj
    except ImportError:  # optional: torch's own optimisers still work
        pass
    for name in dir(torch.optim):  # torch's own win a name clash (RAdam, Adafactor)
        obj = getattr(torch.optim, name)
        if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer:
            classes[name.lower()] = obj
    return classes


def build_optimizer(parameters: Iterable[torch.nn.Parameter], settings: OptimizerSettings) -> torch.optim.Optimizer:
    key = settings.name.lower()
    if key in _REFUSED:
        raise NedsError(f"train.optimizer.name: {settings.name} is not supported: {_REFUSED[key]}; use e.g. AdamW, Lamb or RAdam")
    classes = _optimizer_classes()
    if key not in classes:
        import difflib

        close = difflib.get_close_matches(key, list(classes), n=1)
        hint = f"; did you mean '{classes[close[0]].__name__}'?" if close else ""
        raise NedsError(f"train.optimizer.name: unknown optimiser '{settings.name}'{hint}")
    try:
        return classes[key](list(parameters), lr=settings.lr, weight_decay=settings.weight_decay, **settings.options)
    except TypeError as exc:
        raise NedsError(f"train.optimizer: {classes[key].__name__} rejected the options: {exc}") from None


def build_schedule(optimizer: torch.optim.Optimizer, settings: ScheduleSettings, total_steps: int):
    """A LambdaLR giving each step's multiple of the peak learning rate."""
    if settings.name not in SCHEDULES:
        raise NedsError(f"train.schedule.name: unknown schedule '{settings.name}'; known: {', '.join(SCHEDULES)}")
    total = max(int(total_steps), 1)
    warm = max(int(round(settings.warmup * total)), 1)

    def factor(step: int) -> float:
        if settings.name == "onecycle":
            # torch's OneCycleLR with cosine annealing, written out so it resumes from state_dict.
            start, end = settings.start_factor, settings.start_factor * settings.end_factor
            if step < warm:
                return start + (1 - start) * (1 - math.cos(math.pi * step / warm)) / 2
            t = min((step - warm) / max(total - warm, 1), 1.0)
            return end + (1 - end) * (1 + math.cos(math.pi * t)) / 2
        if step < warm:
            return (step + 1) / warm
        t = min((step - warm) / max(total - warm, 1), 1.0)
        return {"cosine": (1 + math.cos(math.pi * t)) / 2, "constant": 1.0, "linear": 1.0 - t}[settings.name]

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
