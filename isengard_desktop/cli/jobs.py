"""`isengard train ...` and `isengard jobs list|show|cancel|resume`: the same job manager the window uses,
followed with a text progress bar or one JSON event per line."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from typing import Any

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.cli.output import ProgressBar, emit_json, say
from isengard_desktop.context import AppContext
from isengard_desktop.core.training import build_spec
from isengard_desktop.jobs import protocol
from isengard_desktop.storage.jobs_repo import JobRow

EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 3, "interrupted": 3}


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    train = sub.add_parser("train", parents=[common], help="train a LoRA for a character")
    train.add_argument("character", metavar="CHARACTER")
    train.add_argument("--preset", choices=["quick", "balanced", "high"], default="balanced")
    train.add_argument("--engine", help="diffusers (built in) or aitoolkit; default: the best available")
    train.add_argument("--steps", type=int)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--rank", type=int)
    train.add_argument("--alpha", type=int)
    train.add_argument("--save-every", type=int)
    train.add_argument("--sample-every", type=int)
    train.add_argument("--json-events", action="store_true", help="print every worker event as a JSON line")
    train.add_argument("--remote", metavar="NAME", help="train on a remote GPU machine (see `isengard remotes`)")
    train.add_argument("--plan-for-vram", type=float, metavar="GB",
                       help="print the GPU memory plan for a card of GB (e.g. 24) and start nothing")
    train.set_defaults(handler=train_cmd, action="train")

    jobs = sub.add_parser("jobs", help="list, show, cancel and resume jobs")
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[common], help="list jobs").set_defaults(handler=list_cmd)
    for name, handler, text in (("show", show_cmd, "show a job"), ("cancel", cancel_cmd, "ask a job to stop"),
                                ("resume", resume_cmd, "resume a job from its last checkpoint")):
        parser = actions.add_parser(name, parents=[common], help=text)
        parser.add_argument("job_id", metavar="JOB_ID")
        if name == "resume":
            parser.add_argument("--json-events", action="store_true")
        parser.set_defaults(handler=handler)
    bundle = actions.add_parser("bundle", parents=[common], help="write a job's debug bundle (secrets redacted)")
    bundle.add_argument("job_id", metavar="JOB_ID")
    bundle.add_argument("--output", metavar="FILE", required=True, help="the .zip file to write")
    bundle.add_argument("--include-images", action="store_true",
                        help="add the job's sample images, which show the person (left out by default)")
    bundle.set_defaults(handler=bundle_cmd)


def _training_engines(ctx: AppContext) -> list:
    from isengard_desktop.core.engines import list_engines

    return list_engines(ctx.volume, "training")


def _training_progress(event: dict[str, Any]) -> str:
    loss = event.get("loss")
    return f"loss {loss:.4f} eta {event.get('eta_s', 0):.0f}s" if loss is not None else ""


def follow(ctx: AppContext, job: JobRow, json_events: bool, quiet: bool, label: str = "",
           describe: Callable[[dict[str, Any]], str] = _training_progress,
           stopping: str = "saving a checkpoint first") -> JobRow:
    """Wait for a job, showing progress (``describe`` turns a progress event into the bar's text); Ctrl+C asks it
    to stop (``stopping`` says what that keeps), and the person can resume it later."""
    bar = ProgressBar(label or f"Training {job.id}", enabled=not (json_events or quiet))
    lock = threading.Lock()

    def on_event(job_id: str, event: dict[str, Any]) -> None:
        if job_id != job.id:
            return
        with lock:
            if json_events:
                sys.stdout.write(protocol.encode(event))
                sys.stdout.flush()
            elif event.get("event") == "progress":
                bar.update(int(event.get("step", 0)), int(event.get("total") or 0), describe(event))

    unsubscribe = ctx.jobs.subscribe(on_event)
    interrupted = False
    try:
        while True:
            try:
                final = ctx.jobs.wait(job.id, timeout=0.5)
                if final.state not in ("queued", "running"):
                    return final
            except KeyboardInterrupt:
                try:
                    if interrupted:  # a second Ctrl+C: stop waiting at once (E25)
                        raise KeyboardInterrupt
                    interrupted = True
                    sys.stderr.write(f"\nStopping: {stopping} (resume later with `isengard jobs resume {job.id}`); "
                                     "press Ctrl+C again to stop waiting now...\n")
                    _ask_to_stop(ctx, job)
                except KeyboardInterrupt:
                    ctx.jobs.let_go(job.id)  # closing the context must neither wait for the worker nor kill it
                    raise StoppedWaiting(_abandon_message(ctx, job, stopping)) from None
    finally:
        unsubscribe()
        bar.close()


class StoppedWaiting(IsengardError):
    """The person pressed Ctrl+C twice: the command ends at once with a sentence saying what is kept."""


def _ask_to_stop(ctx: AppContext, job: JobRow) -> None:
    try:
        ctx.jobs.cancel(job.id)
    except Exception as exc:  # a finished job, a full disk: waiting goes on and a second Ctrl+C still works
        sys.stderr.write(f"The job could not be asked to stop ({exc}).\n")


def _abandon_message(ctx: AppContext, job: JobRow, stopping: str) -> str:
    return (f"stopped waiting for job {job.id}: it was asked to stop ({stopping}); what it saved is kept in "
            f"{ctx.volume.root / job.folder}, and `isengard jobs resume {job.id}` continues from there.")


def _followed(ctx: AppContext, job: JobRow, args: argparse.Namespace) -> int:
    """Follow a job to its end and report it; exit code 130 when the person stopped waiting."""
    try:
        final = follow(ctx, job, args.json_events, args.json)
    except StoppedWaiting as exc:
        sys.stderr.write(f"isengard: {exc}\n")
        return 130
    return _report(ctx, final, args)


def _report(ctx: AppContext, job: JobRow, args: argparse.Namespace) -> int:
    if args.json:
        emit_json(job.to_json())
    elif not getattr(args, "json_events", False):
        lora = job.result.get("lora")
        say(f"Job {job.id}: {job.state}" + (f"; LoRA: {lora}" if lora else ""))
        if job.error:
            say(job.error)
    return EXIT_CODES.get(job.state, 1)


def train_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    from isengard_desktop.base.errors import ValidationError
    from isengard_desktop.jobs.records import DB_ERRORS

    if getattr(args, "plan_for_vram", None) is not None:
        return plan_cmd(args)
    character = ctx.characters.resolve(args.character)
    overrides = {"steps": args.steps, "learning_rate": args.learning_rate, "rank": args.rank, "alpha": args.alpha,
                 "save_every": args.save_every, "sample_every": args.sample_every}
    meta: dict[str, Any] = {"preset": args.preset}
    from isengard_desktop.core.remote.jobs import is_remote, remote_training_spec

    if is_remote(getattr(args, "remote", None)):
        engine, spec, check, meta["remote"] = remote_training_spec(ctx, character, args.remote, args.engine,
                                                                   args.preset, overrides)
    else:
        from isengard_desktop.core.engines import choose_engine

        engine = choose_engine("training", args.engine, _training_engines(ctx), ctx.mode)
        spec, check = build_spec(ctx.volume, ctx.dataset, character, ctx.mode, args.preset, overrides)
    if not check.ok:
        raise ValidationError(" ".join(check.problems))
    for warning in check.warnings:
        sys.stderr.write(f"note: {warning}\n")
    # A job left "running" by a killed window or CLI is taken back first (its orphaned worker asked to save and
    # stop); the GPU lock, which that worker still holds, keeps the new run waiting until it has ended (E26).
    for old in ctx.jobs.recover(queued=False):
        sys.stderr.write(f"note: job {old.id}, left running by an Isengard that was closed, is now {old.state}.\n")
    try:
        job = ctx.jobs.submit("training", engine, spec.to_dict(), character.id, meta=meta)
    except DB_ERRORS as exc:
        raise IsengardError(f"The training job could not be recorded in the volume ({exc}); free some disk space "
                            "and try again.") from exc
    return _followed(ctx, job, args)


def plan_cmd(args: argparse.Namespace) -> int:
    """The memory plan of FLUX.1-dev with this preset and engine on a card of that size: needs no photos, no
    downloaded model, no GPU (people use it to choose a card); exit code 1 when the run would be refused."""
    from isengard_desktop.core.training_plan import card_for_size, describe, plan_for_preset

    overrides = {"steps": args.steps, "learning_rate": args.learning_rate, "rank": args.rank, "alpha": args.alpha,
                 "save_every": args.save_every, "sample_every": args.sample_every}
    plan = plan_for_preset(args.engine or "aitoolkit", args.preset, card_for_size(args.plan_for_vram), overrides)
    if args.json:
        emit_json(plan.to_json())
    else:
        for line in describe(plan):
            say(line)
    return 0 if plan.ok else 1


def list_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    ctx.jobs.recover(queued=False)  # a live window's queued job records no process: left alone
    jobs = ctx.jobs.list()
    if args.json:
        emit_json([job.to_json() for job in jobs])
        return 0
    if not jobs:
        say("No jobs yet.")
    from isengard_desktop.jobs.remote_job import remote_name, where

    for job in jobs:
        step = job.progress.get("step")
        total = job.progress.get("total")
        at = f"{step}/{total}" if step is not None else ""
        # A remote job says where it runs: "running on gpu1", and whether anything here still follows it.
        state = where(job) if remote_name(job) and job.state == "running" else job.state
        say(f"{job.id}\t{job.kind}\t{job.engine}\t{state}\t{at}")
    return 0


def show_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    ctx.jobs.recover(queued=False)  # a live window's queued job records no process: left alone
    job = ctx.jobs.get(args.job_id)
    if args.json:
        emit_json(job.to_json())
    else:
        for key, value in job.to_json().items():
            if key != "params":
                say(f"{key}: {value}")
    return 0


def cancel_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    job = ctx.jobs.cancel(args.job_id)
    if args.json:
        emit_json(job.to_json())
    else:
        say(f"Asked job {job.id} to save a checkpoint and stop.")
    return 0


def resume_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    ctx.jobs.recover(queued=False)  # a live window's queued job records no process: left alone
    job = ctx.jobs.resume(args.job_id)
    return _followed(ctx, job, args)


def bundle_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    """The Jobs tab's "Export debug bundle", without the window."""
    from pathlib import Path

    from isengard_desktop.base.errors import ValidationError
    from isengard_desktop.jobs.debug_bundle import build_debug_bundle, bundle_summary, person_images

    job = ctx.jobs.get(args.job_id)
    target = Path(args.output).expanduser()
    if target.suffix.lower() != ".zip":
        target = target.with_name(target.name + ".zip")
    if not target.parent.is_dir():
        raise ValidationError(f"The folder {target.parent} does not exist; choose where to write the bundle.")
    folder = ctx.jobs.job_dir(job)
    path = build_debug_bundle(ctx.volume, folder, ctx.mode, target, include_images=args.include_images)
    images = len(person_images(folder))
    if args.json:
        emit_json({"job_id": job.id, "bundle": str(path), "images": images if args.include_images else 0,
                   "images_left_out": 0 if args.include_images else images})
    else:
        say(f"Debug bundle written to {path}. {bundle_summary(images, args.include_images)}")
    return 0
