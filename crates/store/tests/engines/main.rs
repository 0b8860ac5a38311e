//! The store against the real engines: SQLite always; PostgreSQL and MariaDB on 127.0.0.1 (skipped with a
//! message when down, unless CI=true). Each test gets its own database, dropped at the end.

mod close;
mod common;
mod failure;
mod lock;
mod mapping;
mod matching;
mod migrate;
mod refine;
mod stats;
mod timezone;
mod undo;
mod unreadable;
