"""`isengard remotes add|list|check|remove|bootstrap`: remote GPU machines reached over SSH (issue 16)."""

from __future__ import annotations

import argparse
import sys

from isengard_desktop.cli.output import emit_json, say
from isengard_desktop.context import AppContext


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("remotes", help="remote GPU machines reached over SSH")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", parents=[common], help="add a remote machine (nothing is installed yet)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--ssh", required=True, metavar="USER@HOST[:PORT]",
                     help="the address; a Host alias of your ~/.ssh/config works too")
    add.add_argument("--key", metavar="FILE", help="a private key file (its path is stored, never its content); "
                     "without it your agent and ~/.ssh/config decide")
    add.add_argument("--dir", metavar="PATH", help="the app's folder on the remote (default ~/.isengard-remote)")
    add.add_argument("--no-check", action="store_true", help="do not connect to it now")
    add.set_defaults(handler=add_cmd)
    actions.add_parser("list", parents=[common], help="the remotes added").set_defaults(handler=list_cmd)
    for name, handler, text in (("check", check_cmd, "connect and report GPU, VRAM, disk, OS, Python, app version"),
                                ("remove", remove_cmd, "forget a remote (nothing is deleted on it)"),
                                ("bootstrap", bootstrap_cmd, "install this version of the app on the remote")):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("name", metavar="NAME")
        action.set_defaults(handler=handler)


def add_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    from isengard_desktop.core.remote.registry import add_remote, make_remote

    remote = make_remote(args.name, args.ssh, args.key, args.dir)
    report = None
    if not args.no_check:
        from isengard_desktop.core.remote.check import check_remote

        # Connect before storing it: a typo or an unknown host key is said now, not at the first job.
        report = check_remote(remote)
    add_remote(ctx.volume, remote, ctx.settings)
    if args.json:
        emit_json({**remote.to_json(), "check": report.to_json() if report else None})
        return 0
    say(f"Added {remote.name} ({remote.address}), folder {remote.dir} there.")
    for line in report.lines() if report else []:
        say("  " + line)
    return 0


def list_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    from isengard_desktop.core.remote.registry import list_remotes

    remotes = list_remotes(ctx.volume)
    if args.json:
        emit_json([r.to_json() for r in remotes])
        return 0
    if not remotes:
        say("No remotes yet; add one with isengard remotes add NAME --ssh USER@HOST[:PORT].")
    for remote in remotes:
        say(f"{remote.name}\t{remote.address}\t{remote.dir}\t{'key ' + remote.key if remote.key else 'agent/config'}")
    return 0


def check_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    from isengard_desktop.core.remote.check import check_remote
    from isengard_desktop.core.remote.registry import get_remote

    report = check_remote(get_remote(ctx.volume, args.name))
    if args.json:
        emit_json(report.to_json())
        return 0
    say(f"{args.name}:")
    for line in report.lines():
        say("  " + line)
    return 0


def remove_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    from isengard_desktop.core.remote.registry import remove_remote

    remote = remove_remote(ctx.volume, args.name, ctx.settings)
    if args.json:
        emit_json(remote.to_json())
    else:
        say(f"Removed {remote.name}; its folder {remote.dir} there is left as it is.")
    return 0


def bootstrap_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    import time

    from isengard_desktop.core.remote.bootstrap import ensure_bootstrapped
    from isengard_desktop.core.remote.registry import get_remote

    started = time.monotonic()

    def progress(text: str) -> None:  # lines on stderr, so --json keeps stdout for the result
        sys.stderr.write(f"[{time.monotonic() - started:6.1f}s] {text}\n")
        sys.stderr.flush()

    install = ensure_bootstrapped(get_remote(ctx.volume, args.name), progress)
    if args.json:
        emit_json({"remote": args.name, "folder": install.folder, "python": install.python, "volume": install.volume,
                   "version": install.version, "torch": install.torch, "seconds": round(time.monotonic() - started, 1)})
    else:
        say(f"{args.name}: Isengard Desktop {install.version} in {install.folder} "
            f"({time.monotonic() - started:.0f} s).")
    return 0
