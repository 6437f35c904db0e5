"""Naming the file behind a failed load.

ONE and brainbox raise whatever numpy or pyarrow raise when a file is damaged, often without the
file's name (a truncated .npy says only how many elements it could read). When a session fails to
load, every ALF file of it is checked here, cheaply (the .npy header and size, the parquet
footer), so that the error names the damaged file and the user knows what to re-download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as the ALF file its name says, or None when it looks intact."""
    try:
        if path.suffix == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)  # header + size check, no full read
            if array.dtype.hasobject:
                return "holds Python objects, not numbers"
        elif path.suffix == ".pqt":
            import pyarrow.parquet as pq

            pq.read_metadata(path)
    except Exception as exc:  # what numpy/pyarrow say about a damaged file: we report it, not raise
        text = " ".join(str(exc).split())
        if "pickle" in text:  # numpy's advice to load it unsafely is the wrong advice for a damaged file
            return "not a numpy array file (its header is damaged, or it holds pickled objects, never loaded)"
        return f"not a readable {path.suffix[1:]} file ({text[:160] or type(exc).__name__})"
    return None


def damaged_files(folder: Path) -> list[tuple[Path, str]]:
    """Every .npy / .pqt file under `folder` that cannot be read, with the reason."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix in (".npy", ".pqt") and path.is_file():
            problem = file_problem(path)
            if problem:
                found.append((path, problem))
    return found
