//! A loopback AMI load server for end-to-end benchmarks of `callwatch events --ami`.
//!
//! `cargo run --release -p ami --example load_server -- CALLS [PORT] [--generate-live]` serves each
//! connection the banner, a login answer and `CALLS` generated calls (93 events each) as fast as the socket
//! takes them, then closes. The stream is generated once before listening (about 46 KB per call held in
//! this process), so the server costs only its socket writes; `--generate-live` generates per connection
//! instead, as the in-process `loopback` bench does.

use ami_testkit::{LoadConfig, LoadServer};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let live = std::env::args().any(|a| a == "--generate-live");
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_753);
    let port: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let mut cfg = LoadConfig::new(calls);
    cfg.bind.set_port(port);
    cfg.pregenerate = !live;
    let server = LoadServer::start(cfg).await.unwrap();
    println!("{}", server.local_addr());
    std::future::pending::<()>().await;
}
