-- Who wrote each image's own caption: 'person' (typed in the window or with `isengard dataset caption`) or 'auto'
-- (`isengard dataset autocaption`). Automatic captioning replaces an 'auto' caption but never a person's own one
-- unless asked (--overwrite). Every caption written before this column existed was typed by a person.
ALTER TABLE images ADD COLUMN caption_source TEXT;
UPDATE images SET caption_source = 'person' WHERE caption IS NOT NULL AND caption != '';
