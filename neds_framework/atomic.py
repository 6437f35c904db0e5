"""Atomic file writes: write beside the target, then rename over it.

A reader (or a later run) therefore sees either the old complete file or the new complete file,
never a half-written one, even if the writer is killed. Temp names start with '.' and end with
'.tmp-<pid>-<random>' so they can never be mistaken for the real file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

from neds_framework.errors import NedsRunError, os_error


def temp_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if tmp.exists():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        # A full disk or an unwritable folder is reported against the file the user knows (the
        # target), not the hidden temp file; the previous file at `path` is untouched.
        if exc.filename is None or str(exc.filename) in (str(tmp), str(path), str(path.parent)):
            raise os_error(exc, path, "writing it") from None
        raise
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


#: Room kept free beyond a write's own bytes: HDF5's metadata and the blocks it flushes on close.
ROOM_MARGIN_BYTES = 4 << 20


def ensure_room(path: str | Path, nbytes: int, doing: str, setting: str) -> None:
    """Refuse, before writing, a write of about `nbytes` that the disk holding `path` has no room for.

    HDF5 cannot be trusted to fail cleanly on a full disk: after a failed write, closing the file
    can crash the interpreter (a segfault in H5Fclose, seen with h5py 3 on tmpfs). So the HDF5
    writers (the store, the run record) check the free space first; `setting` names what to point
    elsewhere (data.store, run.dir).
    """
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    need = int(nbytes * 1.05) + ROOM_MARGIN_BYTES
    if free < need:
        mib = 1 << 20
        raise NedsRunError(
            f"{path}: not enough free space for {doing} (about {need / mib:.1f} MiB needed, {free / mib:.1f} MiB "
            f"free on that disk); free space there, or point {setting} at a disk with room"
        )
