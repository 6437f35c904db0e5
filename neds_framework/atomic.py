"""Atomic file writes: write beside the target, then rename over it.

A reader (or a later run) therefore sees either the old complete file or the new complete file,
never a half-written one, even if the writer is killed. Temp names start with '.' and end with
'.tmp-<pid>-<random>' so they can never be mistaken for the real file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator

from neds_framework.errors import os_error


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
