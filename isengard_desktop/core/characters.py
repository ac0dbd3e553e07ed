"""Characters: an identity with a name, a trigger word, a description, its images and its LoRAs.

The rules for names and trigger words live here, so the window and the CLI refuse the same input
with the same sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import structlog

from isengard_desktop.base.errors import NotFoundError, ValidationError
from isengard_desktop.core.trash import move_to_trash
from isengard_desktop.storage.repositories import CharacterRepository, CharacterRow, ImageRepository
from isengard_desktop.storage.volume import Volume

log = structlog.get_logger(__name__)

MAX_NAME_LENGTH = 80
TRIGGER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,31}$")

# Words the base model already knows well. Using one as a trigger blends the person with the concept,
# so it earns a hint (not a refusal): a rare made-up token trains a cleaner identity.
_COMMON_WORDS = frozenset(
    """
    a an the man woman person people boy girl child baby kid guy lady gentleman face portrait photo picture
    image selfie model actor actress artist king queen prince princess hero man woman mom dad mother father
    sister brother friend wife husband son daughter old young beautiful pretty handsome cute happy sad red
    blue green black white yellow pink purple orange brown gray grey gold silver dark light sun moon star sky
    cat dog bird horse fish flower tree house car city street beach forest mountain river sea ocean love life
    time world day night home art style anime cartoon painting drawing sketch realistic cinematic dream magic
    fire water earth wind ice snow rain storm angel devil ghost witch wizard knight warrior soldier ninja robot
    alien zombie vampire elf dwarf orc dragon monster punk rock metal jazz pop rose lily daisy ivy hope joy
    grace faith max sam alex jack john james mary anna emma olivia sophia mia noah liam lucas
    """.split()
)


@dataclass(frozen=True)
class Character:
    id: int
    name: str
    trigger_word: str
    description: str
    image_count: int
    avatar_path: Path | None
    avatar_thumbnail: Path | None
    lora_count: int
    created_at: str
    updated_at: str

    @property
    def lora_state(self) -> str:
        if self.lora_count == 0:
            return "No LoRA yet"
        return f"{self.lora_count} LoRA" + ("s" if self.lora_count > 1 else "")

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "trigger_word": self.trigger_word,
            "description": self.description,
            "image_count": self.image_count,
            "avatar_path": str(self.avatar_path) if self.avatar_path else None,
            "lora_count": self.lora_count,
            "lora_state": self.lora_state,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def validate_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise ValidationError("A character needs a name; type one, for example 'Ada Lovelace'.")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(f"The name is {len(name)} characters long; keep it to {MAX_NAME_LENGTH} or fewer.")
    return name


def validate_trigger_word(trigger: str) -> str:
    trigger = trigger.strip()
    if not trigger:
        raise ValidationError("A character needs a trigger word; type a rare single word, for example 'ohwx_ada'.")
    if any(ch.isspace() for ch in trigger):
        raise ValidationError(
            f"The trigger word {trigger!r} has spaces; it must be a single word, for example "
            f"{'_'.join(trigger.split())!r}."
        )
    if not TRIGGER_PATTERN.match(trigger):
        raise ValidationError(
            f"The trigger word {trigger!r} cannot be used: use 2 to 32 letters, digits, '_' or '-', "
            "starting with a letter or digit."
        )
    return trigger


def trigger_word_hints(trigger: str) -> list[str]:
    """Advice (never a refusal) about a trigger word the base model may already know."""
    hints = []
    lowered = trigger.strip().lower()
    if lowered in _COMMON_WORDS:
        hints.append(
            f"'{trigger}' is a word the base model already knows well; a rare made-up word such as "
            f"'ohwx_{lowered}' usually trains a cleaner identity."
        )
    elif len(lowered) < 4:
        hints.append(f"'{trigger}' is very short; short tokens are often shared with other words. "
                     "Consider a longer one.")
    return hints


class CharacterService:
    def __init__(self, volume: Volume, characters: CharacterRepository, images: ImageRepository) -> None:
        self.volume = volume
        self.repo = characters
        self.images = images

    def _to_model(self, row: CharacterRow) -> Character:
        return Character(
            id=row.id,
            name=row.name,
            trigger_word=row.trigger_word,
            description=row.description,
            image_count=row.image_count,
            avatar_path=self.volume.root / row.avatar_rel_path if row.avatar_rel_path else None,
            avatar_thumbnail=self.volume.thumbnail_path(row.avatar_sha256) if row.avatar_sha256 else None,
            lora_count=row.lora_count,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def list(self) -> list[Character]:
        return [self._to_model(r) for r in self.repo.list()]

    def get(self, character_id: int) -> Character:
        row = self.repo.get(character_id)
        if row is None:
            raise NotFoundError(f"There is no character with id {character_id}; `isengard characters list` shows them.")
        return self._to_model(row)

    def resolve(self, id_or_name: str | int) -> Character:
        """Find a character by id or by name (case-insensitive)."""
        text = str(id_or_name).strip()
        row = self.repo.find_by_name(text)
        if row is None and text.isdigit():
            row = self.repo.get(int(text))
        if row is None:
            raise NotFoundError(f"There is no character called {text!r}; `isengard characters list` shows them.")
        return self._to_model(row)

    def _check_unique(self, name: str | None, trigger: str | None, exclude_id: int | None = None) -> None:
        if name is not None:
            other = self.repo.find_by_name(name)
            if other and other.id != exclude_id:
                raise ValidationError(f"A character called {other.name!r} already exists; choose another name.")
        if trigger is not None:
            other = self.repo.find_by_trigger(trigger)
            if other and other.id != exclude_id:
                raise ValidationError(
                    f"The trigger word {trigger!r} is already used by {other.name!r}; each character needs its own."
                )

    def create(self, name: str, trigger_word: str, description: str = "") -> Character:
        name, trigger_word = validate_name(name), validate_trigger_word(trigger_word)
        self._check_unique(name, trigger_word)
        character_id = self.repo.insert(name, trigger_word, description.strip())
        log.info("character_created", character_id=character_id, name=name, trigger_word=trigger_word)
        return self.get(character_id)

    def update(
        self,
        character_id: int,
        *,
        name: str | None = None,
        trigger_word: str | None = None,
        description: str | None = None,
    ) -> Character:
        current = self.get(character_id)
        values: dict[str, str] = {}
        if name is not None and name != current.name:
            values["name"] = validate_name(name)
        if trigger_word is not None and trigger_word != current.trigger_word:
            values["trigger_word"] = validate_trigger_word(trigger_word)
        if description is not None and description.strip() != current.description:
            values["description"] = description.strip()
        self._check_unique(values.get("name"), values.get("trigger_word"), exclude_id=character_id)
        self.repo.update(character_id, **values)
        if values:
            log.info("character_updated", character_id=character_id, fields=sorted(values))
        return self.get(character_id)

    def delete(self, character_id: int) -> Path:
        """Move the character's images to the trash, then forget the character. Returns the trash folder."""
        character = self.get(character_id)
        rows = self.images.list(character_id=character_id)
        folder = move_to_trash(self.volume, f"character-{character.name}", rows,
                               extra={"character": character.to_json()})
        self.repo.delete(character_id)
        log.info("character_deleted", character_id=character_id, name=character.name, images=len(rows),
                 trash=str(folder))
        return folder
