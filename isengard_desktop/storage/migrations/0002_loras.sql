-- Trained LoRAs, one row per finished training run, so a character card can show its LoRA state.
CREATE TABLE loras (
    id           INTEGER PRIMARY KEY,
    character_id INTEGER REFERENCES characters (id) ON DELETE SET NULL,
    job_id       TEXT REFERENCES jobs (id) ON DELETE SET NULL,
    rel_path     TEXT NOT NULL,
    base_model   TEXT NOT NULL,
    engine       TEXT NOT NULL,
    steps        INTEGER NOT NULL,
    rank         INTEGER NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX loras_character ON loras (character_id);
