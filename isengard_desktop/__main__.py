"""Start Isengard Desktop: no arguments opens the window; a subcommand runs the command-line interface.

In the installer bundle (PyInstaller, ``sys.frozen``) this is also the entry of every job worker
(``isengard --run-worker isengard_desktop.jobs.worker JOB_DIR|--serve``, built by jobs/runner.py) and of the
photo importer's multiprocessing children: there is no ``python -m`` inside a bundle. ``isengard -c CODE`` runs
CODE like ``python -c`` there, for the checks that ask the app's own interpreter (Doctor's torch probe).
"""

from __future__ import annotations

import os
import sys

from isengard_desktop.jobs.protocol import FROZEN_WORKER_ARG


def _frozen_setup() -> None:
    """Make the bundled executable behave like the source checkout for the processes it starts.

    PyInstaller's bootloader puts the bundle's own libraries first on LD_LIBRARY_PATH (keeping the original in
    LD_LIBRARY_PATH_ORIG). This process has already loaded what it needs; left in place, the variable makes
    programs we start (git, the system Python creating an engine's environment, the engines' own Pythons) load the
    bundle's copies of libssl, libz, libstdc++... instead of their own. Our own children (workers) get it set again
    by their bootloader.
    """
    for name in ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH"):
        original = os.environ.pop(f"{name}_ORIG", None)
        if original is not None:
            os.environ[name] = original
        elif getattr(sys, "_MEIPASS", "\0") in os.environ.get(name, ""):
            del os.environ[name]
    import multiprocessing

    multiprocessing.freeze_support()  # the importer's spawn children re-enter here with --multiprocessing-fork


def main(argv: list[str] | None = None) -> int:
    if getattr(sys, "frozen", False):
        _frozen_setup()
    argv = list(sys.argv[1:] if argv is None else argv)
    if getattr(sys, "frozen", False) and argv[:1] == ["-c"] and len(argv) > 1:
        # `python -c CODE` for code that asks the app's own interpreter (Doctor's torch probe runs
        # `sys.executable -c ...`): in the bundle that interpreter is this executable.
        sys.argv = ["-c", *argv[2:]]
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102
        return 0
    if argv[:1] == [FROZEN_WORKER_ARG]:  # isengard --run-worker MODULE ARG (the module is always the worker)
        from isengard_desktop.jobs import worker

        sys.argv = [sys.argv[0], *argv[2:]]
        return worker.main()
    from isengard_desktop.cli.main import is_gui_invocation

    if is_gui_invocation(argv):
        from isengard_desktop.cli.main import gui_volume_arg
        from isengard_desktop.ui.app import run_gui

        return run_gui(gui_volume_arg(argv))
    from isengard_desktop.cli.main import run_cli

    return run_cli(argv)


def _ends_at_once(argv: list[str]) -> bool:
    """Whether this process may skip the interpreter's teardown when it is done (base/process_exit.py): a CLI
    command or a bundled worker, not the window (Qt cleans up as usual) nor ``-c CODE`` (its own atexit hooks)."""
    from isengard_desktop.cli.main import is_gui_invocation

    return argv[:1] != ["-c"] and not is_gui_invocation(argv)


if __name__ == "__main__":
    at_once = _ends_at_once(sys.argv[1:])  # before main() rewrites sys.argv for a worker or -c
    code = main()
    if at_once:
        from isengard_desktop.base.process_exit import exit_now

        exit_now(code)
    sys.exit(code)
