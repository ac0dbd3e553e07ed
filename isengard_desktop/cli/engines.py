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
    install = actions.add_parser("install", parents=[common], help="install an engine at its pinned commit")
    install.add_argument("name", metavar="NAME")
    install.add_argument("--source", metavar="DIR", help="a local git clone to take the pinned commit from")
    install.set_defaults(handler=install_cmd)
    update = actions.add_parser("update", parents=[common], help="move an engine's pin to COMMIT and reinstall")
    update.add_argument("name", metavar="NAME")
    update.add_argument("commit", metavar="COMMIT")
    update.add_argument("--source", metavar="DIR", help="a local git clone to take the commit from")
    update.set_defaults(handler=install_cmd)


def install_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    from pathlib import Path

    from isengard_desktop.cli.output import ProgressBar
    from isengard_desktop.core.engines_install import install, update

    bar = ProgressBar(f"Installing {args.name}", enabled=not args.json)
    source = Path(args.source) if args.source else None
    show = lambda done, total, what: bar.update(done, total, what)  # noqa: E731
    if args.action == "update":
        record = update(args.name, args.commit, ctx.volume.root, source, show)
    else:
        record = install(args.name, ctx.volume.root, source, show)
    bar.close()
    if args.json:
        emit_json(record)
    else:
        say(f"{args.name} installed at {record['commit'][:12]} in {ctx.volume.engine_dir(args.name)}")
    return 0


def status_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    report = [status(name, ctx.volume.root) for name in pins()["engines"]]
    if args.json:
        emit_json([item.to_json() for item in report])
        return 0
    for item in report:
        say(f"{item.name}\tpin {item.pinned_commit}\t{'installed' if item.installed else 'not installed'}\t"
            f"{item.detail}")
    return 0
