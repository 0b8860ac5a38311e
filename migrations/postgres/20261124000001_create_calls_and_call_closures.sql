-- callwatch default schema (Laravel types and names). `calls` is only created when missing, so an
-- application's existing table of that name is never touched.
CREATE TABLE IF NOT EXISTS calls (
    id bigserial PRIMARY KEY,
    uniqueid varchar(255) NULL,
    linkedid varchar(255) NULL,
    channel varchar(255) NULL,
    extension varchar(255) NULL,
    caller varchar(255) NULL,
    server varchar(255) NULL,
    status varchar(255) NOT NULL DEFAULT 'ringing',
    started_at timestamp(0) without time zone NULL,
    answered_at timestamp(0) without time zone NULL,
    ended_at timestamp(0) without time zone NULL,
    hangup_cause varchar(255) NULL,
    talk_seconds integer NULL,
    created_at timestamp(0) without time zone NULL,
    updated_at timestamp(0) without time zone NULL
);
-- The in-progress query: answered, not ended, per server, oldest first.
CREATE INDEX IF NOT EXISTS calls_in_progress_index ON calls (server, answered_at)
    WHERE ended_at IS NULL AND answered_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS calls_uniqueid_index ON calls (uniqueid);
CREATE INDEX IF NOT EXISTS calls_linkedid_index ON calls (linkedid);

-- The audit: one row per close attempt (closed or skipped), with the previous and new values.
CREATE TABLE IF NOT EXISTS call_closures (
    id bigserial PRIMARY KEY,
    batch_id varchar(64) NOT NULL,
    call_id varchar(191) NOT NULL,
    server varchar(255) NULL,
    uniqueid varchar(255) NULL,
    linkedid varchar(255) NULL,
    outcome varchar(16) NOT NULL,
    reason varchar(32) NOT NULL,
    cause text NULL,
    prev_ended_at timestamp(0) without time zone NULL,
    prev_status varchar(255) NULL,
    prev_hangup_cause varchar(255) NULL,
    prev_talk_seconds bigint NULL,
    prev_updated_at timestamp(0) without time zone NULL,
    new_ended_at timestamp(0) without time zone NULL,
    new_status varchar(255) NULL,
    new_hangup_cause varchar(255) NULL,
    new_talk_seconds bigint NULL,
    new_updated_at timestamp(0) without time zone NULL,
    ended_after timestamp(0) without time zone NULL,
    ended_before timestamp(0) without time zone NULL,
    run_id varchar(191) NOT NULL,
    decided_at timestamp(0) without time zone NOT NULL,
    undone_at timestamp(0) without time zone NULL,
    undo_run_id varchar(191) NULL
);
CREATE INDEX IF NOT EXISTS call_closures_batch_id_index ON call_closures (batch_id);
CREATE INDEX IF NOT EXISTS call_closures_run_id_index ON call_closures (run_id);
CREATE INDEX IF NOT EXISTS call_closures_decided_at_index ON call_closures (decided_at);
CREATE INDEX IF NOT EXISTS call_closures_call_id_index ON call_closures (call_id);
