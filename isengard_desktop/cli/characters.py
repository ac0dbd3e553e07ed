"""`isengard characters ...`: create, list, show, edit and delete characters."""

from __future__ import annotations

import argparse

from isengard_desktop.cli.output import emit_json, say
from isengard_desktop.context import AppContext
from isengard_desktop.core.characters import trigger_word_hints


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("characters", help="create, list, edit and delete characters")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser("create", parents=[common], help="create a character")
    create.add_argument("name")
    create.add_argument("--trigger", required=True, help="the trigger word, a rare single word such as ohwx_ada")
    create.add_argument("--description", default="")
    create.set_defaults(handler=create_cmd)

    actions.add_parser("list", parents=[common], help="list characters").set_defaults(handler=list_cmd)

    show = actions.add_parser("show", parents=[common], help="show one character")
    show.add_argument("character", metavar="ID_OR_NAME")
    show.set_defaults(handler=show_cmd)

    edit = actions.add_parser("edit", parents=[common], help="rename, or change trigger word or description")
    edit.add_argument("character", metavar="ID_OR_NAME")
    edit.add_argument("--name")
    edit.add_argument("--trigger")
    edit.add_argument("--description")
    edit.set_defaults(handler=edit_cmd)

    delete = actions.add_parser("delete", parents=[common], help="delete a character (photos go to the trash)")
    delete.add_argument("character", metavar="ID_OR_NAME")
    delete.add_argument("--yes", action="store_true", help="confirm the deletion")
    delete.set_defaults(handler=delete_cmd)


def _show(character, as_json: bool, hints: list[str] | None = None) -> None:
    if as_json:
        data = character.to_json()
        if hints is not None:
            data["hints"] = hints
        emit_json(data)
    else:
        say(f"{character.id}\t{character.name}\ttrigger: {character.trigger_word}\t"
            f"{character.image_count} images\t{character.lora_state}")
        for hint in hints or []:
            say(f"hint: {hint}")


def create_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    character = ctx.characters.create(args.name, args.trigger, args.description)
    _show(character, args.json, trigger_word_hints(character.trigger_word))
    return 0


def list_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    characters = ctx.characters.list()
    if args.json:
        emit_json([c.to_json() for c in characters])
    elif not characters:
        say("No characters yet. Create one: isengard characters create NAME --trigger WORD")
    else:
        for character in characters:
            _show(character, False)
    return 0


def show_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    _show(ctx.characters.resolve(args.character), args.json)
    return 0


def edit_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    character = ctx.characters.resolve(args.character)
    character = ctx.characters.update(
        character.id, name=args.name, trigger_word=args.trigger, description=args.description
    )
    _show(character, args.json)
    return 0


def delete_cmd(ctx: AppContext, args: argparse.Namespace) -> int:
    from isengard_desktop.cli.main import confirm

    character = ctx.characters.resolve(args.character)
    confirm(args, f"Delete {character.name!r} and move its {character.image_count} photos to the trash?")
    trash = ctx.characters.delete(character.id)
    if args.json:
        emit_json({"deleted": character.to_json(), "trash": str(trash)})
    else:
        say(f"Deleted {character.name!r}; its photos are in {trash}")
    return 0
