//! The runner's one integration-test binary.
mod broadcast_faults;
mod cleanup;
mod client;
mod common;
mod daemon;
mod demo;
mod events;
mod init;
mod laravel;
mod mysql_time_zone;
mod never_quiet;
mod replay;
mod simulate;
mod status;
mod store_cli;
mod talk_time;
mod transfers;
