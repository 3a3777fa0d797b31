-- Send job ids are never reused. A plain INTEGER PRIMARY KEY hands a deleted row's id to
-- the next insert, so a worker finishing a job that an ack had already ended (await the
-- ack, retry, fail) could act on the next message's job instead. AUTOINCREMENT rules that
-- out; SQLite cannot add it in place, so the table is rebuilt.
CREATE TABLE send_jobs_rebuilt (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id   TEXT NOT NULL UNIQUE REFERENCES messages (id),
    device_uid   TEXT NOT NULL REFERENCES devices (uid),
    run_at       INTEGER NOT NULL,
    lease_until  INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);
INSERT INTO send_jobs_rebuilt (id, message_id, device_uid, run_at, lease_until, attempts, last_error)
    SELECT id, message_id, device_uid, run_at, lease_until, attempts, last_error FROM send_jobs;
DROP TABLE send_jobs;
ALTER TABLE send_jobs_rebuilt RENAME TO send_jobs;
CREATE INDEX send_jobs_due ON send_jobs (device_uid, run_at, id);
CREATE INDEX send_jobs_leased ON send_jobs (device_uid, lease_until) WHERE lease_until IS NOT NULL;
