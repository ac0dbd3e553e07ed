"""Rows in and out of the database. Plain SQL, plain dataclasses; no business rules (those live in core)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from isengard_desktop.storage.db import Database, now_iso


@dataclass(frozen=True)
class CharacterRow:
    id: int
    name: str
    trigger_word: str
    description: str
    created_at: str
    updated_at: str
    image_count: int
    avatar_rel_path: str | None
    avatar_sha256: str | None
    lora_count: int


@dataclass(frozen=True)
class ImageRow:
    id: int
    character_id: int
    sha256: str
    rel_path: str
    source_name: str
    format: str
    width: int
    height: int
    orientation: int
    file_size: int
    caption: str | None
    added_at: str
    duplicate_count: int  # how many images in the whole volume share these bytes (1 = unique)
    caption_source: str | None = None  # who wrote the caption: "person", "auto" (autocaption) or None (none)


_CHARACTER_SELECT = """
SELECT c.*,
       (SELECT COUNT(*) FROM images i WHERE i.character_id = c.id) AS image_count,
       (SELECT i.rel_path FROM images i WHERE i.character_id = c.id ORDER BY i.id LIMIT 1) AS avatar_rel_path,
       (SELECT i.sha256 FROM images i WHERE i.character_id = c.id ORDER BY i.id LIMIT 1) AS avatar_sha256,
       (SELECT COUNT(*) FROM loras l WHERE l.character_id = c.id) AS lora_count
FROM characters c
"""

_IMAGE_SELECT = """
SELECT i.*, d.n AS duplicate_count
FROM images i JOIN (SELECT sha256, COUNT(*) AS n FROM images GROUP BY sha256) d ON d.sha256 = i.sha256
"""


def _character(row: sqlite3.Row) -> CharacterRow:
    return CharacterRow(**{k: row[k] for k in row.keys()})


def _image(row: sqlite3.Row) -> ImageRow:
    return ImageRow(**{k: row[k] for k in row.keys()})


class CharacterRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def insert(self, name: str, trigger_word: str, description: str) -> int:
        stamp = now_iso()
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO characters (name, trigger_word, description, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, trigger_word, description, stamp, stamp),
            )
            return int(cur.lastrowid)

    def update(self, character_id: int, **values: str) -> None:
        if not values:
            return
        assignments = ", ".join(f"{column} = ?" for column in values)
        with self.db.transaction() as conn:
            conn.execute(
                f"UPDATE characters SET {assignments}, updated_at = ? WHERE id = ?",
                (*values.values(), now_iso(), character_id),
            )

    def delete(self, character_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM characters WHERE id = ?", (character_id,))

    def get(self, character_id: int) -> CharacterRow | None:
        row = self.db.query_one(_CHARACTER_SELECT + " WHERE c.id = ?", (character_id,))
        return _character(row) if row else None

    def find_by_name(self, name: str) -> CharacterRow | None:
        row = self.db.query_one(_CHARACTER_SELECT + " WHERE c.name = ? COLLATE NOCASE", (name,))
        return _character(row) if row else None

    def find_by_trigger(self, trigger_word: str) -> CharacterRow | None:
        row = self.db.query_one(_CHARACTER_SELECT + " WHERE c.trigger_word = ? COLLATE NOCASE", (trigger_word,))
        return _character(row) if row else None

    def list(self) -> list[CharacterRow]:
        return [_character(r) for r in self.db.query(_CHARACTER_SELECT + " ORDER BY c.name COLLATE NOCASE")]


class ImageRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def insert_many(self, rows: list[dict]) -> list[int | None]:
        """Insert image rows in one transaction; returns their ids, None for a row the character already has.

        Two imports into one character can race (two windows, the window and the CLI): whichever records
        a photo first keeps it, and the other learns it is a duplicate instead of failing on the UNIQUE
        constraint with its batch lost.
        """
        ids: list[int | None] = []
        with self.db.transaction() as conn:
            for row in rows:
                cur = conn.execute(
                    "INSERT INTO images (character_id, sha256, rel_path, source_name, format, width, height,"
                    " orientation, file_size, caption, added_at) VALUES (:character_id, :sha256, :rel_path,"
                    " :source_name, :format, :width, :height, :orientation, :file_size, :caption, :added_at)"
                    " ON CONFLICT (character_id, sha256) DO NOTHING",
                    {"caption": None, "added_at": now_iso(), **row},
                )
                ids.append(int(cur.lastrowid) if cur.rowcount == 1 else None)
        return ids

    def stored_paths(self) -> set[str]:
        """Every stored file some image row points at (relative to the volume root)."""
        return {r["rel_path"] for r in self.db.query("SELECT DISTINCT rel_path FROM images")}

    def hashes_for_character(self, character_id: int) -> set[str]:
        rows = self.db.query("SELECT sha256 FROM images WHERE character_id = ?", (character_id,))
        return {r["sha256"] for r in rows}

    def get(self, image_id: int) -> ImageRow | None:
        row = self.db.query_one(_IMAGE_SELECT + " WHERE i.id = ?", (image_id,))
        return _image(row) if row else None

    def get_many(self, image_ids: list[int]) -> list[ImageRow]:
        if not image_ids:
            return []
        marks = ",".join("?" * len(image_ids))
        return [_image(r) for r in self.db.query(_IMAGE_SELECT + f" WHERE i.id IN ({marks})", tuple(image_ids))]

    def list(
        self,
        character_id: int | None = None,
        captioned: bool | None = None,
        max_short_side: int | None = None,
        duplicates_only: bool = False,
    ) -> list[ImageRow]:
        where, params = [], []
        if character_id is not None:
            where.append("i.character_id = ?")
            params.append(character_id)
        if captioned is True:
            where.append("i.caption IS NOT NULL AND i.caption != ''")
        elif captioned is False:
            where.append("(i.caption IS NULL OR i.caption = '')")
        if max_short_side is not None:
            where.append("MIN(i.width, i.height) < ?")
            params.append(max_short_side)
        if duplicates_only:
            where.append("d.n > 1")
        sql = _IMAGE_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY i.id"
        return [_image(r) for r in self.db.query(sql, tuple(params))]

    def set_caption(self, image_id: int, caption: str | None) -> None:
        """A caption a person wrote (None: back to the default caption)."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE images SET caption = ?, caption_source = ? WHERE id = ?",
                         (caption, "person" if caption else None, image_id))

    def set_auto_caption(self, image_id: int, caption: str, overwrite: bool = False) -> bool:
        """Store an automatic caption unless a person wrote this image's caption (checked in the same statement, so
        a caption typed while the captioner ran is kept); ``overwrite`` replaces a person's caption too.
        Returns whether it was stored."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE images SET caption = ?, caption_source = 'auto' WHERE id = ? AND (? OR caption IS NULL"
                " OR caption = '' OR caption_source IS NOT 'person')", (caption, image_id, int(overwrite)))
            return cur.rowcount == 1

    def delete_many(self, image_ids: list[int]) -> None:
        if not image_ids:
            return
        marks = ",".join("?" * len(image_ids))
        with self.db.transaction() as conn:
            conn.execute(f"DELETE FROM images WHERE id IN ({marks})", tuple(image_ids))

    def count_by_sha256(self, sha256: str) -> int:
        row = self.db.query_one("SELECT COUNT(*) AS n FROM images WHERE sha256 = ?", (sha256,))
        return int(row["n"]) if row else 0
