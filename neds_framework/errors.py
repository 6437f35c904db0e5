"""Errors the user can act on.

The CLI prints a `NedsError` as one line (no traceback) and exits with its `exit_code`: 2 for bad
input (a recipe, a path, a name), 1 for a run that failed. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class NedsError(Exception):
    """A problem the user can fix. The message is one line: what is wrong and how to fix it."""

    exit_code = 2


class NedsRunError(NedsError):
    """A run that could not complete for a reason outside the recipe (data, disk, a failing plugin)."""

    exit_code = 1
