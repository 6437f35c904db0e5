"""Portable weights: a trained model as one ``.safetensors`` file that carries its own recipe.

A run record (run.h5) is the framework's own format; a safetensors file is what other tools and
model hubs read, and loading one executes nothing (it is tensors and a string header). The
header's metadata holds everything needed to rebuild the exact model without the run folder:

    neds_format       "neds-weights/1"
    recipe            the resolved recipe the model was trained with (YAML, as run folders keep it)
    model_sessions    JSON: eid -> modality -> input width (the per-session layers)
    n_bins            time bins per trial
    checkpoint        which checkpoint of the run (best | last)
    + provenance      source_run, framework_version, torch_version, seed

`finetune.pretrained` and `eval.run` accept such a file wherever they accept a run folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import torch

from neds_framework.atomic import atomic_path
from neds_framework.errors import NedsError

WEIGHTS_FORMAT = "neds-weights/1"
SUFFIX = ".safetensors"
_REQUIRED = ("neds_format", "recipe", "model_sessions", "n_bins")


@attrs.frozen
class Weights:
    state: dict[str, torch.Tensor]
    recipe_text: str
    sessions: dict[str, dict[str, int]]
    n_bins: int
    meta: dict[str, str]


def is_weights_file(path: str | Path) -> bool:
    return str(path).endswith(SUFFIX)


def write_weights(path: str | Path, state: dict[str, torch.Tensor], recipe_text: str,
                  sessions: dict[str, dict[str, int]], n_bins: int, provenance: dict[str, str] | None = None) -> Path:
    """Write the weights and their metadata atomically (temp file + rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    if not is_weights_file(path):
        raise NedsError(f"--weights {path}: the file name must end in {SUFFIX}")
    # safetensors refuses tensors that share memory (tied weights, views): each gets its own copy.
    tensors = {name: value.detach().to("cpu").contiguous().clone() for name, value in state.items()}
    meta = {"neds_format": WEIGHTS_FORMAT, "recipe": recipe_text, "model_sessions": json.dumps(sessions),
            "n_bins": str(int(n_bins)), **{k: str(v) for k, v in (provenance or {}).items()}}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_weights(path: str | Path) -> Weights:
    """Read a weights file written by `write_weights` (one-line errors for anything else)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise NedsError(f"{path}: no such weights file; give a {SUFFIX} file written by 'neds-run export RUN --weights FILE'")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            state = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise NedsError(f"{path}: not a readable safetensors file ({' '.join(str(exc).split())[:160]}); "
                        "it is damaged or of another format") from None
    missing = [key for key in _REQUIRED if key not in meta]
    if missing:
        raise NedsError(f"{path}: a safetensors file without neds-framework metadata ({', '.join(missing)} missing); "
                        "export weights with 'neds-run export RUN --weights FILE'")
    if meta["neds_format"] != WEIGHTS_FORMAT:
        raise NedsError(f"{path}: weights format {meta['neds_format']!r}; this neds-framework reads {WEIGHTS_FORMAT!r}")
    try:
        sessions = json.loads(meta["model_sessions"])
        n_bins = int(meta["n_bins"])
    except ValueError:
        raise NedsError(f"{path}: its model_sessions / n_bins metadata is not valid; re-export the weights") from None
    return Weights(state=state, recipe_text=meta["recipe"], sessions=sessions, n_bins=n_bins, meta=meta)
