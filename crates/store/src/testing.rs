//! Throw-away databases for tests (feature `testing`), on each engine.
//!
//! ```no_run
//! # async fn t() {
//! use store::testing::{Engine, TestDb};
//! for engine in Engine::ALL {
//!     let Some(db) = TestDb::create(engine).await else { continue }; // engine down outside CI: skipped
//!     let store = db.store().await;          // migrated, default mapping, UTC
//!     // … db is dropped (DROP DATABASE / temp dir removed) at the end of the test, even on panic.
//! }
//! # }
//! ```
//!
//! PostgreSQL (`postgres://postgres@127.0.0.1:5432/test`, override with `CALLWATCH_TEST_POSTGRES_URL`) and
//! MariaDB/MySQL (`mysql://root@127.0.0.1:3306/test`, override with `CALLWATCH_TEST_MYSQL_URL`) get a fresh
//! `cw_<random>` database per test; SQLite a file in a fresh temporary directory. When an engine is down,
//! [`TestDb::create`] prints why and returns `None` — unless `CI=true`, where a missing engine panics so
//! that CI cannot pass by skipping.

use std::sync::Arc;

use rand::Rng;
use sqlx::{Connection, Executor};

use crate::{DatabaseConfig, Store};

/// A database engine to test against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// SQLite (a temporary file).
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL / MariaDB.
    MySql,
}

impl Engine {
    /// All three.
    pub const ALL: [Engine; 3] = [Engine::Sqlite, Engine::Postgres, Engine::MySql];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
            Engine::MySql => "mysql",
        }
    }

    /// The product's name, for reports (`MariaDB` for the MySQL protocol engine the tests run on).
    pub fn product(self) -> &'static str {
        match self {
            Engine::Sqlite => "SQLite",
            Engine::Postgres => "PostgreSQL",
            Engine::MySql => "MariaDB",
        }
    }

    fn admin_url(self) -> Option<String> {
        match self {
            Engine::Sqlite => None,
            Engine::Postgres => Some(
                std::env::var("CALLWATCH_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            ),
            Engine::MySql => Some(
                std::env::var("CALLWATCH_TEST_MYSQL_URL")
                    .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
            ),
        }
    }
}

/// A fault the store injects into its next operations (tests only).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// In `close`, after the given 0-based chunk was written (inside the transaction), the server kills the
    /// store's own connection (`pg_terminate_backend(pg_backend_pid())` / `KILL CONNECTION CONNECTION_ID()`).
    KillConnectionAfterChunk(usize),
}

impl Store {
    /// Arms (or with `None` disarms) a [`Fault`]. Only with the `testing` feature.
    pub fn set_fault(&self, fault: Option<Fault>) {
        if let Ok(mut f) = self.inner.fault.lock() {
            *f = fault;
        }
    }
}

/// A fresh database that is dropped with this value.
pub struct TestDb {
    engine: Engine,
    url: String,
    name: String,
    admin_url: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("engine", &self.engine)
            .field("name", &self.name)
            .finish()
    }
}

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

impl TestDb {
    /// Creates an empty database on `engine`; `None` when the engine is down outside CI (printed).
    ///
    /// # Panics
    /// When the engine is down and `CI=true`, or the database cannot be created.
    pub async fn create(engine: Engine) -> Option<TestDb> {
        let name = format!("cw_{:016x}", rand::thread_rng().gen::<u64>());
        let Some(admin) = engine.admin_url() else {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("calls.db");
            return Some(TestDb {
                engine,
                url: format!("sqlite://{}?mode=rwc", path.display()),
                name,
                admin_url: None,
                _dir: Some(dir),
            });
        };
        sqlx::any::install_default_drivers();
        let mut conn = match sqlx::AnyConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                let msg = format!(
                    "{} is not reachable at {} ({})",
                    engine.name(),
                    crate::config::redact_url(&admin),
                    crate::Error::sqlx("connecting", e)
                );
                if in_ci() {
                    panic!("{msg}; CI=true requires every engine");
                }
                eprintln!("SKIPPED on {}: {msg}", engine.name());
                return None;
            }
        };
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let _ = conn.close().await;
        let url = match url::Url::parse(&admin) {
            Ok(mut u) => {
                u.set_path(&format!("/{name}"));
                u.to_string()
            }
            Err(_) => panic!("bad admin URL for {}", engine.name()),
        };
        Some(TestDb {
            engine,
            url,
            name,
            admin_url: Some(admin),
            _dir: None,
        })
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A default configuration for this database (small pool: many tests run at once).
    pub fn config(&self) -> DatabaseConfig {
        let mut cfg = DatabaseConfig::new(self.url.clone());
        cfg.max_connections = 3;
        cfg
    }

    /// A migrated store with the default configuration on the system clock.
    pub async fn store(&self) -> Store {
        let store = self
            .store_with(&self.config(), Arc::new(clock::SystemClock))
            .await;
        store.migrate().await.unwrap();
        store
    }

    /// A store with `cfg` (its URL replaced by this database's) and `clock`; not migrated.
    pub async fn store_with(&self, cfg: &DatabaseConfig, clock: clock::SharedClock) -> Store {
        let mut cfg = cfg.clone();
        cfg.url = crate::DatabaseUrl::new(self.url.clone());
        Store::connect(&cfg, clock).await.unwrap()
    }

    /// Runs raw SQL statements (`;`-separated is not supported: one per call) on a fresh connection.
    pub async fn exec(&self, sql: &str) {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url).await.unwrap();
        conn.execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(admin) = self.admin_url.clone() else {
            return;
        };
        let name = self.name.clone();
        let engine = self.engine;
        // Drop may run inside a runtime (or during a panic): do the async cleanup on a thread of its own.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(mut conn) = sqlx::AnyConnection::connect(&admin).await else {
                    return;
                };
                let sql = match engine {
                    Engine::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    _ => format!("DROP DATABASE IF EXISTS {name}"),
                };
                if let Err(e) = conn.execute(sql.as_str()).await {
                    eprintln!("could not drop test database {name}: {e}");
                }
                let _ = conn.close().await;
            });
        });
        let _ = handle.join();
    }
}
