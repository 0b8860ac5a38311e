//! `callwatch init --laravel PATH` end to end: a Laravel 8 app's `.env` and `config/app.php` become a
//! `callwatch.toml` that holds no secret, and `check-config` passes with it when the secrets come from the
//! environment (the app's `.env` as callwatch's environment).

use std::process::{Command, Stdio};

use store::testing::{Engine, TestDb};

const DB_SECRET: &str = "db-secret-4711";
const REDIS_SECRET: &str = "redis-secret-0815";
const PUSHER_SECRET: &str = "pusher-secret-2342";

fn callwatch(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callwatch"));
    cmd.args(args)
        .env_remove("CALLWATCH_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("CALLWATCH_AMI_URL")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn init_from_a_laravel_app_keeps_secrets_out_and_checks_out() {
    let Some(db) = TestDb::create(Engine::Postgres).await else {
        return;
    };
    db.store().await.shutdown().await; // migrated: the calls table and callwatch's own
    let url = url::Url::parse(db.url()).unwrap();
    let app = tempfile::tempdir().unwrap();
    std::fs::create_dir(app.path().join("config")).unwrap();
    let env_file = format!(
        "APP_NAME=\"Call Center\"\nAPP_ENV=production\n\nDB_CONNECTION=pgsql\nDB_HOST={host}\nDB_PORT={port}\n\
         DB_DATABASE={name}\nDB_USERNAME=postgres\nDB_PASSWORD={DB_SECRET}\n\nBROADCAST_DRIVER=redis\n\
         REDIS_HOST=127.0.0.1\nREDIS_PASSWORD={REDIS_SECRET}\nREDIS_PORT=6379\n\nPUSHER_APP_ID=1\n\
         PUSHER_APP_KEY=key\nPUSHER_APP_SECRET={PUSHER_SECRET}\n",
        host = url.host_str().unwrap(),
        port = url.port().unwrap_or(5432),
        name = url.path().trim_start_matches('/'),
    );
    std::fs::write(app.path().join(".env"), env_file).unwrap();
    std::fs::write(
        app.path().join("config/app.php"),
        "<?php\n\nreturn [\n    'name' => env('APP_NAME', 'Laravel'),\n    'timezone' => 'Europe/Berlin',\n];\n",
    )
    .unwrap();
    let out_path = app.path().join("callwatch.toml");
    let app_dir = app.path().to_str().unwrap();
    let out_arg = out_path.to_str().unwrap();
    let out = callwatch(&["init", "--laravel", app_dir, "--output", out_arg], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let toml_text = std::fs::read_to_string(&out_path).unwrap();
    for secret in [DB_SECRET, REDIS_SECRET, PUSHER_SECRET] {
        assert!(!toml_text.contains(secret), "{secret} copied:\n{toml_text}");
        assert!(!text(&out).contains(secret), "{secret} printed");
    }
    for line in [
        "timezone = \"Europe/Berlin\"",
        "password_env = \"DB_PASSWORD\"",
        "app_name = \"Call Center\"",
        "call_center_database_",
        "password_env = \"REDIS_PASSWORD\"",
        r"event = 'App\Events\CallStatusUpdated'",
        "listen('CallStatusUpdated'",
    ] {
        assert!(toml_text.contains(line), "{line} missing:\n{toml_text}");
    }
    assert!(text(&out).contains("DB_PASSWORD"), "{}", text(&out));

    // A second init does not overwrite the file unless told to.
    let again = callwatch(&["init", "--laravel", app_dir, "--output", out_arg], &[]);
    assert!(!again.status.success());
    assert!(text(&again).contains("--force"), "{}", text(&again));

    // With the secrets in the environment, the file checks out against the live database.
    let env = [
        ("DB_PASSWORD", DB_SECRET),
        ("REDIS_PASSWORD", REDIS_SECRET),
        ("CALLWATCH_AMI_SECRET", "ami-secret"),
    ];
    let check = tokio::task::spawn_blocking(move || {
        callwatch(
            &["check-config", "--config", &out_path.display().to_string()],
            &env,
        )
    })
    .await
    .unwrap();
    let all = text(&check);
    assert!(check.status.success(), "{all}");
    assert!(all.contains("configuration OK"), "{all}");
    assert!(all.contains("timezone Europe/Berlin"), "{all}");
    assert!(!all.contains(DB_SECRET), "{all}");

    // Without DB_PASSWORD in the environment, the error names the variable.
    let out_path = app.path().join("callwatch.toml");
    let check = tokio::task::spawn_blocking(move || {
        callwatch(
            &["check-config", "--config", &out_path.display().to_string()],
            &[("CALLWATCH_AMI_SECRET", "ami-secret")],
        )
    })
    .await
    .unwrap();
    assert!(!check.status.success());
    assert!(
        text(&check).contains("DB_PASSWORD is not set"),
        "{}",
        text(&check)
    );
}
