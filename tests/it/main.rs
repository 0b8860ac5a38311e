//! The runner's one integration-test binary.
mod common;
mod replay;
mod events;
mod simulate;
