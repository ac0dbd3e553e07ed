"""The dataset: every image in the volume, its filters, captions, details and deletion."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from isengard_desktop.base.caption_text import MAX_CAPTION_LENGTH, default_caption
from isengard_desktop.base.errors import NotFoundError, ValidationError
from isengard_desktop.core.trash import move_to_trash
from isengard_desktop.storage.repositories import CharacterRepository, ImageRepository, ImageRow
from isengard_desktop.storage.volume import Volume

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ImageFilter:
    character_id: int | None = None
    captioned: bool | None = None  # None: either; True: has its own caption; False: uses the default
    too_small_only: bool = False
    duplicates_only: bool = False


@dataclass(frozen=True)
class DatasetImage:
    row: ImageRow
    path: Path
    thumbnail_path: Path
    character_name: str
    trigger_word: str
    too_small: bool

    @property
    def id(self) -> int:
        return self.row.id

    @property
    def caption(self) -> str:
        """The caption training will use: the image's own, or the default made from the trigger word."""
        return self.row.caption or default_caption(self.trigger_word)

    @property
    def has_own_caption(self) -> bool:
        return bool(self.row.caption)

    def to_json(self) -> dict:
        r = self.row
        return {
            "id": r.id, "character_id": r.character_id, "character": self.character_name, "sha256": r.sha256,
            "path": str(self.path), "source_name": r.source_name, "format": r.format, "width": r.width,
            "height": r.height, "orientation": r.orientation, "file_size": r.file_size,
            "caption": self.caption, "own_caption": self.has_own_caption, "too_small": self.too_small,
            "duplicates": r.duplicate_count - 1, "added_at": r.added_at,
        }


class DatasetService:
    def __init__(
        self, volume: Volume, images: ImageRepository, characters: CharacterRepository, min_training_side: int
    ) -> None:
        self.volume = volume
        self.images = images
        self.characters = characters
        self.min_training_side = min_training_side

    def _wrap(self, rows: list[ImageRow]) -> list[DatasetImage]:
        people = {c.id: c for c in self.characters.list()}
        out = []
        for row in rows:
            person = people.get(row.character_id)
            out.append(
                DatasetImage(
                    row=row,
                    path=self.volume.root / row.rel_path,
                    thumbnail_path=self.volume.thumbnail_path(row.sha256),
                    character_name=person.name if person else "?",
                    trigger_word=person.trigger_word if person else "",
                    too_small=min(row.width, row.height) < self.min_training_side,
                )
            )
        return out

    def list(self, flt: ImageFilter | None = None) -> list[DatasetImage]:
        flt = flt or ImageFilter()
        rows = self.images.list(
            character_id=flt.character_id,
            captioned=flt.captioned,
            max_short_side=self.min_training_side if flt.too_small_only else None,
            duplicates_only=flt.duplicates_only,
        )
        return self._wrap(rows)

    def get(self, image_id: int) -> DatasetImage:
        row = self.images.get(image_id)
        if row is None:
            raise NotFoundError(f"There is no image with id {image_id}; `isengard dataset list` shows them.")
        return self._wrap([row])[0]

    def set_caption(self, image_id: int, caption: str | None) -> DatasetImage:
        """Set an image's own caption; empty or None goes back to the default caption."""
        self.get(image_id)
        text = " ".join((caption or "").split()) or None
        if text is not None and len(text) > MAX_CAPTION_LENGTH:
            raise ValidationError(
                f"The caption is {len(text)} characters long; keep it to {MAX_CAPTION_LENGTH} or fewer (the text "
                "encoder reads about 512 tokens and drops the rest)."
            )
        self.images.set_caption(image_id, text)
        log.info("caption_set", image_id=image_id, own_caption=text is not None)
        return self.get(image_id)

    def delete(self, image_ids: list[int]) -> Path | None:
        """Move the images' files to the trash and forget them. Returns the trash folder."""
        rows = self.images.get_many(sorted(set(image_ids)))
        missing = sorted(set(image_ids) - {r.id for r in rows})
        if missing:
            raise NotFoundError(f"There is no image with id {missing[0]}; nothing was deleted.")
        if not rows:
            return None
        folder = move_to_trash(self.volume, f"{len(rows)}-images", rows)
        self.images.delete_many([r.id for r in rows])
        log.info("images_deleted", count=len(rows), trash=str(folder))
        return folder
