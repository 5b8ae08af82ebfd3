-- The job queue, in apalis-sql's `Jobs` layout so the rows stay readable by
-- apalis tooling. Timestamps in the apalis columns are unix seconds.
--
-- Extra columns (not in the apalis layout):
--   run_at_ms        run_at in milliseconds: short retry delays and ordering
--                    within a second. Always written together with run_at.
--   lease_expires_ms while Running: when the claim lapses if its worker stops
--                    renewing it (the worker died); the job is then claimable
--                    again.
--   queue            the job_type up to its first '.', e.g. `email`.

CREATE TABLE Jobs (
    job              BLOB NOT NULL,
    id               TEXT PRIMARY KEY,
    job_type         TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'Pending'
                     CHECK (status IN ('Pending', 'Running', 'Done', 'Failed', 'Killed')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER NOT NULL DEFAULT 25 CHECK (max_attempts >= 1),
    run_at           INTEGER NOT NULL,
    last_result      TEXT,
    lock_at          INTEGER,
    lock_by          TEXT,
    done_at          INTEGER,
    priority         INTEGER NOT NULL DEFAULT 0,
    metadata         TEXT,
    idempotency_key  TEXT,
    run_at_ms        INTEGER NOT NULL,
    lease_expires_ms INTEGER,
    queue            TEXT NOT NULL GENERATED ALWAYS AS (
                         CASE WHEN instr(job_type, '.') > 0
                              THEN substr(job_type, 1, instr(job_type, '.') - 1)
                              ELSE job_type END
                     ) VIRTUAL,
    UNIQUE (job_type, idempotency_key)
) STRICT;

-- Claiming: due jobs in claimable states, in order.
CREATE INDEX jobs_claimable ON Jobs (priority DESC, run_at_ms)
    WHERE status IN ('Pending', 'Failed');

-- Reaping: running jobs whose lease lapsed.
CREATE INDEX jobs_leases ON Jobs (lease_expires_ms) WHERE status = 'Running';

-- Counting by status and listing a status newest first (ids are ULIDs).
CREATE INDEX jobs_status ON Jobs (status, id);

-- Paused queues, by name; the row '*' pauses every queue (including queues
-- that have no jobs yet).
CREATE TABLE paused_queues (
    queue     TEXT PRIMARY KEY,
    paused_at TEXT NOT NULL
) STRICT;
