"""One run at a time per output folder: an flock on `<output folder>/run.lock`.

Two runs on one ML Metadata store would interleave executions and artifacts of the same
components (and SQLite would make one fail with "database is locked" part-way). The lock is the
kernel's: it dies with its process, so a run killed with SIGKILL leaves no stale lock, only the
file, which holds the PID of the last run that took it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "run.lock"


class RunLockedError(RuntimeError):
    """Another process holds the output folder's lock."""

    def __init__(self, lock_path: Path, pid: int | None):
        self.lock_path, self.pid = lock_path, pid
        holder = f"PID {pid}" if pid else "a process whose PID is not yet written"
        super().__init__(
            f"another run ({holder}) is using {lock_path.parent}: it holds {lock_path}. Wait "
            "for it to finish, or pass another --output-dir. Two runs on one output folder "
            "would write the same ML Metadata store.")


def _holder(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def hold(output_dir: Path) -> Iterator[Path]:
    """Holds `output_dir`'s run lock for the block; raises RunLockedError at once if another
    process holds it (no waiting: a run takes minutes)."""
    lock_path = output_dir / LOCK_FILE
    # No O_TRUNC: the PID in the file is the holder's until the lock is ours.
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise RunLockedError(lock_path, _holder(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield lock_path
    finally:
        os.close(fd)  # releases the lock; the file stays, re-used by the next run
