//! Integration tests of ami-testkit: real TCP on 127.0.0.1:0, a raw tokio client and ami-proto.

mod client;
mod pbx;
mod pbx_server;
mod server;
