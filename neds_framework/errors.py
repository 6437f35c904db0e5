"""Errors the user can act on.

The CLI prints a `NedsError` as one line (no traceback) and exits with its `exit_code`: 2 for bad
input (a recipe, a path, a name), 1 for a run that failed. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import errno
import os
import re


class NedsError(Exception):
    """A problem the user can fix. The message is one line: what is wrong and how to fix it."""

    exit_code = 2


class NedsRunError(NedsError):
    """A run that could not complete for a reason outside the recipe (data, disk, a failing plugin)."""

    exit_code = 1


_FIXES = {  # errno -> (exit code, the fix; the system's own text says what happened)
    errno.ENOSPC: (1, "free space there, or point run.dir (or the path named) at a disk with room"),
    errno.EDQUOT: (1, "free space there, or point run.dir at another disk"),
    errno.EROFS: (2, "choose a writable folder (e.g. --set run.dir=PATH)"),
    errno.EACCES: (2, "choose a folder you can write (e.g. --set run.dir=PATH) or fix its permissions"),
    errno.EPERM: (2, "choose a folder you can write (e.g. --set run.dir=PATH)"),
    errno.EISDIR: (2, "give the path of a file, not a folder"),
    errno.ENOTDIR: (2, "a part of the path is a file, not a folder; fix the path"),
    errno.ENOENT: (2, "check the path"),
    errno.EEXIST: (2, "remove it or choose another path"),
    errno.EIO: (1, "the disk reported an input/output error; check the device"),
}

# Some libraries (HDF5 through h5py) put the errno only into a multi-line message.
_ERRNO_IN_TEXT = re.compile(r"errno\s*=\s*(\d+)|\[Errno (\d+)\]")


def os_error(exc: OSError, path: object = None, doing: str = "") -> NedsError:
    """An OSError as the one-line error a user can act on: the file, what happened, the fix.

    `path` names the file when the exception does not (h5py's errors often do not); `doing` says
    what was being done ("writing the run record"). Disk-full and I/O errors are failed runs (exit 1);
    a wrong or unwritable path is bad input (exit 2).
    """
    number = exc.errno
    if number is None:
        found = _ERRNO_IN_TEXT.search(str(exc))
        number = int(next(g for g in found.groups() if g)) if found else None
    if number is None and "No space left" in str(exc):
        number = errno.ENOSPC
    name = exc.filename if exc.filename is not None else path
    code, fix = _FIXES.get(number, (1, ""))
    # The system's short text for a known errno; h5py's strerror spans lines and names the temp file.
    reason = os.strerror(number) if number else " ".join(str(exc.strerror or exc).split())[:200]
    where = f"{name}: " if name is not None else ""
    what = f" while {doing}" if doing else ""
    text = f"{where}{reason}{what}" + (f"; {fix}" if fix else "")
    error = NedsRunError(text) if code == 1 else NedsError(text)
    return error
