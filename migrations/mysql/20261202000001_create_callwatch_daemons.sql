-- Live callwatch daemons sharing this database (a fleet): each writes its row every lock check, so the
-- others can tell how many are alive and split the servers between them. seen_at is UTC text
-- ('YYYY-MM-DD HH:MM:SS.ffffff'), compared as text.
CREATE TABLE IF NOT EXISTS callwatch_daemons (
    id varchar(64) NOT NULL PRIMARY KEY,
    host varchar(255) NOT NULL,
    pid bigint NOT NULL,
    servers_wanted bigint NOT NULL,
    servers_owned bigint NOT NULL,
    owned text NULL,
    seen_at varchar(32) NOT NULL
);
