-- Where each list came from (the model, or the popularity fallback for users with too little history),
-- and the business filters the scorer applies before top-k.
ALTER TABLE genrec.recommendations ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'model';

CREATE OR REPLACE VIEW genrec.recommendations_latest AS
SELECT r.run_date, r.user_id, r.rank, r.item_id, r.score, r.model, r.source
FROM genrec.recommendations r
WHERE r.run_date = (SELECT s.run_date FROM genrec.serving s);

CREATE OR REPLACE VIEW genrec.recommendations_by_date AS
SELECT r.run_date, r.user_id, r.rank, r.item_id, r.score, r.model, r.source
FROM genrec.recommendations r;

-- Items never to recommend (out of stock, blocked). Read at scoring time.
CREATE TABLE IF NOT EXISTS genrec.item_exclusions (
    item_id    text        PRIMARY KEY,
    reason     text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- When this table has rows, only these items are recommended.
CREATE TABLE IF NOT EXISTS genrec.item_allowlist (
    item_id    text        PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON genrec.item_exclusions, genrec.item_allowlist FROM PUBLIC;
