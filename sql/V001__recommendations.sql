-- genrec schema: published recommendations (one list partition per run date) and run history.
CREATE SCHEMA IF NOT EXISTS genrec;

CREATE TABLE IF NOT EXISTS genrec.recommendations (
    run_date date             NOT NULL,
    user_id  text             NOT NULL,
    rank     integer          NOT NULL CHECK (rank >= 1),
    item_id  text             NOT NULL,
    score    double precision NOT NULL,
    model    text             NOT NULL
) PARTITION BY LIST (run_date);

-- Partitioned indexes: each attached partition brings a matching index built before the swap.
CREATE INDEX IF NOT EXISTS recommendations_user_rank_idx ON genrec.recommendations (user_id, rank);
CREATE INDEX IF NOT EXISTS recommendations_item_idx ON genrec.recommendations (item_id);

CREATE TABLE IF NOT EXISTS genrec.runs (
    run_id         bigserial   PRIMARY KEY,
    run_date       date        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('published', 'failed', 'rejected')),
    model          text,
    metrics        jsonb,
    rows_published bigint,
    artifacts      jsonb,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS runs_run_date_idx ON genrec.runs (run_date);

-- The lists served now: the newest run date whose publish committed.
CREATE OR REPLACE VIEW genrec.recommendations_latest AS
SELECT r.run_date, r.user_id, r.rank, r.item_id, r.score, r.model
FROM genrec.recommendations r
WHERE r.run_date = (SELECT max(run_date) FROM genrec.runs WHERE status = 'published');
