"""`isengard models list|download|verify|remove|get`: base models per engine, downloads as jobs, checks.

Downloads run as jobs of kind "download" (engine "hub") of the same job manager the window uses, followed here
with a text progress bar (bytes, speed, time left); Ctrl+C stops the download and keeps the bytes on disk, and
`isengard jobs resume JOB` (or the same command again) continues from them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from isengard_desktop.base.errors import ValidationError
from isengard_desktop.cli.output import ProgressBar, emit_json, say
from isengard_desktop.context import AppContext
from isengard_desktop.core.units import human_bytes

ENGINES = ("comfyui", "diffusers", "aitoolkit")
EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 3, "interrupted": 3}


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("models", help="base models: list, download, verify, remove, get one file")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[common], help="each model's files per engine: size, state, where").set_defaults(
        handler=list_cmd)
    download = actions.add_parser("download", parents=[common], help="download a base model (resumable job)")
    download.add_argument("model", metavar="MODEL")
    download.add_argument("--for", dest="engines", action="append", metavar="ENGINE",
                          help="comfyui, diffusers or aitoolkit (repeatable, or comma-separated); default: the "
                               "engines installed")
    download.add_argument("--variant", help="e.g. fp8 for ComfyUI's smaller T5 text encoder")
    download.add_argument("--no-check-reuse", action="store_true",
                          help="link files found on the machine without hashing them first")
    download.add_argument("--token-stdin", action="store_true",
                          help="read the Hugging Face token from the first line of stdin and download in this "
                               "process (how another computer's app downloads here over SSH: never on a command line)")
    download.set_defaults(handler=download_cmd)
    verify = actions.add_parser("verify", parents=[common], help="check every file's sha256 (slow for big files)")
    verify.add_argument("model", metavar="MODEL", nargs="?")
    verify.add_argument("--force", action="store_true", help="hash again files verified before")
    verify.set_defaults(handler=verify_cmd)
    remove = actions.add_parser("remove", parents=[common], help="delete a model's files (shared files are kept)")
    remove.add_argument("model", metavar="MODEL")
    remove.add_argument("--for", dest="engines", action="append", metavar="ENGINE",
                        help="remove only what this engine reads (repeatable, or comma-separated); default: all")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    remove.set_defaults(handler=remove_cmd)
    get = actions.add_parser("get", parents=[common], help="download one file of any hub repository")
    get.add_argument("repo", metavar="REPO", help="owner/name on the hub")
    get.add_argument("file", metavar="FILE", help="the file's path in the repository")
    get.add_argument("--to", dest="folder", required=True, metavar="FOLDER",
                     help="a folder inside the volume's models/ (e.g. loras, checkpoints)")
    get.add_argument("--revision", default="main")
    get.set_defaults(handler=get_cmd)


def human(size: int | None) -> str:
    return "?" if size is None else human_bytes(size)


def chosen_engines(values: list[str] | None) -> list[str] | None:
    """``--for comfyui --for diffusers`` or ``--for comfyui,diffusers``; None when not given."""
    if not values:
        return None
    names = [n.strip().lower() for v in values for n in v.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        raise ValidationError(f"There is no engine {unknown[0]!r}; choose among {', '.join(ENGINES)}.")
    return list(dict.fromkeys(names))


def _extra_dirs(ctx: AppContext) -> list[Path]:
    return [Path(p) for p in ctx.settings.extra_model_dirs]


def default_engines(ctx: AppContext) -> list[str]:
    """The engines that train or generate here without an install (the built-in one), and the upstream engines
    installed in this volume (cheap: their checkout is found, the environment is not checked)."""
    from engines import registry
    from isengard_desktop.core.engines import load

    chosen = []
    for name in registry.names():
        engine = load(ctx.volume, name)
        if not {"training", "image"} & set(engine.traits.kinds):
            continue
        if engine.traits.upstream is None or not isinstance(engine.locate(), str):
            chosen.append(name)
    return chosen


# -- list / verify ------------------------------------------------------------------------------------------
def _print_status(statuses: list[Any]) -> None:
    for model in statuses:
        m = model.model
        say(f"{m.title} ({m.id}) — {m.repo}{' [gated]' if m.gated else ''}")
        for name, engine in model.engines.items():
            variant = f" ({engine.variant})" if engine.variant else ""
            missing = f", {human(engine.missing_bytes)} to download" if engine.missing_bytes else ""
            say(f"  {name}{variant}: {engine.state}{' and ready' if engine.ready else ''} — "
                f"{human(engine.total_bytes)}{missing}")
            for item in engine.files:
                shown = item.where and not (item.in_place and item.source == "volume")
                where = f" at {item.where}" if shown else ""
                note = f" ({item.source})" if item.source not in ("", "volume") else ""
                say(f"    {item.state:<9} {human(item.placement.file.size):>9}  {item.placement.dest}{note}{where}")
                if item.problem:
                    say(f"      problem: {item.problem}")


def list_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    from isengard_desktop.core.models import inventory

    statuses = inventory.status(ctx.volume, _extra_dirs(ctx))
    if args.json:
        emit_json([s.to_json() for s in statuses])
    else:
        _print_status(statuses)
    return 0


def verify_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    from isengard_desktop.core.models import inventory

    bar = ProgressBar("Verifying", enabled=not args.json)
    statuses = inventory.verify(ctx.volume, _extra_dirs(ctx), args.model,
                                on_progress=lambda done, total, path: bar.update(done, total, Path(path).name),
                                force=args.force)
    bar.close()
    problems = [f.problem for s in statuses for e in s.engines.values() for f in e.files if f.problem]
    if args.json:
        emit_json([s.to_json() for s in statuses])
    else:
        _print_status(statuses)
    for problem in dict.fromkeys(problems):
        sys.stderr.write(f"isengard: {problem}\n")
    return 1 if problems else 0


def remove_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    from isengard_desktop.base import catalogue
    from isengard_desktop.cli.main import confirm
    from isengard_desktop.core.models import removal

    model = catalogue.get(args.model)
    engines = chosen_engines(args.engines) or model.engines()
    confirm(args, f"Delete the files of {model.title} that only {', '.join(engines)} read?")
    freed = removal.remove(ctx.volume, model.id, engines)
    if args.json:
        emit_json({"model": model.id, "engines": engines, "freed_bytes": freed})
    else:
        say(f"Removed {model.title} for {', '.join(engines)}: {human(freed)} freed.")
    return 0


# -- download / get -----------------------------------------------------------------------------------------
def _transfer(event: dict[str, Any]) -> str:
    speed, eta = event.get("speed"), event.get("eta")
    return (f"{human(int(speed))}/s" if speed else "") + (f" {eta:.0f}s left" if eta else "")


def follow_download(ctx: AppContext, job: Any, quiet: bool) -> Any:
    """Wait for a download job with a bytes progress bar; Ctrl+C stops it, keeping what was downloaded."""
    from isengard_desktop.cli.jobs import follow

    title = job.params.get("spec", {}).get("title", f"Download {job.id}")[:40]
    return follow(ctx, job, False, quiet, title, describe=_transfer, stopping="the bytes so far are kept")


def _run_job(ctx: AppContext, args: argparse.Namespace, spec: dict[str, Any], plan_json: dict[str, Any]) -> int:
    job = ctx.jobs.submit("download", "hub", spec, meta={"model": spec.get("model")})
    final = follow_download(ctx, job, args.json)
    if args.json:
        emit_json({**final.to_json(), "plan": plan_json})
    else:
        say(f"Job {final.id}: {final.state}")
    if final.error:
        sys.stderr.write(f"isengard: {final.error}\n")
    return EXIT_CODES.get(final.state, 1)


def download_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    from isengard_desktop.base import catalogue
    from isengard_desktop.core.models import planning

    if args.token_stdin:  # first, before anything can fail: the sender's pipe is read whatever happens next
        from isengard_desktop.core.secrets import use_hf_token

        use_hf_token(sys.stdin.readline())
    model = catalogue.get(args.model)
    # A model no default engine reads (the face embedder, the captioner) is downloaded for the readers it has.
    engines = (chosen_engines(args.engines) or [e for e in default_engines(ctx) if e in model.engines()]
               or model.engines())
    if args.variant and not any(args.variant in model.variants(e) for e in engines):
        raise ValidationError(f"{model.title} has no variant {args.variant!r} for {', '.join(engines)}.")
    bar = ProgressBar("Checking files found on this machine", enabled=not args.json)
    plan = planning.plan_download(ctx.volume, _extra_dirs(ctx), model.id, engines, args.variant,
                                  verify_reuse=not args.no_check_reuse,
                                  on_progress=lambda done, total, path: bar.update(done, total, Path(path).name))
    bar.close()
    if plan.nothing_to_do:
        if args.json:
            emit_json({"state": "succeeded", "plan": plan.to_json()})
        else:
            say(f"{model.title} is already complete for {', '.join(engines)}.")
        return 0
    if not plan.enough_space:
        raise ValidationError(f"Downloading {model.title} needs {human(plan.download_bytes)} but only "
                              f"{human(plan.free_bytes)} is free in {ctx.volume.models_dir}; free some space or "
                              "choose a volume on a larger disk.")
    if not args.json:
        say(f"{plan.spec['title']}: {len(plan.spec['files'])} files, {human(plan.download_bytes)} to download"
            + (f", {len(plan.reused)} found on this machine and linked" if plan.reused else "") + ".")
    if args.token_stdin:
        return _run_here(ctx, plan.spec)
    return _run_job(ctx, args, plan.spec, plan.to_json())


def _run_here(ctx: AppContext, spec: dict[str, Any]) -> int:
    """Download in this process (its token was given on stdin: a worker process would read the keyring), each
    event a JSON line on stdout for the app that asked over SSH, then ``{"state": ...}``."""
    import json

    from isengard_desktop.core.models import download_job

    def emit(event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    state = download_job.run(spec, emit, lambda: False, ctx.volume.models_dir)
    emit({"state": state})
    return EXIT_CODES.get(state, 1)


def get_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    from isengard_desktop.core.models import planning

    plan = planning.plan_get(ctx.volume, args.repo, args.file, args.folder, args.revision)
    if not args.json:
        say(f"Downloading {args.repo}/{args.file} into {Path(plan.spec['files'][0]['dest']).parent}.")
    return _run_job(ctx, args, plan.spec, plan.to_json())
