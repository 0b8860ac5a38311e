//! The `calls` table on SQLite, PostgreSQL and MySQL/MariaDB: audited, conditional closes.
#![warn(missing_docs)]
