"""Per-session layers that can be added at any time ("stitching").

Sessions differ in neuron count, so each has its own input and output layers around the shared
transformer. They live in a module dictionary keyed by session id (the IBL eid), grown with
`add_session` whenever a session appears (training start, finetuning), never from a table fixed at
import time. Adding a session creates new parameters only, so every existing session's outputs
stay exactly as they were.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from neds_framework.errors import NedsError


def check_session_name(session: str) -> None:
    """Session ids become parameter names (state-dict keys), which cannot hold a dot."""
    if not isinstance(session, str) or not session or "." in session:
        raise NedsError(f"session id {session!r} cannot name a layer: use a non-empty id without '.', such as the IBL eid")


def unknown_session(session: str, owner: str, known) -> NedsError:
    listed = ", ".join(sorted(known)) or "(none)"
    return NedsError(
        f"{owner} has no layers for session '{session}' (known: {listed}); "
        f"add it with model.add_session('{session}', n_features) before using it (e.g. to finetune)"
    )


class SessionLayers(nn.Module):
    """One module per session, made by ``build(n_features)``.

    owner names the holder in errors ("spikes tokenizer").
    """

    def __init__(self, build: Callable[[int], nn.Module], owner: str):
        super().__init__()
        self._build = build
        self.owner = owner
        self.layers = nn.ModuleDict()

    def add_session(self, session: str, n_features: int) -> None:
        check_session_name(session)
        if session in self.layers:
            raise NedsError(f"{self.owner} already has session '{session}'")
        self.layers[session] = self._build(n_features)

    def __getitem__(self, session: str) -> nn.Module:
        try:
            return self.layers[session]
        except KeyError:
            raise unknown_session(session, self.owner, self.layers.keys()) from None

    def __contains__(self, session: object) -> bool:
        return session in self.layers


class SessionVectors(nn.Module):
    """One learned vector per session (the session embedding), grown like `SessionLayers`."""

    def __init__(self, size: int, owner: str = "session embedding", std: float = 0.02):
        super().__init__()
        self.size = size
        self.owner = owner
        self.std = std
        self.vectors = nn.ParameterDict()

    def add_session(self, session: str) -> None:
        check_session_name(session)
        if session in self.vectors:
            raise NedsError(f"{self.owner} already has session '{session}'")
        self.vectors[session] = nn.Parameter(torch.randn(self.size) * self.std)

    def __getitem__(self, session: str) -> torch.Tensor:
        try:
            return self.vectors[session]
        except KeyError:
            raise unknown_session(session, self.owner, self.vectors.keys()) from None

    def __contains__(self, session: object) -> bool:
        return session in self.vectors

    def sessions(self) -> list[str]:
        return list(self.vectors.keys())


class SessionScalars(nn.Module):
    """A fixed (not learned) vector per session, saved with the model: buffers grown like
    `SessionLayers`, starting at ``fill``."""

    def __init__(self, size: int, owner: str, fill: float = 1.0):
        super().__init__()
        self.size = size
        self.owner = owner
        self.fill = fill
        self.values = nn.Module()

    def add_session(self, session: str) -> None:
        check_session_name(session)
        if hasattr(self.values, session):
            raise NedsError(f"{self.owner} already has session '{session}'")
        self.values.register_buffer(session, torch.full((self.size,), float(self.fill)))

    def __getitem__(self, session: str) -> torch.Tensor:
        buffer = self.values._buffers.get(session)  # once per forward: no walk over every buffer
        if buffer is None:
            raise unknown_session(session, self.owner, self.values._buffers.keys())
        return buffer

    def set(self, session: str, values) -> None:
        self[session].copy_(torch.as_tensor(values, dtype=torch.float32))
