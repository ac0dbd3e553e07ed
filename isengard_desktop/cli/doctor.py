"""`isengard doctor [--json] [--offline]`: every check of the machine with its fix; exit code 1 when one fails."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from isengard_desktop.cli.output import emit_json, say
from isengard_desktop.context import AppContext

MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("doctor", parents=[common],
                            help="check the volume, GPU, driver, torch builds, engines, models and token")
    parser.add_argument("--offline", action="store_true", help="do not ask the Hugging Face hub about the token")
    parser.set_defaults(handler=doctor_cmd, action="run")


def doctor_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    from isengard_desktop.core.doctor import run_checks

    return _print(run_checks(ctx, online=not args.offline), args)


def unusable_volume(root: Path, error: Exception, args: argparse.Namespace) -> int:
    """The volume cannot even be opened: the report says so (the other checks need a volume to look at)."""
    from isengard_desktop.core.doctor import FAIL, Check

    return _print([Check("Volume folder", FAIL, str(error),
                         f"Choose another volume folder with --volume (or in Settings), or make {root} a folder "
                         "you can write to, then run `isengard doctor` again.", "open_settings:volume")], args)


def _print(checks: list, args: argparse.Namespace) -> int:
    from isengard_desktop.core.doctor import report

    result = report(checks)
    if args.json:
        emit_json(result)
    else:
        width = max(len(c.name) for c in checks)
        for check in checks:
            say(f"{MARKS[check.status]}  {check.name:<{width}}  {check.detail}")
            if check.status != "ok":
                say(textwrap.indent(textwrap.fill(f"Fix: {check.fix}", 100), " " * (width + 8)))
        say(result["summary"]["text"])
    return 1 if result["summary"]["fail"] else 0
