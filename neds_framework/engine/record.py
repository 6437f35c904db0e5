"""The run record: one HDF5 file, `run.h5`, per run folder.

It holds the resolved recipe, the versions of the framework and of every plugin, the seed, the
hash of the prepared data, the training history (per step and per epoch), checkpoints, and
evaluation results. The whole file is rewritten atomically (temp file + rename) each time it is
saved, so a run killed at any moment leaves the previous complete record, never a torn one.

Checkpoints are the bytes of `torch.save` of plain tensors and numbers, stored as uint8
datasets, and are read back with `torch.load(..., weights_only=True)`: loading a record never
unpickles arbitrary objects.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from neds_framework.atomic import atomic_path, ensure_room
from neds_framework.errors import NedsError, NedsRunError

RECORD_NAME = "run.h5"
SCHEMA_VERSION = 1


def checkpoint_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def load_checkpoint_bytes(data: bytes) -> dict:
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays in meta values become plain JSON numbers and lists."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"meta value of type {type(value).__name__} cannot be stored as JSON")


class RunRecord:
    """In-memory view of a run record, saved whole and atomically."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / RECORD_NAME
        self.meta: dict[str, Any] = {}
        self.history: dict[str, dict[str, list[float]]] = {"step": {}, "epoch": {}}
        self.checkpoints: dict[str, bytes] = {}
        self.results: dict[str, dict[str, np.ndarray]] = {}  # group path -> arrays (evaluation)

    # ------------------------------------------------------------------ filling

    def log(self, level: str, values: dict[str, float]) -> None:
        """Append one row of scalars to the 'step' or 'epoch' history; columns absent from this
        row (or new in it) are padded with NaN so every column has one value per row."""
        table = self.history[level]
        rows = len(next(iter(table.values()))) if table else 0
        for key in values.keys() - table.keys():
            table[key] = [float("nan")] * rows
        for key, column in table.items():
            column.append(float(values.get(key, float("nan"))))

    def meta_value(self, key: str, default: Any = None) -> Any:
        """A meta entry as it was put: strings are stored as they are, everything else as JSON."""
        if key not in self.meta:
            return default
        value = self.meta[key]
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            return value

    def put_checkpoint(self, name: str, state: dict) -> None:
        self.checkpoints[name] = checkpoint_bytes(state)

    def checkpoint(self, name: str) -> dict:
        if name not in self.checkpoints:
            known = ", ".join(sorted(self.checkpoints)) or "none"
            raise NedsError(f"{self.path}: no checkpoint '{name}' (checkpoints: {known})")
        try:
            return load_checkpoint_bytes(self.checkpoints[name])
        except Exception as exc:  # weights-only loading refused it, or the bytes are not a checkpoint
            # torch's own message spans lines and advises weights_only=False: the one thing not to do.
            wanted = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(exc))
            reason = (f"it asks to call {wanted.group(1)}, which weights-only loading refuses" if wanted
                      else f"{type(exc).__name__}, not a torch checkpoint")
            raise NedsRunError(
                f"{self.path}: dataset checkpoints/{name} was refused ({reason}); the file may have been tampered "
                f"with or damaged: rerun the training stage, or restore run.h5 from a trusted copy"
            ) from None

    # ------------------------------------------------------------------ disk

    def nbytes(self) -> int:
        """About the bytes `save` writes (before compression)."""
        arrays = [np.asarray(v) for arrays in self.results.values() for v in arrays.values()]
        return (sum(len(data) for data in self.checkpoints.values()) + sum(a.nbytes for a in arrays)
                + sum(8 * len(column) for table in self.history.values() for column in table.values())
                + sum(len(str(value)) for value in self.meta.values()))

    def save(self) -> None:
        ensure_room(self.path, self.nbytes(), "the run record", "run.dir")
        with atomic_path(self.path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs["schema_version"] = SCHEMA_VERSION
                for key, value in self.meta.items():
                    f.attrs[key] = str(value) if isinstance(value, str) else json.dumps(value, default=_json_default)
                for level, table in self.history.items():
                    group = f.create_group(f"history/{level}")
                    for key, column in table.items():
                        group.create_dataset(key, data=np.asarray(column, dtype=np.float64))
                group = f.create_group("checkpoints")
                for name, data in self.checkpoints.items():
                    group.create_dataset(name, data=np.frombuffer(data, dtype=np.uint8))
                for path, arrays in self.results.items():
                    group = f.require_group(path)
                    for key, value in arrays.items():
                        value = np.asarray(value)
                        if value.dtype.kind == "U":
                            group.create_dataset(key, data=value.astype(object), dtype=h5py.string_dtype())
                        else:
                            group.create_dataset(key, data=value, compression="gzip" if value.size > 1024 else None)

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunRecord":
        record = cls(run_dir)
        if not record.path.exists():
            raise NedsError(f"{record.path}: no run record here; is '{run_dir}' a run folder?")
        try:
            with h5py.File(record.path, "r") as f:
                version = f.attrs.get("schema_version")
                if version is None or int(version) != SCHEMA_VERSION:
                    found = "no schema version" if version is None else f"schema version {int(version)}"
                    raise NedsError(
                        f"{record.path}: run record has {found}, this neds-framework reads version "
                        f"{SCHEMA_VERSION}; inspect or resume it with the neds-framework that wrote it "
                        f"(its version is in the file's attrs) or start a new run"
                    )
                record.meta = {
                    k: (v.decode() if isinstance(v, bytes) else v)
                    for k, v in f.attrs.items()
                    if k != "schema_version"  # written by save() itself
                }
                for level in ("step", "epoch"):
                    for key, ds in f.get(f"history/{level}", {}).items():
                        record.history[level][key] = ds[...].tolist()
                for name, ds in f.get("checkpoints", {}).items():
                    record.checkpoints[name] = ds[...].tobytes()

                def collect(name, obj):
                    if isinstance(obj, h5py.Dataset) and not name.startswith(("history/", "checkpoints/")):
                        group, _, key = name.rpartition("/")
                        value = obj.asstr()[...] if h5py.check_string_dtype(obj.dtype) else obj[...]
                        record.results.setdefault(group, {})[key] = np.asarray(value)

                f.visititems(collect)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise NedsError(
                f"{record.path}: unreadable run record ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                f"it is not an HDF5 run record of this framework, or it is damaged"
            ) from None
        return record


# --------------------------------------------------------------------------- the eval table


def table_arrays(rows: list[tuple[str, str, str, str, float]]) -> dict[str, np.ndarray]:
    columns = list(zip(*rows)) if rows else [(), (), (), (), ()]
    names = ("session", "task", "modality", "metric")
    out = {name: np.asarray(col, dtype=str) for name, col in zip(names, columns[:4])}
    out["value"] = np.asarray(columns[4], dtype=np.float64)
    return out


def read_table(record: "RunRecord", split: str = "test") -> list[tuple[str, str, str, str, float]]:
    """The long table of a record's evaluation (empty when the run was not evaluated)."""
    table = record.results.get(f"eval/{split}/table")
    if not table or "value" not in table:
        return []
    return list(
        zip(
            table["session"].tolist(),
            table["task"].tolist(),
            table["modality"].tolist(),
            table["metric"].tolist(),
            table["value"].astype(float).tolist(),
        )
    )
