//! The Debian package (`cargo deb`, `[package.metadata.deb]` in Cargo.toml): built from the test build's
//! binary, then read back with `dpkg-deb` (file list, control fields, conffiles, maintainer scripts), and
//! its postinst run against stand-in commands to see what it does on a fresh install and on an upgrade.
//!
//! Needs `cargo-deb` (`.ci/run` installs it when missing); outside CI the test skips without it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn has_cargo_deb() -> bool {
    let ok = Command::new(cargo())
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cargo-deb is not installed (.ci/run installs it)"
        );
        eprintln!("skipped: cargo-deb is not installed (cargo install cargo-deb --locked)");
    }
    ok
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: Output) -> String {
    String::from_utf8(out.stdout).unwrap()
}

/// Builds the package from the binary this test run built (the `dev` profile's, stripped) into `dir`.
fn build_deb(dir: &Path) -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_callwatch"));
    let target_dir = binary.parent().unwrap().parent().unwrap();
    run(Command::new(cargo())
        .args([
            "deb",
            "--quiet",
            "--no-build",
            "--profile",
            "dev",
            "--strip",
            "--fast",
        ])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--output")
        .arg(dir)
        .env("CARGO_TARGET_DIR", target_dir));
    let deb = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap();
    let name = deb.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with(&format!("callwatch_{}-", env!("CARGO_PKG_VERSION"))),
        "{name}"
    );
    deb
}

/// Stand-in commands that log their arguments: `getent` finds nobody, `deb-systemd-helper` says the unit
/// was installed by the package and never enabled.
fn stubs(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("calls.log");
    let stub = |name: &str, body: &str| {
        let path = bin.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >> '{}'\n{body}\n",
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    stub("getent", "exit 2");
    stub("adduser", "exit 0");
    stub("install", "exit 0");
    stub("systemctl", "exit 0");
    stub("deb-systemd-invoke", "exit 0");
    stub(
        "deb-systemd-helper",
        "case \"$1 $2\" in *was-enabled*) exit 1;; esac\nexit 0",
    );
    log
}

#[test]
fn deb_package_installs_binary_unit_and_conffile_and_never_starts_the_service() {
    if !has_cargo_deb() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = build_deb(dir.path());

    // Contents.
    let listing = text(run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    let entry = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" ./{path}")))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"))
            .to_string()
    };
    assert!(entry("usr/bin/callwatch").starts_with("-rwxr-xr-x 0/0"));
    assert!(entry("usr/lib/systemd/system/callwatch.service").starts_with("-rw-r--r--"));
    assert!(entry("etc/callwatch/callwatch.toml").starts_with("-rw-r--r--"));
    entry("usr/share/doc/callwatch/copyright");
    // The README and the docs pages it links to.
    entry("usr/share/doc/callwatch/README.md");
    entry("usr/share/doc/callwatch/docs/operations.md");
    assert!(
        !listing.contains(".wants/"),
        "the unit is not enabled by the package:\n{listing}"
    );

    // Control fields.
    let field = |name: &str| {
        text(run(Command::new("dpkg-deb")
            .args(["--field"])
            .arg(&deb)
            .arg(name)))
        .trim()
        .to_string()
    };
    assert_eq!(field("Package"), "callwatch");
    assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    assert!(field("Depends").contains("adduser"), "{}", field("Depends"));
    let info = text(run(Command::new("dpkg-deb").arg("-I").arg(&deb)));
    for member in ["conffiles", "postinst", "postrm"] {
        assert!(info.contains(member), "{member} missing:\n{info}");
    }

    // Control archive: conffiles and maintainer scripts.
    let ctrl = dir.path().join("control");
    std::fs::create_dir_all(&ctrl).unwrap();
    let tar = run(Command::new("dpkg-deb").arg("--ctrl-tarfile").arg(&deb)).stdout;
    std::fs::write(dir.path().join("control.tar"), tar).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(dir.path().join("control.tar"))
        .arg("-C")
        .arg(&ctrl));
    let conffiles = std::fs::read_to_string(ctrl.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/callwatch/callwatch.toml");

    // Files: the unit is the documented one, pointing at the packaged binary; the config is the sample.
    let root = dir.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/callwatch.service")).unwrap();
    let documented = std::fs::read_to_string(manifest.join("deploy/callwatch.service")).unwrap();
    let body = |s: &str| -> Vec<String> {
        s.lines()
            .skip_while(|l| l.starts_with('#'))
            .map(|l| l.replace("/usr/local/bin/callwatch", "/usr/bin/callwatch"))
            .collect()
    };
    assert_eq!(
        body(&unit),
        body(&documented),
        "the packaged unit drifted from deploy/callwatch.service"
    );
    assert!(
        unit.contains("ExecStart=/usr/bin/callwatch run --config /etc/callwatch/callwatch.toml")
    );
    assert!(unit.contains("User=callwatch"));
    assert_eq!(
        std::fs::read(root.join("etc/callwatch/callwatch.toml")).unwrap(),
        std::fs::read(manifest.join("deploy/callwatch.toml")).unwrap()
    );
    let version = text(run(
        Command::new(root.join("usr/bin/callwatch")).arg("--version")
    ));
    assert_eq!(
        version.trim(),
        format!("callwatch {}", env!("CARGO_PKG_VERSION"))
    );

    // postinst on a fresh install: creates the user and /var/lib/callwatch, never enables or starts.
    let sandbox = dir.path().join("sandbox");
    let log = stubs(&sandbox);
    let path = format!("{}:/usr/bin:/bin", sandbox.join("bin").display());
    // As on a host booted with systemd.
    std::fs::create_dir_all(sandbox.join("run/systemd/system")).unwrap();
    for args in [&["configure", ""][..], &["configure", "0.0.9-1"][..]] {
        let _ = std::fs::remove_file(&log);
        let out = run(Command::new("sh")
            .arg(ctrl.join("postinst"))
            .args(args)
            .env("PATH", &path)
            .env("DPKG_ROOT", &sandbox));
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            calls.contains(
                "adduser --system --group --home /var/lib/callwatch --no-create-home callwatch"
            ),
            "{calls}"
        );
        assert!(
            calls.contains(&format!(
                "install -d -o callwatch -g callwatch -m 0750 {}/var/lib/callwatch",
                sandbox.display()
            )),
            "{calls}"
        );
        assert!(
            calls.contains("systemctl --system daemon-reload"),
            "{calls}"
        );
        for forbidden in [
            "systemctl start",
            "systemctl enable",
            "systemctl restart",
            "deb-systemd-invoke start",
            "deb-systemd-invoke restart",
            "deb-systemd-helper enable",
        ] {
            assert!(
                !calls.contains(forbidden),
                "postinst {args:?} ran `{forbidden}`:\n{calls}"
            );
        }
        // Only an upgrade restarts, and only a daemon that is already running.
        assert_eq!(
            calls.contains("deb-systemd-invoke try-restart callwatch.service"),
            !args[1].is_empty(),
            "{calls}"
        );
        let said = String::from_utf8_lossy(&out.stdout);
        if args[1].is_empty() {
            assert!(said.contains("installed but not started"), "{said}");
        } else {
            assert!(said.is_empty(), "quiet on upgrade: {said}");
        }
    }
}
