"""One live writer per run folder.

Two runs writing one run folder would each rewrite run.h5 whole, and the last writer would win
silently. A run therefore holds `run.lock` in its folder while it runs: a small JSON file with the
writer's PID, host and start time, created with O_EXCL so that exactly one of two racing runs gets
it. A lock whose process is gone (a run killed with -9, a crashed node) is stale: on the same host
its PID is checked and the lock is taken over; a lock from another host cannot be checked from
here, so the refusal names the host and says how to clear it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from neds_framework.errors import NedsError

LOCK_NAME = "run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _read(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text())
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}  # a lock torn by a crash between create and write: nobody can hold it


class RunLock:
    """`with RunLock(run_dir):` holds the folder's lock for the block; released on exit."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.held = False

    def acquire(self) -> "RunLock":
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._refuse_or_clear()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise NedsError(f"{self.path}: could not take the run folder's lock; another run keeps taking it")

    def _refuse_or_clear(self) -> None:
        holder = _read(self.path)
        pid, host = holder.get("pid"), holder.get("host")
        here = socket.gethostname()
        if isinstance(pid, int) and host == here and pid != os.getpid() and _alive(pid):
            raise NedsError(
                f"{self.path.parent}: run folder in use by a live run (PID {pid} on {host}, since "
                f"{holder.get('started', '?')}); wait for it to finish, or give this run another run.name or run.dir"
            )
        if isinstance(pid, int) and host not in (None, here):
            raise NedsError(
                f"{self.path.parent}: run folder locked by PID {pid} on host {host} (since "
                f"{holder.get('started', '?')}); if that run is no longer running, delete {self.path}"
            )
        print(f"[neds-run] {self.path}: stale lock (PID {pid} on {host} is gone); taking it over", file=sys.stderr)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def release(self) -> None:
        if self.held:
            self.held = False
            if _read(self.path).get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
