"""Start Isengard Desktop: no arguments opens the window; a subcommand runs the command-line interface."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--run-worker"]:  # the installer bundle starts workers through the app binary
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


if __name__ == "__main__":
    sys.exit(main())
