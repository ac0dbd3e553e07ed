"""`isengard`: argument parsing, the context every command runs in, and how errors reach the user.

Results go to stdout (JSON with ``--json``); logs go to the volume's log file and, at warning level,
to stderr; an error a person can meet ends the command with one sentence on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import sys

from isengard_desktop import __version__
from isengard_desktop.base.errors import IsengardError, ValidationError, VolumeError


def is_gui_invocation(argv: list[str]) -> bool:
    """No subcommand (only ``--volume DIR``, if anything) means: open the window."""
    rest = list(argv)
    while rest:
        head = rest.pop(0)
        if head == "--volume" and rest:
            rest.pop(0)
        elif head.startswith("--volume="):
            continue
        else:
            return False
    return True


def gui_volume_arg(argv: list[str]) -> str | None:
    for i, item in enumerate(argv):
        if item == "--volume" and i + 1 < len(argv):
            return argv[i + 1]
        if item.startswith("--volume="):
            return item.split("=", 1)[1]
    return None


# The module that registers each command. Parsing a known command imports only its module (issue 14: a light
# command should not pay for importing every other one); anything else (help, a typo) builds the whole parser.
COMMAND_MODULES = {"characters": "characters", "dataset": "dataset", "train": "jobs", "jobs": "jobs",
                   "engines": "engines", "generate": "generate", "doctor": "doctor", "models": "models",
                   "remotes": "remotes"}
ALL_MODULES = ("characters", "dataset", "jobs", "engines", "generate", "doctor", "models", "remotes")  # help order


def command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option or --volume's value)."""
    rest = list(argv)
    while rest:
        head = rest.pop(0)
        if head == "--volume" and rest:
            rest.pop(0)
        elif not head.startswith("-"):
            return head
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    # Options every command accepts, before or after the subcommand. SUPPRESS keeps a value given
    # before the subcommand from being overwritten by the subcommand's default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--volume", metavar="DIR", default=argparse.SUPPRESS, help="the volume folder to use")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print a JSON result")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="logs on stderr")

    parser = argparse.ArgumentParser(
        prog="isengard",
        parents=[common],
        description="Isengard Desktop. Without a command, opens the window.",
    )
    parser.add_argument("--version", action="version", version=f"isengard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import importlib

    command = command_of(argv) if argv is not None else None
    for name in (COMMAND_MODULES[command],) if command in COMMAND_MODULES else ALL_MODULES:
        module = importlib.import_module(f"isengard_desktop.cli.{name}")
        (module.add_parsers if name == "jobs" else module.add_parser)(sub, common)
    return parser


def confirm(args: argparse.Namespace, question: str) -> None:
    """Destructive commands need --yes, or a 'y' typed at an interactive prompt."""
    if getattr(args, "yes", False):
        return
    if sys.stdin.isatty():
        answer = input(f"{question} [y/N] ").strip().lower()
        if answer in ("y", "yes"):
            return
        raise ValidationError("Nothing was deleted.")
    raise ValidationError(f"{question} Add --yes to confirm; nothing was deleted.")


def run_cli(argv: list[str]) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    args.json = getattr(args, "json", False)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from isengard_desktop import bootstrap
    from isengard_desktop.base import log as app_log
    from isengard_desktop.base.mode import resolve_mode
    from isengard_desktop.storage.volume import resolve_volume_root

    verbose = getattr(args, "verbose", False)
    stderr = {"stderr_level": logging.INFO if verbose else logging.WARNING, "stderr_for_people": not verbose}
    app_log.configure(None, **stderr)  # until the volume is open: a refused volume is said on stderr
    ctx = None
    try:
        mode = resolve_mode()
        try:
            volume = bootstrap.open_volume(getattr(args, "volume", None))
        except VolumeError as exc:
            if args.command == "doctor":  # the doctor's job is to explain exactly this
                from isengard_desktop.cli.doctor import unusable_volume

                return unusable_volume(resolve_volume_root(getattr(args, "volume", None))[0], exc, args)
            raise
        with app_log.correlation(f"cli_{args.command}_{args.action}"):
            ctx = bootstrap.start(volume, mode, **stderr)
            return int(args.handler(ctx, args) or 0)
    except IsengardError as exc:
        sys.stderr.write(f"isengard: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("isengard: interrupted; everything finished before the interruption is kept.\n")
        return 130
    finally:
        if ctx is not None:
            ctx.close()
