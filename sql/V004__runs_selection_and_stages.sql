-- What each run chose and what it cost: the model selection of `model = "auto"` (every candidate's score,
-- time and status, and the winner) and each stage's wall seconds and peak resident memory.
ALTER TABLE genrec.runs
    ADD COLUMN IF NOT EXISTS selection jsonb,
    ADD COLUMN IF NOT EXISTS stages    jsonb;
