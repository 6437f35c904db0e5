"""What each evaluation task hides: the masks of its forward passes.

    encoding, decoding, decode_<variable>   one pass (`neds_framework.model.eval_masks`)
    co_smoothing, forward, inter_region, intra_region
                 parts of each element-masked modality hidden, over as many passes as it takes
                 for every element to be hidden once

Which modalities are neural, behaviour or element-masked comes from the batch's specs.
"""

from __future__ import annotations

import zlib
from typing import Iterable

import attrs
import numpy as np
import torch

from neds_framework.engine.settings import TASKS
from neds_framework.errors import NedsError
from neds_framework.modality import ModalitySpec
from neds_framework.model.batch import Batch, Masks
from neds_framework.model.eval_masks import decoding_masks, encoding_masks, variable_decoding_masks

@attrs.frozen
class TaskOptions:
    """Shapes of the masking-scheme evaluations (eval settings of the same names)."""

    heldout_fraction: float = 0.2  # co_smoothing: share of each session's neurons held out
    forward_bins: int = 20  # forward: the last bins predicted from the earlier ones
    intra_fraction: float = 0.5  # intra_region: share of a region hidden per pass


#: Tasks that hide part of each element-masked modality (spikes) and score the hidden part only.
SPIKE_TASKS = ("co_smoothing", "forward", "inter_region", "intra_region")


def heldout_neurons(eid: str, n: int, fraction: float) -> torch.Tensor:
    """(N,) bool: the session's co-smoothing neurons, fixed by the eid (never by the batch)."""
    k = min(max(1, round(n * fraction)), n - 1) if n > 1 else n
    rng = np.random.default_rng(zlib.crc32(eid.encode()))
    out = torch.zeros(n, dtype=torch.bool)
    out[torch.from_numpy(rng.permutation(n)[:k])] = True
    return out


def _element_passes(task: str, batch: Batch, name: str, options: TaskOptions) -> list[torch.Tensor]:
    """The (B, T, N) masks of an element task on one modality; each neuron/bin is hidden in some pass."""
    value = batch.values[name]
    b, t, n = value.shape
    device = value.device
    if task == "forward":
        h = min(max(options.forward_bins, 1), t - 1)
        return [(torch.arange(t, device=device) >= t - h).view(1, t, 1).expand(b, t, n)]
    if task == "co_smoothing":
        return [heldout_neurons(batch.session, n, options.heldout_fraction).to(device).view(1, 1, n).expand(b, t, n)]
    codes = batch.regions
    if codes is None or codes.numel() != n:
        raise NedsError(f"evaluation task '{task}' needs the region of each neuron of session '{batch.session}'")
    neuron_sets = []
    for region in torch.unique(codes):
        members = codes == region
        if task == "inter_region":
            neuron_sets.append(members)
            continue
        # intra_region: the region in parts, each hidden while the rest of it stays visible.
        rank = members.long().cumsum(0) - 1  # position of a member within its region
        size = int(members.sum())
        parts = max(2, round(1 / options.intra_fraction)) if size > 1 else 1
        neuron_sets += [members & (rank % parts == p) for p in range(parts)]
    return [s.view(1, 1, n).expand(b, t, n) for s in neuron_sets if bool(s.any())]


def task_passes(task: str, batch: Batch, options: TaskOptions = TaskOptions()) -> list[Masks]:
    """The masks of each forward pass of an evaluation task."""
    if task == "encoding":
        return [encoding_masks(batch)]
    if task == "decoding":
        return [decoding_masks(batch)]
    if task.startswith("decode_"):
        return [variable_decoding_masks(batch, task[len("decode_"):])]
    if task in SPIKE_TASKS:
        element = [name for name in batch.values if batch.specs[name].element_masked and batch.values[name].dim() == 3]
        if not element:
            raise NedsError(f"evaluation task '{task}' needs a modality masked per element (ModalitySpec masking 'element')")
        shown = {name: batch.full_mask(name, False) for name in batch.values}
        return [{**shown, name: mask} for name in element for mask in _element_passes(task, batch, name, options)]
    raise NedsError(f"unknown evaluation task '{task}'; known: encoding, decoding, decode_<variable>, {', '.join(SPIKE_TASKS)}")


def expand_tasks(tasks: Iterable[str], specs: dict[str, ModalitySpec]) -> list[str]:
    """The recipe's task names with `variables` expanded to one ``decode_<name>`` per behaviour."""
    out = []
    for task in tasks:
        if task == "variables":
            out.extend(f"decode_{name}" for name, spec in specs.items() if not spec.neural)
        elif task in ("encoding", "decoding") or task in SPIKE_TASKS:
            out.append(task)
        else:
            raise NedsError(f"eval.tasks: unknown task '{task}'; choose from {', '.join(TASKS)}")
    return out
