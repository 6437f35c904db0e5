"""Attention with dropout on CPU, in one autograd function that reuses its big buffers.

On CPU, PyTorch's fused attention takes no dropout, and the unfused path (scores, softmax,
Bernoulli mask, product) spends most of its time not computing: each step allocates a handful of
(batch, heads, L, L) tensors (64–128 MiB at NEDS's single-session size), which glibc hands back to
the kernel when freed, so every new one costs page faults again; the Bernoulli (or `rand`) mask
costs 15–20 ns per element. Here, per layer:

- the attention probabilities and the keep-mask live in buffers the layer keeps from step to step
  (refilled in place, never re-faulted), and one scratch buffer is shared by every layer;
- the mask comes from random bytes (`dropout.keep_mask`: 8 mask elements per 64-bit draw, ~10×
  `rand`), so the rate is quantised to 1/256: p = 0.4 drops with probability 102/256 = 0.398,
  and kept weights are scaled by 256/154, so the expectation is exact;
- the backward pass needs no (L, L) reduction: the softmax term Σ_j dA_ij A_ij equals dY_i · Y_i
  (the identity flash attention uses).

A buffer is reused only when the previous forward's backward has run (or its graph was freed);
otherwise this forward allocates its own, so two forwards before one backward stay correct.
"""

from __future__ import annotations

import math
import threading
import weakref

import torch

from neds_framework.model.nn.dropout import keep_mask

class _Token:
    """Lives as long as one forward's autograd graph: while it does, the layer's buffers are taken."""


class AttentionBuffers:
    """One layer's probabilities and keep-mask, kept between steps."""

    def __init__(self):
        self.probs: torch.Tensor | None = None
        self.keep: torch.Tensor | None = None
        self._owner = None  # weakref to the _Token of the forward whose backward still needs them

    def take(self, shape: torch.Size, dtype: torch.dtype, token: _Token, masked: bool):
        """(probs, keep) buffers of `shape` for one forward (keep is None without dropout)."""
        busy = self._owner is not None and self._owner() is not None
        if busy:  # a second forward before the first one's backward: fresh buffers, not kept
            return torch.empty(shape, dtype=dtype), torch.empty(shape, dtype=dtype) if masked else None
        if self.probs is None or self.probs.shape != shape or self.probs.dtype != dtype:
            self.probs, self.keep = torch.empty(shape, dtype=dtype), None
        if masked and self.keep is None:
            self.keep = torch.empty(shape, dtype=dtype)
        self._owner = weakref.ref(token)
        return self.probs, self.keep if masked else None

    def release(self, token: _Token) -> None:
        if self._owner is not None and self._owner() is token:
            self._owner = None


_LOCAL = threading.local()  # scratch shared by every layer of a thread: used and done within one call


def _scratch(shape: torch.Size, dtype: torch.dtype, name: str) -> torch.Tensor:
    buffers = _LOCAL.__dict__.setdefault("buffers", {})
    key = (name, tuple(shape), dtype)
    buffer = buffers.get(key)
    if buffer is None:
        if len(buffers) > 4:  # shapes change (another batch size, another session): keep only a few
            buffers.clear()
        buffer = buffers[key] = torch.empty(shape, dtype=dtype)
    return buffer


class _AttentionDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, p: float, buffers: AttentionBuffers):
        token = _Token()
        probs, keep = buffers.take(torch.Size([*q.shape[:-1], k.shape[-2]]), q.dtype, token, masked=p > 0.0)
        scale = 1.0 / math.sqrt(q.shape[-1])
        torch.matmul(q, k.transpose(-2, -1), out=probs)
        probs.mul_(scale)
        probs.sub_(probs.amax(dim=-1, keepdim=True)).exp_()
        probs.div_(probs.sum(dim=-1, keepdim=True))
        if p > 0.0:
            keep_mask(keep.shape, p, keep.dtype, out=keep)  # 0 or 1 / (1 - p'): the scale is in the mask
            dropped = _scratch(probs.shape, probs.dtype, "dropped")
            torch.mul(probs, keep, out=dropped)
            y = torch.matmul(dropped, v)
        else:  # the same buffered path without a mask (faster than the fused kernel in bf16 here)
            y = torch.matmul(probs, v)
        ctx.save_for_backward(q, k, v, y)
        ctx.probs, ctx.keep, ctx.buffers, ctx.token = probs, keep, buffers, token
        ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx, grad):
        q, k, v, y = ctx.saved_tensors
        if ctx.token is None:
            raise RuntimeError("backward ran twice through the same attention graph; the buffered CPU attention "
                               "(neds_framework.model.nn.attention_dropout) frees its buffers after the first")
        probs, keep = ctx.probs, ctx.keep
        grad = grad.contiguous()
        work = _scratch(probs.shape, probs.dtype, "dropped")
        if keep is not None:
            torch.mul(probs, keep, out=work)  # the dropped probabilities again (cheaper than keeping them)
            grad_v = torch.matmul(work.transpose(-2, -1), grad)
        else:
            grad_v = torch.matmul(probs.transpose(-2, -1), grad)
        torch.matmul(grad, v.transpose(-2, -1), out=work)  # dA (before the mask)
        if keep is not None:
            work.mul_(keep)
        row = (grad * y).sum(dim=-1, keepdim=True)  # Σ_j dA_ij A_ij = dY_i · Y_i
        work.sub_(row).mul_(probs)  # dS, the gradient of the scaled scores
        grad_q = torch.matmul(work, k).mul_(ctx.scale)
        grad_k = torch.matmul(work.transpose(-2, -1), q).mul_(ctx.scale)
        ctx.buffers.release(ctx.token)
        ctx.probs = ctx.keep = ctx.token = None
        return grad_q, grad_k, grad_v, None, None


def attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float,
                           buffers: AttentionBuffers) -> torch.Tensor:
    """softmax(q kᵀ / √d) with dropout (rate `dropout.quantised_rate(p)`) times v; q, k, v: (B, H, L, d)."""
    dtype = v.dtype  # under autocast v is the matmul's output dtype; rotary embeddings may promote q, k
    q, k, v = (t.to(dtype).contiguous() for t in (q, k, v))
    with torch.autocast(q.device.type, enabled=False):  # its dtype is chosen: nothing to cast inside
        return _AttentionDropout.apply(q, k, v, p, buffers)
