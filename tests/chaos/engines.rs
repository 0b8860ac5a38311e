//! Private database servers, started for one run on a free TCP port in a temporary directory, so that they
//! can be restarted mid-sweep without touching the shared services: `mariadbd` (no grant tables) and a
//! PostgreSQL cluster made with `initdb` and run with `pg_ctl` as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::{Connection as _, Executor as _};
use store::testing::Engine;

/// A private server of `engine`; stopped (hard) on drop.
pub struct PrivateEngine {
    engine: Engine,
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    child: Option<Child>,
}

fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Skips (`None`, printed) outside CI; CI insists.
fn skip(why: &str) -> Option<PrivateEngine> {
    assert!(!in_ci(), "CI=true requires a private server: {why}");
    eprintln!("SKIPPED: {why}");
    None
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn pg_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

impl PrivateEngine {
    /// Starts a private server; `None` (with the reason printed) when it cannot be started outside CI.
    pub async fn start(engine: Engine) -> Option<PrivateEngine> {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().ok()?;
        let port = free_port();
        let mut p = match engine {
            Engine::MySql => {
                let Some(bin) = ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]
                    .into_iter()
                    .map(PathBuf::from)
                    .find(|p| p.exists())
                else {
                    return skip("no mariadbd installed");
                };
                std::fs::create_dir(dir.path().join("data")).ok()?;
                PrivateEngine {
                    engine,
                    dir,
                    port,
                    bin,
                    child: None,
                }
            }
            Engine::Postgres => {
                let Some(bin) = pg_bin() else {
                    return skip("no /usr/lib/postgresql/*/bin/initdb");
                };
                let data = dir.path().join("data");
                let prepared =
                    run(Command::new("chown").arg("postgres").arg(dir.path())).and_then(|()| {
                        run(Command::new("runuser")
                            .args(["-u", "postgres", "--"])
                            .arg(bin.join("initdb"))
                            .args(["-A", "trust", "-U", "postgres", "-D"])
                            .arg(&data))
                    });
                if let Err(e) = prepared {
                    return skip(&format!("cannot make a private PostgreSQL cluster: {e}"));
                }
                PrivateEngine {
                    engine,
                    dir,
                    port,
                    bin,
                    child: None,
                }
            }
            Engine::Sqlite => return skip("SQLite has no server to restart"),
        };
        if let Err(e) = p.up().await {
            return skip(&format!("the private {} did not start: {e}", engine.name()));
        }
        let admin = p.admin_url();
        let created = async {
            let mut c = sqlx::AnyConnection::connect(&admin).await?;
            c.execute("CREATE DATABASE chaos").await?;
            c.close().await
        }
        .await;
        if let Err(e) = created {
            return skip(&format!("cannot create the chaos database: {e}"));
        }
        Some(p)
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The server's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn admin_url(&self) -> String {
        match self.engine {
            Engine::Postgres => format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
            _ => format!("mysql://root@127.0.0.1:{}/information_schema", self.port),
        }
    }

    /// The URL of the run's database.
    pub fn url(&self) -> String {
        match self.engine {
            Engine::Postgres => format!("postgres://postgres@127.0.0.1:{}/chaos", self.port),
            _ => format!("mysql://root@127.0.0.1:{}/chaos", self.port),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.path("data"))
            .args(args))
    }

    async fn up(&mut self) -> Result<(), String> {
        match self.engine {
            Engine::Postgres => {
                let opts = format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
                    self.port,
                    self.dir.path().display()
                );
                let log = self.path("pg.log");
                self.pg_ctl(&[
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    &opts,
                    "-l",
                    &log.display().to_string(),
                    "start",
                ])?;
            }
            _ => {
                let d = |p: &Path| p.display().to_string();
                let child = Command::new(&self.bin)
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", d(&self.path("data"))))
                    .arg(format!("--socket={}", d(&self.path("sock"))))
                    .arg(format!("--pid-file={}", d(&self.path("pid"))))
                    .arg(format!("--log-error={}", d(&self.path("err.log"))))
                    .arg(format!("--port={}", self.port))
                    .args([
                        "--bind-address=127.0.0.1",
                        "--skip-grant-tables",
                        "--skip-log-bin",
                        "--innodb-buffer-pool-size=16M",
                        "--innodb-log-file-size=4M",
                        "--user=root",
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| e.to_string())?;
                self.child = Some(child);
            }
        }
        let admin = self.admin_url();
        let mut last = String::new();
        for _ in 0..600 {
            match sqlx::AnyConnection::connect(&admin).await {
                Ok(c) => {
                    let _ = c.close().await;
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last)
    }

    fn down(&mut self) {
        match self.engine {
            Engine::Postgres => {
                let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
            }
            _ => {
                if let Some(mut c) = self.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
    }

    /// The server dies (PostgreSQL: immediate shutdown, no checkpoint; MariaDB: SIGKILL), stays down for
    /// `down_for`, and starts again on the same port and data.
    pub async fn restart(&mut self, down_for: Duration) -> Result<(), String> {
        self.down();
        tokio::time::sleep(down_for).await;
        self.up().await
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        self.down();
    }
}
