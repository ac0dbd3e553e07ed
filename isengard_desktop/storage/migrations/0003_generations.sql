-- Generated images, one row per saved file, with the parameters that made it (gallery, "Reuse parameters").
CREATE TABLE generations (
    id          INTEGER PRIMARY KEY,
    job_id      TEXT REFERENCES jobs (id) ON DELETE SET NULL,
    rel_path    TEXT NOT NULL,
    engine      TEXT NOT NULL,
    params      TEXT NOT NULL,          -- JSON: prompt, loras, aspect, width, height, steps, guidance, seed, ...
    parameters  TEXT NOT NULL,          -- the A1111-style text written into the PNG
    batch_index INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);
CREATE INDEX generations_created ON generations (created_at);
