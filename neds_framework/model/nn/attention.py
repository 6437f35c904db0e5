"""Multi-head self-attention: PyTorch's fused scaled-dot-product attention, or on CPU a buffered one.

No attention mask: every token sees every other, as in the reference. Attention dropout and the
fused kernel do not mix on CPU: with dropout > 0, `scaled_dot_product_attention` falls back to an
unfused path that draws a Bernoulli mask over every (head, query, key) and allocates its (L, L)
tensors anew each step, most of the reference's step time (neds-facts.md §11). So on CPU, with
attention dropout, or in bf16 training (where the CPU's fused backward is slower than bf16 matmuls), this
module runs `attention_dropout.attention_with_dropout`, which keeps its (L, L) buffers per layer;
elsewhere (fp32 without attention dropout, GPUs, whose fused kernels take dropout) it calls the
fused function. Measured in benchmarks/results/train_step.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neds_framework.model.nn.attention_dropout import AttentionBuffers, attention_with_dropout
from neds_framework.model.nn.rotary import apply_rotary


def buffered_path(device: torch.device, dtype: torch.dtype, p: float, backward: bool = True) -> bool:
    """Whether the buffered CPU attention is the faster one here (see the module doc).

    Forward only (inference, evaluation), the fused kernel wins in bf16 too: 3.0 against 3.5 ms
    per trial and layer at 500 tokens (batch 16, 2 threads, profiled in the model); its backward
    is what is slow.
    """
    return device.type == "cpu" and (p > 0.0 or (dtype == torch.bfloat16 and backward))


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of the {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.buffers_ = AttentionBuffers()  # this layer's (L, L) buffers on CPU; not state

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        b, length, hidden = x.shape
        # One matmul for q, k and v; (3, B, heads, L, head_dim) views of its output.
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        p = self.dropout if self.training else 0.0
        if buffered_path(x.device, v.dtype, p, backward=torch.is_grad_enabled() and v.requires_grad):
            y = attention_with_dropout(q, k, v, p, self.buffers_)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(b, length, hidden))
