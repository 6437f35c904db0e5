"""What every benchmark shares: the machine it ran on, and writing its results atomically."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

from neds_framework.atomic import atomic_write_text

# NEDS_BENCH_RESULTS points a run elsewhere (the tests use a temporary folder).
RESULTS = Path(os.environ.get("NEDS_BENCH_RESULTS") or Path(__file__).parent / "results")


def _commit() -> str:
    """The checkout's commit, with '+changes' when the working tree differs from it; '' outside git."""
    try:
        root = Path(__file__).resolve().parents[1]
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True)
        return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return ""


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Where and with what a benchmark ran: CPU, cores, the versions that set the numbers, the commit."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import torch

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return ""

    return {
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "scikit-learn": installed("scikit-learn"),
        "h5py": installed("h5py"),
        "ONE-api": installed("ONE-api"),
        "neds-framework": installed("neds-framework"),
        "commit": _commit(),
    }


def write_results(name: str, report: dict, markdown: str, quick: bool) -> Path:
    """results/<name>.json and .md; a --quick run writes <name>_quick.* (not committed)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / (f"{name}_quick" if quick else name)
    atomic_write_text(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    atomic_write_text(stem.with_suffix(".md"), markdown)
    return stem
