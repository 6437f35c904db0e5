"""What every benchmark shares: the machine it ran on, and writing its results atomically."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from neds_framework.atomic import atomic_write_text

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    import numpy
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
    }


def write_results(name: str, report: dict, markdown: str, quick: bool) -> Path:
    """results/<name>.json and .md; a --quick run writes <name>_quick.* (not committed)."""
    stem = RESULTS / (f"{name}_quick" if quick else name)
    atomic_write_text(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    atomic_write_text(stem.with_suffix(".md"), markdown)
    return stem
