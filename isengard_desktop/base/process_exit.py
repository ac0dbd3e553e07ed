"""Ending a command-line or worker process without the interpreter's teardown, once its output is out.

Every file the app keeps is written atomically and closed before a command or a job ends (base/atomic.py); what
is left at exit is Python tearing down its modules one by one: about a second in a worker that loaded torch,
diffusers and transformers (E5), ~20 ms in a CLI command (E7), while the person waits. The window does not use
this: Qt's own clean-up runs as usual.
"""

from __future__ import annotations

import logging
import os
import sys


def exit_now(code: int) -> None:
    """Flush the standard streams and the log handlers, then end the process with ``code`` at once.

    The kernel closes the rest: descriptors (the GPU lock's among them), sockets, a CUDA context."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the reader is gone (the app, a closed pipe): nothing left to tell it
            pass
    logging.shutdown()
    os._exit(code)
