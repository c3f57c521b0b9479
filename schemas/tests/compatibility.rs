//! Every schema version must be backward and forward compatible with the previous
//! version of the same record, so old and new readers and writers can share a topic.

use apache_avro::schema_compatibility::SchemaCompatibility;
use labstream_schemas::Codec;

#[test]
fn each_schema_version_is_compatible_with_its_predecessor() {
    let codec = Codec::new();
    let versions = codec.versions();
    assert!(!versions.is_empty());
    for (i, newer) in versions.iter().enumerate() {
        let Some(older) = versions[..i]
            .iter()
            .filter(|v| v.name == newer.name && v.version < newer.version)
            .max_by_key(|v| v.version)
        else {
            continue;
        };
        // backward: the new reader reads old data; forward: the old reader reads new data.
        SchemaCompatibility::can_read(&older.schema, &newer.schema).unwrap_or_else(|e| {
            panic!(
                "{} v{} cannot read v{}: {e}",
                newer.name, newer.version, older.version
            )
        });
        SchemaCompatibility::can_read(&newer.schema, &older.schema).unwrap_or_else(|e| {
            panic!(
                "{} v{} cannot read v{}: {e}",
                older.name, older.version, newer.version
            )
        });
    }
}

#[test]
fn every_avsc_file_is_registered_in_the_codec() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "avsc")
        })
        .count();
    assert_eq!(
        files,
        Codec::new().versions().len(),
        "every file in {} must be listed in SCHEMA_FILES",
        dir.display()
    );
}

#[test]
fn every_record_starts_at_v1_and_is_named_as_registered() {
    let codec = Codec::new();
    for v in codec.versions() {
        let apache_avro::Schema::Record(record) = &v.schema else {
            panic!("{} v{} is not a record schema", v.name, v.version);
        };
        assert_eq!(
            record.name.fullname(None),
            v.name,
            "v{} of {} declares another record name",
            v.version,
            v.name
        );
        for older in 1..v.version {
            assert!(
                codec
                    .versions()
                    .iter()
                    .any(|o| o.name == v.name && o.version == older),
                "{} v{} has no v{older}",
                v.name,
                v.version
            );
        }
    }
    for name in [
        "labstream.Sample",
        "labstream.AlertRule",
        "labstream.AlertEvent",
        "labstream.AlertState",
    ] {
        assert!(
            codec.writer_schema(name).is_some(),
            "{name} is not registered"
        );
    }
}
