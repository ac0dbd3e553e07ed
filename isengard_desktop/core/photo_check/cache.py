"""The photo_checks table (migration 0004): what was measured on each photo, per content hash and analyser.

The analyser names the detector, the measuring code's version and the face embedder, so measures made before the
embedder was downloaded (or by an older detector) are not reused for a newer check.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from isengard_desktop.storage.db import Database, now_iso

if TYPE_CHECKING:  # the window reads the cache: OpenCV's and numpy's imports wait until a figure needs them
    import numpy as np

    from isengard_desktop.core.photo_check.measure import Measures

MEASURES_VERSION = 1  # bump when measure.py computes a figure differently
# The detector's settings live here, not in measure.py: the window names the analyser of a cached report at
# start-up, and importing measure.py for a string would load numpy and OpenCV before its first frame (E37).
CASCADE = "haarcascade_frontalface_alt2.xml"
MIN_NEIGHBOURS = 5
DETECTOR_ID = f"haar-{CASCADE.removesuffix('.xml').removeprefix('haarcascade_')}-n{MIN_NEIGHBOURS}"


def analyser_id(embedder_id: str | None) -> str:
    return f"{DETECTOR_ID}+m{MEASURES_VERSION}+{embedder_id or 'none'}"


class PhotoCheckCache:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get_many(self, sha256s: list[str], analyser: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        unique = sorted(set(sha256s))
        for start in range(0, len(unique), 500):  # SQLite's limit on bound parameters
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(f"SELECT * FROM photo_checks WHERE analyser = ? AND sha256 IN ({marks})",
                                     (analyser, *chunk)):
                out[row["sha256"]] = _decode(row)
        return out

    def put(self, sha256: str, analyser: str, m: Measures, embedding: np.ndarray | None) -> None:
        import numpy as np

        blob = None if embedding is None else np.asarray(embedding, dtype="<f4").tobytes()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO photo_checks (sha256, analyser, width, height, faces, sharpness, exposure,"
                " clipped, phash, face_phash, embedding, checked_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (sha256, analyser, m.width, m.height, json.dumps(m.faces), m.sharpness, m.exposure, m.clipped,
                 m.phash, m.face_phash, blob, now_iso()),
            )


def _decode(row: Any) -> dict[str, Any]:
    import numpy as np

    blob = row["embedding"]
    return {
        "width": row["width"], "height": row["height"], "faces": json.loads(row["faces"]),
        "sharpness": row["sharpness"], "exposure": row["exposure"], "clipped": row["clipped"],
        "phash": row["phash"], "face_phash": row["face_phash"],
        "embedding": None if blob is None else np.frombuffer(blob, dtype="<f4"),
    }
