-- What "Check photos" measured on each image, cached per content hash (issue 12): a photo imported twice, or into
-- two characters, is measured once. `analyser` names the detector, the measures and the face embedder that made
-- the row, so a newer analyser or a newly downloaded embedder measures again instead of reusing stale figures.
CREATE TABLE photo_checks (
    sha256      TEXT NOT NULL,
    analyser    TEXT NOT NULL,
    width       INTEGER NOT NULL,          -- of the upright picture that was measured
    height      INTEGER NOT NULL,
    faces       TEXT NOT NULL,             -- JSON list of [x, y, w, h] boxes in the upright picture's pixels
    sharpness   REAL NOT NULL,             -- variance of the Laplacian on the face (or the whole photo)
    exposure    REAL NOT NULL,             -- mean brightness 0..1 on the face (or the whole photo)
    clipped     REAL NOT NULL,             -- share of pixels at pure black or white in the same region
    phash       TEXT NOT NULL,             -- 64-bit perceptual hash of the whole photo (hex)
    face_phash  TEXT,                      -- the same of the largest face, NULL without one
    embedding   BLOB,                      -- float32 face embedding of the largest face, NULL without face/embedder
    checked_at  TEXT NOT NULL,
    PRIMARY KEY (sha256, analyser)
);
