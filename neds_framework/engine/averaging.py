"""An exponential moving average of the weights over optimiser steps (``train.ema``).

The average is what the run validates, selects and saves as its model; the raw weights keep
training. Step t moves the average toward the weights by 1 − min(decay, (1 + t) / (10 + t)), so
early steps, when the start is far from anything good, are forgotten quickly (the warm-up of
TensorFlow's ExponentialMovingAverage). Only floating-point tensors are averaged; anything else
in the state dict is the model's own.
"""

from __future__ import annotations

import contextlib

import torch


class WeightAverage:
    """The average of ``model``'s floating-point state, kept in float32 beside it."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = float(decay)
        # state_dict tensors share storage with the parameters and buffers, which the optimiser and
        # load_state_dict change in place, so these references stay live for the whole run.
        self.names = [k for k, v in model.state_dict().items() if v.is_floating_point()]
        self._live = [model.state_dict()[k] for k in self.names]
        self.average = [t.detach().to(torch.float32, copy=True) for t in self._live]

    def update(self, step: int) -> None:
        """Fold in the weights after optimiser step ``step`` (1 for the first)."""
        keep = min(self.decay, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            torch._foreach_lerp_(self.average, [t.to(torch.float32) for t in self._live], 1.0 - keep)

    @contextlib.contextmanager
    def swapped_in(self):
        """The model holds the average inside the block and its own weights again after it."""
        with torch.no_grad():
            saved = [t.clone() for t in self._live]
            for live, avg in zip(self._live, self.average):
                live.copy_(avg)
        try:
            yield
        finally:
            with torch.no_grad():
                for live, own in zip(self._live, saved):
                    live.copy_(own)

    def model_state(self, model: torch.nn.Module) -> dict:
        """``model``'s state dict with the averaged tensors in place of its own."""
        state = dict(model.state_dict())
        for name, avg in zip(self.names, self.average):
            state[name] = avg.to(state[name].dtype, copy=True)
        return state

    def load(self, state: dict) -> None:
        """Take the average from a state dict (the ``model`` entry of a checkpoint written with it)."""
        with torch.no_grad():
            for name, avg in zip(self.names, self.average):
                avg.copy_(state[name])
