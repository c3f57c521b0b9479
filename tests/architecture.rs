//! The crate graph as the README's architecture map draws it, checked from `cargo
//! metadata`: dependencies point one way (schemas <- {bus, lake} <- the components <- the
//! binary), no component crate depends on another, only `bus` talks to Kafka through
//! rdkafka, and the wire contracts (`schemas`) carry no Arrow.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// The workspace's libraries below the components, each with what it may use.
const LIBRARIES: &[(&str, &[&str])] = &[
    ("labstream-schemas", &[]),
    ("labstream-bus", &["labstream-schemas"]),
    ("labstream-lake", &["labstream-schemas"]),
];

/// The component crates: they may use the libraries, never one another.
const COMPONENTS: &[&str] = &[
    "labstream-ingest",
    "labstream-processors",
    "labstream-sinks",
    "labstream-api",
];

/// Normal (non-dev, non-build) dependencies of each workspace package.
fn workspace_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

#[test]
fn dependencies_point_one_way() {
    let deps = workspace_dependencies();
    let ours = |name: &str| -> BTreeSet<String> {
        deps[name]
            .iter()
            .filter(|d| d.starts_with("labstream"))
            .cloned()
            .collect()
    };
    for (library, allowed) in LIBRARIES {
        let uses = ours(library);
        let allowed: BTreeSet<String> = allowed.iter().map(|s| s.to_string()).collect();
        assert!(
            uses.is_subset(&allowed),
            "{library} may use only {allowed:?} of the workspace, uses {uses:?}"
        );
    }
    for component in COMPONENTS {
        let uses = ours(component);
        let others: Vec<&String> = uses
            .iter()
            .filter(|d| COMPONENTS.contains(&d.as_str()))
            .collect();
        assert!(
            others.is_empty(),
            "{component} depends on the component crate(s) {others:?}: move what they share down to labstream-schemas, -bus or -lake"
        );
        assert!(
            uses.iter().all(|d| LIBRARIES.iter().any(|(l, _)| l == d)),
            "{component} uses {uses:?}: only the libraries {:?}",
            LIBRARIES.iter().map(|(l, _)| l).collect::<Vec<_>>()
        );
    }
}

#[test]
fn only_bus_talks_to_kafka_and_the_contracts_carry_no_arrow() {
    let deps = workspace_dependencies();
    for (package, uses) in &deps {
        if uses.contains("rdkafka") {
            assert!(
                ["labstream-bus", "labstream-benches"].contains(&package.as_str()),
                "{package} depends on rdkafka: build Kafka clients through labstream-bus"
            );
        }
    }
    for forbidden in ["arrow", "parquet", "datafusion"] {
        assert!(
            !deps["labstream-schemas"].contains(forbidden),
            "labstream-schemas depends on {forbidden}: the lake's tables live in labstream-lake"
        );
    }
}
