"""Migration 0005: captions written before automatic captions existed were typed by a person, and stay theirs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from isengard_desktop.storage.db import Database, migrations
from isengard_desktop.storage.repositories import ImageRepository


def test_an_older_volume_keeps_its_captions_as_the_persons(tmp_path: Path) -> None:
    path = tmp_path / "isengard.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                 " applied_at TEXT NOT NULL)")
    for version, name, sql in migrations():
        if version >= 5:
            break
        conn.executescript(sql)
        conn.execute("INSERT INTO schema_version VALUES (?, ?, '2026-11-01')", (version, name))
    conn.execute("INSERT INTO characters VALUES (1, 'Ada', 'ohwx_ada', '', 'x', 'x')")
    for image_id, caption in ((1, "ohwx_ada on a beach"), (2, None), (3, "")):
        conn.execute("INSERT INTO images (id, character_id, sha256, rel_path, source_name, format, width, height,"
                     " file_size, caption, added_at) VALUES (?, 1, ?, 'p', 's', 'PNG', 8, 8, 1, ?, 'x')",
                     (image_id, f"sha{image_id}", caption))
    conn.commit()
    conn.close()

    db = Database(path)
    try:
        assert db.schema_version() >= 5
        repo = ImageRepository(db)
        assert [repo.get(i).caption_source for i in (1, 2, 3)] == ["person", None, None]
        assert not repo.set_auto_caption(1, "a photo of ohwx_ada")  # still the person's
        assert repo.set_auto_caption(2, "a photo of ohwx_ada") and repo.get(2).caption_source == "auto"
    finally:
        db.close()
