"""`isengard engines status`: which upstream engines are installed, at which commit, against the pins."""

from __future__ import annotations

import argparse

from isengard_desktop.cli.output import emit_json, say
from isengard_desktop.context import AppContext
from isengard_desktop.core.engines_status import pins, status


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("engines", help="upstream engines (AI-Toolkit, ComfyUI) against their pins")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("status", parents=[common], help="installed or not, commit, environment").set_defaults(
        handler=status_cmd)


def status_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    report = [status(name, ctx.volume.root) for name in pins()["engines"]]
    if args.json:
        emit_json([item.to_json() for item in report])
        return 0
    for item in report:
        say(f"{item.name}\tpin {item.pinned_commit}\t{'installed' if item.installed else 'not installed'}\t"
            f"{item.detail}")
    return 0
