"""`isengard generate --prompt P [--lora CHARACTER[:STRENGTH]] ...`: one generation job, the images' paths out."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engines.interface import ASPECT_PRESETS
from isengard_desktop.cli.jobs import EXIT_CODES, follow
from isengard_desktop.cli.output import emit_json, say
from isengard_desktop.context import AppContext
from isengard_desktop.core import generation


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("generate", parents=[common], help="generate images from a prompt")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--lora", action="append", default=[], metavar="CHARACTER[:STRENGTH]",
                        help="apply the newest LoRA of a character (repeatable), strength 1 unless given")
    parser.add_argument("--aspect", choices=list(ASPECT_PRESETS), default="1:1")
    parser.add_argument("--seed", type=int, help="a fixed seed; random when left out")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--guidance", type=float, default=3.5)
    parser.add_argument("--batch", type=int, default=1, help="how many images (seeds SEED, SEED+1, ...)")
    parser.add_argument("--engine", metavar="ENGINE",
                        help="the image engine's name (a wrong one lists them); default: the best available")
    parser.add_argument("--json-events", action="store_true", help="print every worker event as a JSON line")
    parser.add_argument("--remote", metavar="NAME", help="generate on a remote GPU machine (see `isengard remotes`)")
    parser.set_defaults(handler=generate_cmd, action="generate")


def _image_engines(ctx: AppContext, requested: str | None = None) -> list:
    from isengard_desktop.core.engines import describe, list_engines

    # An engine named with --engine: only its own check (each check imports its engine; issue 14, E7).
    return [describe(ctx.volume, requested)] if requested else list_engines(ctx.volume, "image")


def generate_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    from isengard_desktop.core.engines import choose_engine
    from isengard_desktop.core.remote.jobs import is_remote, remote_generation_request

    options = generation.lora_options(ctx.volume, ctx.db)
    loras = []
    for value in args.lora:
        name, strength = generation.parse_lora_arg(value)
        loras.append((generation.lora_for_character(options, name), strength))

    def build(mode: str, engine: str) -> Any:
        return generation.build_request(ctx.volume, mode, engine, args.prompt, loras, aspect=args.aspect,
                                        steps=args.steps, guidance=args.guidance, seed=args.seed,
                                        batch_count=args.batch)

    meta: dict[str, Any] = {"aspect": args.aspect}
    if is_remote(getattr(args, "remote", None)):  # the LoRAs are sent there with the job (jobs/remote_job.py)
        engine, request, meta["remote"] = remote_generation_request(ctx, args.remote, args.engine, build)
    else:
        engine = choose_engine("image", args.engine, _image_engines(ctx, args.engine), ctx.mode,
                               ctx.settings.default_image_engine)
        request = build(ctx.mode, engine)
        ctx.start_service(engine)
    job = ctx.jobs.submit("generation", engine, request.to_dict(), meta=meta)
    final = follow(ctx, job, args.json_events, args.json, label=f"Generating {job.id}")
    images: list[str] = list(final.result.get("images", []))
    if args.json:
        result: dict[str, Any] = {"job": final.id, "state": final.state, "engine": engine, "seed": request.seed,
                                  "images": images, "error": final.error}
        emit_json(result)
    elif not args.json_events:
        for path in images:
            say(path)
        if final.error:
            sys.stderr.write(f"isengard: {final.error}\n")
    return EXIT_CODES.get(final.state, 1)
