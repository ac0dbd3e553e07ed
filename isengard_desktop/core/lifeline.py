"""Pool workers that end with the process that started them, even when it is killed with SIGKILL.

Used as the import pool's initializer. Kept in a module of its own that imports nothing of the app: a
spawned worker imports the initializer's module, and the importer's (structlog, the database layer)
cost each worker 8 MB for nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

WATCHDOG_S = 1.0


def die_with_parent(parent_pid: int) -> None:
    """Pool worker initializer: end this worker when the importing process ends, even by SIGKILL.

    A worker waits for work on a pipe that nothing closes when its parent is killed, so it would live on
    for ever. On Linux the kernel kills it (PR_SET_PDEATHSIG, as the ComfyUI supervisor does); elsewhere,
    and in case the parent died before the call, a watchdog thread sees the parent change.

    PR_SET_PDEATHSIG fires when the *thread* that started the worker ends, not only the process: the
    importer creates, uses and shuts down its pool inside ``Importer.run`` on one thread (the window's
    background thread included), so that thread outlives its workers.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
