"""Vectorised random draws the masking schemes share (no Python loop over samples).

All functions take a `torch.Generator` and return bool tensors on the CPU; the masker moves the
result to the batch's device.
"""

from __future__ import annotations

import torch


def bernoulli(shape, p: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator) < p


def ensure_some_masked_and_visible(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per sample (dim 0), flip one random element when the sample's mask hides nothing or
    everything, so every sample is a prediction task with something left to predict from."""
    b = mask.shape[0]
    flat = mask.reshape(b, -1)
    n = flat.shape[1]
    if n < 2:
        return mask
    hidden = flat.sum(dim=1)
    fix = (hidden == 0) | (hidden == n)
    if not bool(fix.any()):
        return mask
    pick = torch.randint(0, n, (b,), generator=generator)
    flip = torch.zeros_like(flat)
    flip[torch.arange(b), pick] = fix
    return (flat ^ flip).reshape(mask.shape)


def spans(seeds: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Grow each True of ``seeds`` (B, T) into a span of ``lengths[b]`` bins starting there."""
    b, t = seeds.shape
    counts = torch.cat([torch.zeros(b, 1, dtype=torch.long), seeds.long().cumsum(dim=1)], dim=1)  # (B, T+1)
    end = torch.arange(1, t + 1).expand(b, t)
    start = (end - lengths.unsqueeze(1)).clamp(min=0)
    # Bin t is covered when a seed lies in (t - length, t].
    return (counts.gather(1, end) - counts.gather(1, start)) > 0


def choose_k(scores_shape: tuple[int, int], k: torch.Tensor, generator: torch.Generator, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """(B, G) bool: per row, ``k[b]`` distinct columns chosen uniformly among the allowed ones."""
    scores = torch.rand(scores_shape, generator=generator)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, 2.0)  # never among the k smallest
    rank = scores.argsort(dim=1).argsort(dim=1)
    chosen = rank < k.unsqueeze(1)
    return chosen if allowed is None else chosen & allowed
