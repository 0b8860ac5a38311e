-- Where a close's ended_at comes from: 'evidence' (a seen Hangup, or the last moment the channel was known
-- alive) or 'cdr' (Asterisk's call detail record). NULL on skipped attempts and on closes audited before.
ALTER TABLE call_closures ADD COLUMN ended_at_source varchar(16) NULL;
