"""One GPU job at a time across every Isengard process using a volume (the window and the CLI alike).

An exclusive ``flock`` on ``jobs/.gpu.lock``. The lock belongs to the open file description, not to a
process: the manager opens the file once and hands that descriptor to every worker it starts
(``inheritable_fds``, passed with ``subprocess.Popen(pass_fds=...)``), so the lock stays held while the
manager *or* a worker it started is alive. If the window or the CLI is killed, its orphaned worker keeps
the lock until it exits, and no second GPU job starts beside it; when the job ends normally the manager
drops it with ``LOCK_UN``, which frees it for all holders at once. The operating system releases it when
the last holder dies, so a crash never leaves the volume locked.

On Windows (``msvcrt.locking``, a byte-range lock of the process) the lock stays with the manager only.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt


class GpuLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None  # opened once and kept: workers share this one open file description
        self._locked = False

    @property
    def held(self) -> bool:
        return self._locked

    def inheritable_fds(self) -> tuple[int, ...]:
        """The descriptor a worker should inherit so that it holds the lock too (empty where that cannot work)."""
        return (self._fd,) if fcntl is not None and self._fd is not None else ()

    def try_acquire(self) -> bool:
        if self._locked:
            return True
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                msvcrt.locking(self._fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        self._locked = True
        return True

    def release(self) -> None:
        """Unlock for every holder (this process and the workers that inherited the descriptor)."""
        if not self._locked or self._fd is None:
            return
        self._locked = False
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        else:
            msvcrt.locking(self._fd, msvcrt.LK_UNLCK, 1)

    def close(self) -> None:
        """Release and close the descriptor (a worker that inherited it keeps its own reference)."""
        try:
            self.release()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
