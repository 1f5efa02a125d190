-- Which date is served, every kept date as a view, a read-only role, and a richer run history.

-- The date `recommendations_latest` serves. Publishing moves it forward (never back);
-- `genrec publish rollback --to D` moves it to an earlier kept date.
CREATE TABLE IF NOT EXISTS genrec.serving (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    run_date   date        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO genrec.serving (run_date)
SELECT max(run_date) FROM genrec.runs WHERE status = 'published' HAVING max(run_date) IS NOT NULL
ON CONFLICT (singleton) DO NOTHING;

ALTER TABLE genrec.runs DROP CONSTRAINT IF EXISTS runs_status_check;
ALTER TABLE genrec.runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('published', 'failed', 'rejected', 'rolled_back', 'dropped'));
ALTER TABLE genrec.runs
    ADD COLUMN IF NOT EXISTS model_version text,
    ADD COLUMN IF NOT EXISTS timings       jsonb,
    ADD COLUMN IF NOT EXISTS started_at    timestamptz,
    ADD COLUMN IF NOT EXISTS detail        text;

CREATE OR REPLACE VIEW genrec.recommendations_latest AS
SELECT r.run_date, r.user_id, r.rank, r.item_id, r.score, r.model
FROM genrec.recommendations r
WHERE r.run_date = (SELECT s.run_date FROM genrec.serving s);

CREATE OR REPLACE VIEW genrec.recommendations_by_date AS
SELECT r.run_date, r.user_id, r.rank, r.item_id, r.score, r.model
FROM genrec.recommendations r;

-- Readers get the views and nothing else. Views run with their owner's rights, so the
-- role needs no grant on the base tables (and new partitions need no grant either).
REVOKE ALL ON ALL TABLES IN SCHEMA genrec FROM PUBLIC;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'genrec_reader') THEN
        BEGIN
            CREATE ROLE genrec_reader NOLOGIN;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'cannot create role genrec_reader (no CREATEROLE); ask a DBA to create it and rerun';
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'genrec_reader') THEN
        GRANT USAGE ON SCHEMA genrec TO genrec_reader;
        GRANT SELECT ON genrec.recommendations_latest, genrec.recommendations_by_date TO genrec_reader;
    END IF;
END
$$;
