"""TensorBoard event files of a run (`<run folder>/tensorboard/`).

A thin wrapper so stages can log without caring whether TensorBoard is on: `open_writer` gives a
`torch.utils.tensorboard.SummaryWriter` or, when disabled, an object that accepts the same calls
and does nothing. A resumed run passes ``purge_step`` so the steps logged after the checkpoint it
resumes from (and before the kill) are dropped, not shown twice.
"""

from __future__ import annotations

from pathlib import Path

from neds_framework.errors import NedsError, os_error

TENSORBOARD_DIR = "tensorboard"


class NullWriter:
    """Accepts every SummaryWriter call and writes nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def open_writer(run_dir: str | Path, enabled: bool = True, purge_step: int | None = None):
    if not enabled:
        return NullWriter()
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # tensorboard is a core requirement; say how to get it or turn it off
        raise NedsError(f"TensorBoard logging needs the 'tensorboard' package ({exc}); pip install tensorboard, or set tensorboard: false") from None
    log_dir = Path(run_dir) / TENSORBOARD_DIR
    try:
        return DiskErrorsNamed(SummaryWriter(log_dir=str(log_dir), purge_step=purge_step), log_dir)
    except OSError as exc:
        raise os_error(exc, log_dir, "writing TensorBoard events") from None


class DiskErrorsNamed:
    """A SummaryWriter whose disk errors name the event folder. Its background thread writes the
    events; a failure there (a full disk) comes back on the next call without a file name."""

    def __init__(self, writer, log_dir: Path):
        self._writer, self._log_dir = writer, log_dir

    def __getattr__(self, name):
        value = getattr(self._writer, name)
        if not callable(value):
            return value

        def call(*args, **kwargs):
            try:
                return value(*args, **kwargs)
            except OSError as exc:
                raise os_error(exc, self._log_dir, "writing TensorBoard events") from None

        return call
