"""`isengard dataset ...`: import photos, list images, edit captions, delete images."""

from __future__ import annotations

import argparse

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.cli.output import ProgressBar, emit_json, say
from isengard_desktop.context import AppContext
from isengard_desktop.core.dataset import ImageFilter

EXIT_NOTHING_IMPORTED = 1
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def tsv_field(text: str) -> str:
    """One field of the tab-separated listing: a tab, newline or backslash in a file name is escaped as
    ``\\t``, ``\\n``, ``\\\\`` so every image stays one line of the same number of fields."""
    return text.translate(_TSV_ESCAPES)


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("dataset", help="import photos and curate the dataset")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    imp = actions.add_parser("import", parents=[common], help="import photos (files or folders) into a character")
    imp.add_argument("character", metavar="CHARACTER")
    imp.add_argument("paths", nargs="+", metavar="PATH")
    imp.set_defaults(handler=import_cmd)

    lst = actions.add_parser("list", parents=[common], help="list images")
    lst.add_argument("--character", metavar="C")
    lst.add_argument("--captioned", choices=["yes", "no"],
                     help="only images with (yes) or without (no) their own caption")
    lst.add_argument("--too-small", action="store_true", help="only images too small for training")
    lst.add_argument("--duplicates", action="store_true", help="only images whose bytes appear more than once")
    lst.set_defaults(handler=list_cmd)

    cap = actions.add_parser("caption", parents=[common], help="set an image's caption ('' = default caption)")
    cap.add_argument("image_id", type=int, metavar="IMAGE_ID")
    cap.add_argument("text")
    cap.set_defaults(handler=caption_cmd)

    auto = actions.add_parser("autocaption", parents=[common],
                              help="write every photo's caption with a vision-language model (trigger word in each)")
    auto.add_argument("character", metavar="CHARACTER")
    auto.add_argument("--overwrite", action="store_true", help="replace captions a person wrote too")
    auto.add_argument("--keep-traits", action="store_true",
                      help="describe hair, eyes, age... too (default: left out, the trigger word carries them)")
    auto.set_defaults(handler=autocaption_cmd)

    check = actions.add_parser("check", parents=[common],
                               help="check a character's photos: faces, blur, exposure, near-copies, identity")
    check.add_argument("character", metavar="CHARACTER")
    check.set_defaults(handler=check_cmd)

    delete = actions.add_parser("delete", parents=[common], help="delete images (files go to the trash)")
    delete.add_argument("image_ids", type=int, nargs="+", metavar="IMAGE_ID")
    delete.add_argument("--yes", action="store_true", help="confirm the deletion")
    delete.set_defaults(handler=delete_cmd)


def import_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    character = ctx.characters.resolve(args.character)
    bar = ProgressBar(f"Importing into {character.name}", enabled=not args.json)
    report = ctx.importer.run(character.id, args.paths, on_progress=lambda p: bar.update(p.done, p.total, p.current))
    bar.close()
    # Non-zero only when nothing at all came in and something was refused or missing: a script must
    # notice a wrong path, while re-importing a folder (all duplicates) is not a failure.
    code = EXIT_NOTHING_IMPORTED if report.refused and not report.imported and not report.duplicates else 0
    if args.json:
        emit_json(report.to_json())
        return code
    say(f"{character.name}: {report.summary}")
    for item in report.refused:
        say(f"refused: {tsv_field(item['file'])}: {item['reason']}")
    for item in report.duplicates:
        say(f"already there: {tsv_field(item['file'])}")
    small = sum(1 for item in report.imported if item["too_small"])
    if small:
        say(f"{small} imported photo(s) are smaller than {ctx.settings.min_training_side} px on the short side: "
            "they are flagged as too small for training.")
    return code


def list_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    character_id = ctx.characters.resolve(args.character).id if args.character else None
    captioned = {"yes": True, "no": False}.get(args.captioned or "")
    images = ctx.dataset.list(ImageFilter(character_id, captioned, args.too_small, args.duplicates))
    if args.json:
        emit_json([image.to_json() for image in images])
        return 0
    for image in images:
        flags = (" [too small]" if image.too_small else "") + (" [duplicate]" if image.row.duplicate_count > 1 else "")
        say("\t".join((str(image.id), tsv_field(image.character_name), f"{image.row.width}x{image.row.height}",
                       tsv_field(image.row.source_name) + flags, tsv_field(image.caption))))
    if not images:
        say("No images match.")
    return 0


