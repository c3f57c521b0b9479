//! The binary's command line: every subcommand answers `--help`, and settings layer
//! and validate as documented.

use std::process::Command;

fn labstream(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_labstream"))
        .args(args)
        .env_remove("LABSTREAM_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["ingest", "--help"],
        vec!["api", "--help"],
        vec!["sink", "--help"],
        vec!["query", "--help"],
        vec!["simulate", "--help"],
        vec!["config", "--help"],
        vec!["config", "check", "--help"],
        vec!["token", "--help"],
        vec!["compact", "--help"],
        vec!["replay", "--help"],
        vec!["lag", "--help"],
        vec!["backfill", "--help"],
        vec!["token", "keygen", "--help"],
        vec!["token", "issue", "--help"],
    ] {
        let (ok, stdout, stderr) = labstream(&args);
        assert!(ok, "{args:?}: {stderr}");
        assert!(stdout.contains("Usage: labstream"), "{args:?}: {stdout}");
    }
}

#[test]
fn config_check_prints_the_layered_settings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("labstream.toml");
    std::fs::write(
        &file,
        "[kafka]\nsamples_partitions = 12\n[http]\nlisten = \"127.0.0.1:9000\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_labstream"))
        .args(["--config", file.to_str().unwrap(), "config", "check"])
        .env("LABSTREAM__HTTP__LISTEN", "127.0.0.1:9999")
        .env("LABSTREAM__AUTH__DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("samples_partitions = 12"), "{stdout}");
    assert!(stdout.contains("listen = \"127.0.0.1:9999\""), "{stdout}");
    assert!(stdout.contains("LABSTREAM__HTTP__LISTEN"), "{stdout}");

    let out = Command::new(env!("CARGO_BIN_EXE_labstream"))
        .args(["config", "check"])
        .env("LABSTREAM__KAFKA__SAMPLES_PARTITIONS", "zero")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kafka.samples_partitions"), "{stderr}");
}

#[test]
fn a_missing_config_file_is_named() {
    let (ok, _, stderr) =
        labstream(&["--config", "/nonexistent/labstream.toml", "config", "check"]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/labstream.toml"), "{stderr}");
}

#[test]
fn auth_can_be_disabled_only_on_loopback_and_otherwise_needs_a_key() {
    let run = |env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_labstream"))
            .args(["config", "check"])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, stderr) = run(&[
        ("LABSTREAM__AUTH__DISABLED", "true"),
        ("LABSTREAM__HTTP__LISTEN", "0.0.0.0:8080"),
    ]);
    assert!(!ok);
    assert!(stderr.contains("not a loopback address"), "{stderr}");

    let (ok, _, stderr) = run(&[]);
    assert!(!ok);
    assert!(stderr.contains("labstream token keygen"), "{stderr}");

    let (ok, stdout, _) = run(&[("LABSTREAM__AUTH__DISABLED", "true")]);
    assert!(ok);
    assert!(stdout.contains("auth: DISABLED"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let (_, public_pem) =
        labstream_schemas::auth::generate_keypair(labstream_schemas::auth::KeyAlg::Ed25519)
            .unwrap();
    let key = dir.path().join("public.pem");
    std::fs::write(&key, public_pem).unwrap();
    let (ok, stdout, stderr) = run(&[
        ("LABSTREAM__AUTH__PUBLIC_KEY", key.to_str().unwrap()),
        ("LABSTREAM__HTTP__LISTEN", "0.0.0.0:8080"),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("EdDSA"), "{stdout}");
}

/// A reader that stops early (`labstream config check | head -1`, `labstream query ... |
/// head`) ends the command quietly with the status of SIGPIPE (141), as `cat` would:
/// no panic, no error message.
#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let lake = tempfile::tempdir().unwrap();
    for args in [
        vec!["config", "check"],
        vec![
            "query",
            "--lake",
            lake.path().to_str().unwrap(),
            "--format",
            "csv",
            "SELECT 1 AS one",
        ],
    ] {
        // The pipe's reading end is closed before the command starts, so its first
        // write to standard output fails with EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_labstream"))
            .args(&args)
            .env_remove("LABSTREAM_CONFIG")
            .env("LABSTREAM__AUTH__DISABLED", "true")
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("error"),
            "{args:?}: {stderr}"
        );
    }
}

/// The documented exit statuses: 0 on success, 2 on a command-line usage error, 1 on
/// any other error with an `error:` line on standard error (141 is above).
#[test]
fn exit_statuses_are_as_documented() {
    let lake = tempfile::tempdir().unwrap();
    let lake = lake.path().to_str().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_labstream"))
            .args(args)
            .env_remove("LABSTREAM_CONFIG")
            .env("LABSTREAM__AUTH__DISABLED", "true")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["query", "--lake", lake, "SELECT 1 AS one"]);
    assert_eq!(code, Some(0), "{stderr}");
    for usage in [
        vec!["--no-such-flag"],
        vec!["no-such-command"],
        vec!["query"],
        vec!["query", "--format", "xml", "SELECT 1"],
        vec!["replay", "--group", "g"],
    ] {
        let (code, stderr) = run(&usage);
        assert_eq!(code, Some(2), "{usage:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{usage:?}: {stderr}");
        assert!(stderr.contains("--help"), "{usage:?}: {stderr}");
    }
    for failing in [
        vec!["query", "--lake", lake, "SELEC 1"],
        vec!["query", "--lake", lake, "DROP TABLE samples_power"],
        vec!["--config", "/nonexistent/labstream.toml", "config", "check"],
        vec![
            "export",
            "--lake",
            lake,
            "--experiment",
            "none-such",
            "--output",
            "/tmp/x.tar",
        ],
    ] {
        let (code, stderr) = run(&failing);
        assert_eq!(code, Some(1), "{failing:?}: {stderr}");
        assert!(
            stderr.lines().any(|l| l.starts_with("error: ")),
            "{failing:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{failing:?}: {stderr}");
    }
}
