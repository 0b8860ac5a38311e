-- callwatch default schema (Laravel types and names). `calls` is only created when missing, so an
-- application's existing table of that name is never touched.
CREATE TABLE IF NOT EXISTS calls (
    id integer PRIMARY KEY AUTOINCREMENT NOT NULL,
    uniqueid varchar NULL,
    linkedid varchar NULL,
    channel varchar NULL,
    extension varchar NULL,
    caller varchar NULL,
    server varchar NULL,
    status varchar NOT NULL DEFAULT 'ringing',
    started_at datetime NULL,
    answered_at datetime NULL,
    ended_at datetime NULL,
    hangup_cause varchar NULL,
    talk_seconds integer NULL,
    created_at datetime NULL,
    updated_at datetime NULL
);
CREATE INDEX IF NOT EXISTS calls_in_progress_index ON calls (server, answered_at)
    WHERE ended_at IS NULL AND answered_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS calls_uniqueid_index ON calls (uniqueid);
CREATE INDEX IF NOT EXISTS calls_linkedid_index ON calls (linkedid);

CREATE TABLE IF NOT EXISTS call_closures (
    id integer PRIMARY KEY AUTOINCREMENT NOT NULL,
    batch_id varchar NOT NULL,
    call_id varchar NOT NULL,
    server varchar NULL,
    uniqueid varchar NULL,
    linkedid varchar NULL,
    outcome varchar NOT NULL,
    reason varchar NOT NULL,
    cause text NULL,
    prev_ended_at datetime NULL,
    prev_status varchar NULL,
    prev_hangup_cause varchar NULL,
    prev_talk_seconds integer NULL,
    prev_updated_at datetime NULL,
    new_ended_at datetime NULL,
    new_status varchar NULL,
    new_hangup_cause varchar NULL,
    new_talk_seconds integer NULL,
    new_updated_at datetime NULL,
    ended_after datetime NULL,
    ended_before datetime NULL,
    run_id varchar NOT NULL,
    decided_at datetime NOT NULL,
    undone_at datetime NULL,
    undo_run_id varchar NULL
);
CREATE INDEX IF NOT EXISTS call_closures_batch_id_index ON call_closures (batch_id);
CREATE INDEX IF NOT EXISTS call_closures_run_id_index ON call_closures (run_id);
CREATE INDEX IF NOT EXISTS call_closures_decided_at_index ON call_closures (decided_at);
CREATE INDEX IF NOT EXISTS call_closures_call_id_index ON call_closures (call_id);

-- Single active instance per server on SQLite: a lease row per lock name.
CREATE TABLE IF NOT EXISTS callwatch_locks (
    name varchar PRIMARY KEY NOT NULL,
    holder varchar NOT NULL,
    expires_at varchar NOT NULL
);