def caption_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    image = ctx.dataset.set_caption(args.image_id, args.text)
    if args.json:
        emit_json(image.to_json())
    else:
        say(f"{image.id}: {image.caption}")
    return 0


def delete_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    from isengard_desktop.cli.main import confirm

    confirm(args, f"Delete {len(args.image_ids)} image(s)? Their files go to the volume's trash.")
    trash = ctx.dataset.delete(args.image_ids)
    if args.json:
        emit_json({"deleted": sorted(set(args.image_ids)), "trash": str(trash)})
    else:
        say(f"Deleted {len(set(args.image_ids))} image(s); their files are in {trash}")
    return 0


def check_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    """Run the check job (a worker process, progress bar) and print its report: one line per flagged photo."""
    from isengard_desktop.cli.jobs import EXIT_CODES, follow
    from isengard_desktop.core.photo_check.service import PhotoCheckService

    character = ctx.characters.resolve(args.character)
    service = PhotoCheckService(ctx)
    job = service.submit(character.id)
    final = follow(ctx, job, False, args.json, f"Checking {character.name}'s photos"[:40],
                   describe=lambda e: f"{e.get('it_per_s', 0)} photos/s" if e.get("it_per_s") else "",
                   stopping="photos checked so far are kept")
    if final.state != "succeeded":
        raise IsengardError(final.error or f"The check ended {final.state}; run it again to finish it.")
    report = service.report(character.id)
    if args.json:
        emit_json(report.to_json())
        return EXIT_CODES.get(final.state, 1)
    names = {image.id: image.row.source_name for image in ctx.dataset.list(ImageFilter(character.id))}
    for image in report.images:
        for sentence in report.reasons.get(image["id"], []):
            say(f"{image['id']}\t{tsv_field(names.get(image['id'], '?'))}\t{sentence}")
    summary = report.summary
    say(f"{character.name}: {summary['usable']} of {summary['total']} photos usable, {summary['flagged']} flagged "
        f"({summary['verdict'].replace('_', ' ')}). {summary['advice']}")
    if summary["identity"]["reason"]:
        say(summary["identity"]["reason"])
    return 0


def autocaption_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    """Run the caption job (a worker on the GPU lane, progress bar, Ctrl+C stops it) and print each photo's caption."""
    from isengard_desktop.cli.jobs import EXIT_CODES, follow
    from isengard_desktop.core import autocaption

    character = ctx.characters.resolve(args.character)
    job = autocaption.submit(ctx, character.id, overwrite=args.overwrite, keep_traits=args.keep_traits)
    final = follow(ctx, job, False, args.json, f"Captioning {character.name}"[:40],
                   describe=lambda e: f"{e['it_per_s']} photos/s" if e.get("it_per_s") else str(e.get("phase", "")),
                   stopping="captions written so far are kept")
    captions = {e["image_id"]: e for e in ctx.jobs.events(final.id)
                if e.get("event") == "artifact" and e.get("kind") == "caption"}
    images = ctx.dataset.list(ImageFilter(character.id))
    if args.json:
        emit_json({"job": final.to_json(), "character": character.name, "trigger_word": character.trigger_word,
                   "stored": final.result.get("captions_stored", 0), "kept": job.params.get("kept_person_captions", 0)
                   + final.result.get("captions_kept", 0),
                   "model_answers_usable": sum(1 for e in captions.values() if e.get("usable")),
                   "images": [{"id": i.id, "caption": i.caption, "source": i.row.caption_source,
                               "written_now": i.id in captions} for i in images]})
        return EXIT_CODES.get(final.state, 1)
    for image in images:
        if image.id in captions:
            say(f"{image.id}\t{tsv_field(image.caption)}")
    say(f"Job {final.id}: {final.state}; {final.result.get('captions_stored', 0)} caption(s) written, "
        f"{job.params.get('kept_person_captions', 0) + final.result.get('captions_kept', 0)} caption(s) a person "
        "wrote kept.")
    if final.error:
        say(final.error)
    return EXIT_CODES.get(final.state, 1)
