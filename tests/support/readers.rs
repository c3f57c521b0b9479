//! Independent readers of what labstream writes, for expected values that do not come
//! from labstream itself: DuckDB, pyarrow and fastavro (PyPI, `infra/local/pytools`)
//! and Apache Avro for Java (Maven Central, `infra/local/javatools/install`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs an install script that prints a path, and returns that path.
fn installed(script: &str) -> PathBuf {
    let out = Command::new(repo().join(script)).output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The python of the venv with DuckDB, pyarrow and fastavro.
pub fn python() -> PathBuf {
    installed("infra/local/pytools")
}

/// Runs a Python `script` (source text) with `args`; its standard output as JSON.
pub fn python_json(script: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Python reader failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the Python reader printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn hex_file(dir: &Path, records: &[Vec<u8>]) -> PathBuf {
    let path = dir.join("records.hex");
    let text: String = records
        .iter()
        .map(|r| r.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn json_lines(out: std::process::Output, reader: &str) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "{reader} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `samples.raw` records (single-object encoded `Sample`s) decoded by fastavro, one
/// JSON object per record: sensor_id, sensor_type, ts (µs), seq, values as
/// `[union branch, value]`, tags.
pub fn samples_by_fastavro(records: &[Vec<u8>]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(python())
        .arg(repo().join("tests/readers/avro_samples.py"))
        .arg(repo().join("schemas/avro/sample.v1.avsc"))
        .arg(hex_file(dir.path(), records))
        .output()
        .unwrap();
    json_lines(out, "fastavro")
}

/// The same records decoded by Apache Avro for Java (`BinaryMessageDecoder`).
pub fn samples_by_java_avro(records: &[Vec<u8>]) -> Vec<serde_json::Value> {
    let lib = installed("infra/local/javatools/install");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!("{}/*", lib.display()))
        .arg(repo().join("tests/readers/AvroSamples.java"))
        .arg(repo().join("schemas/avro/sample.v1.avsc"))
        .arg(hex_file(dir.path(), records))
        .output()
        .unwrap();
    json_lines(out, "Java Avro")
}
