-- Characters, their images, and jobs.
CREATE TABLE characters (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    trigger_word TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE UNIQUE INDEX characters_name_unique ON characters (name COLLATE NOCASE);
CREATE UNIQUE INDEX characters_trigger_unique ON characters (trigger_word COLLATE NOCASE);

CREATE TABLE images (
    id           INTEGER PRIMARY KEY,
    character_id INTEGER NOT NULL REFERENCES characters (id) ON DELETE CASCADE,
    sha256       TEXT NOT NULL,
    rel_path     TEXT NOT NULL,          -- the stored copy, relative to the volume root
    source_name  TEXT NOT NULL,          -- the file name it was imported from
    format       TEXT NOT NULL,          -- JPEG, PNG, WEBP, ...
    width        INTEGER NOT NULL,       -- after EXIF orientation
    height       INTEGER NOT NULL,
    orientation  INTEGER NOT NULL DEFAULT 1,  -- EXIF orientation tag of the original (1 = upright)
    file_size    INTEGER NOT NULL,
    caption      TEXT,                   -- NULL: the default caption made from the trigger word
    added_at     TEXT NOT NULL,
    UNIQUE (character_id, sha256)
);
CREATE INDEX images_character ON images (character_id);
CREATE INDEX images_sha256 ON images (sha256);

CREATE TABLE jobs (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,        -- training, generation, install, download
    engine         TEXT NOT NULL,
    character_id   INTEGER REFERENCES characters (id) ON DELETE SET NULL,
    params         TEXT NOT NULL DEFAULT '{}',
    state          TEXT NOT NULL,        -- queued, running, succeeded, failed, cancelled, interrupted
    folder         TEXT NOT NULL,        -- relative to the volume root
    correlation_id TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    started_at     TEXT,
    finished_at    TEXT,
    error          TEXT,                 -- what went wrong, in words for the user
    result         TEXT NOT NULL DEFAULT '{}',
    progress       TEXT NOT NULL DEFAULT '{}', -- the newest progress event
    pid            INTEGER               -- the worker process while running
);
CREATE INDEX jobs_state ON jobs (state);
