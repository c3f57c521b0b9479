//! Fills a fresh topic with a simulated fleet's samples, Avro single-object encoded
//! with labstream's codec and keyed by sensor id, through labstream's producer (acks=all,
//! idempotence, lz4): the very records ingest appends. For the bulk loader it also keeps
//! the MongoDB documents of the same samples, made by the MongoDB sink's own conversion,
//! in a file that the loader's process reads before its clock starts.

use crate::fleet::Fleet;
use anyhow::Context;
use labstream_bus::{KafkaConfig, Producer, TopicSpec};
use labstream_schemas::{Codec, Registry, Sample};
use labstream_sinks::mongo::to_document;
use mongodb::bson::{RawDocumentBuf, rawdoc};
use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Samples per produce batch and batches in flight, as `labstream-loadgen kafka-raw`.
const BATCH: usize = 500;
const CONCURRENCY: usize = 8;

/// Documents of one sink-sized batch, grouped by collection as the MongoDB sink groups
/// them (`samples_<type>`, in name order).
pub type DocBatch = Vec<(String, Vec<RawDocumentBuf>)>;

/// A filled topic.
pub struct Preloaded {
    pub topic: String,
    pub partitions: i32,
    pub records: u64,
    /// Avro bytes of all records (values only).
    pub payload_bytes: u64,
    pub seconds: f64,
    /// The MongoDB documents of the same samples with their collection, when asked for.
    pub docs: Vec<(String, RawDocumentBuf)>,
}

pub struct PreloadSpec<'a> {
    pub kafka: &'a KafkaConfig,
    pub topic: String,
    pub partitions: i32,
    pub records: u64,
    pub sensors_per_type: usize,
    /// Keep the MongoDB documents of the samples.
    pub keep_docs: bool,
    /// Tells the fleets of different topics apart in the sensor ids.
    pub shard_base: usize,
}

pub async fn preload(spec: PreloadSpec<'_>) -> anyhow::Result<Preloaded> {
    labstream_bus::ensure_topics(spec.kafka, &[TopicSpec::new(&spec.topic, spec.partitions)])
        .await
        .with_context(|| format!("creating topic {}", spec.topic))?;
    let producer = Producer::new(spec.kafka)?;
    let codec = Codec::new();
    let registry = Registry::default_lab();
    let claimed = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let mut fleet = Fleet::new(&registry, spec.sensors_per_type, spec.shard_base + worker);
        let (producer, codec, topic) = (producer.clone(), codec.clone(), spec.topic.clone());
        let (claimed, acked) = (claimed.clone(), acked.clone());
        let (records, keep_docs) = (spec.records, spec.keep_docs);
        workers.spawn(async move {
            let mut docs: Vec<(String, RawDocumentBuf)> = Vec::new();
            let mut bytes = 0u64;
            loop {
                let from = claimed.fetch_add(BATCH as u64, Ordering::SeqCst);
                if from >= records {
                    break;
                }
                let n = (records - from).min(BATCH as u64) as usize;
                let samples = fleet.take(n);
                let mut encoded = Vec::with_capacity(n);
                for s in &samples {
                    encoded.push((s.sensor_id.as_str(), codec.encode(s)?));
                }
                bytes += encoded.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
                for r in futures::future::join_all(
                    encoded
                        .iter()
                        .map(|(key, value)| producer.send(&topic, key.as_bytes(), value)),
                )
                .await
                {
                    r.context("producing the preload")?;
                }
                acked.fetch_add(n as u64, Ordering::SeqCst);
                if keep_docs {
                    for s in &samples {
                        docs.push((
                            collection_of(s),
                            RawDocumentBuf::from_document(&to_document(s))?,
                        ));
                    }
                }
            }
            anyhow::Ok((docs, bytes))
        });
    }
    let progress = {
        let acked = acked.clone();
        let records = spec.records;
        let topic = spec.topic.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                eprintln!(
                    "sinkbench: preload {topic}: {} of {records} records acknowledged",
                    acked.load(Ordering::SeqCst)
                );
            }
        })
    };
    let mut docs = Vec::new();
    let mut payload_bytes = 0;
    while let Some(joined) = workers.join_next().await {
        let (d, b) = joined.context("a preload worker panicked")??;
        docs.extend(d);
        payload_bytes += b;
    }
    progress.abort();
    producer.flush(Duration::from_secs(30))?;
    Ok(Preloaded {
        topic: spec.topic,
        partitions: spec.partitions,
        records: acked.load(Ordering::SeqCst),
        payload_bytes,
        seconds: started.elapsed().as_secs_f64(),
        docs,
    })
}

/// The MongoDB sink's collection for a sample.
fn collection_of(s: &Sample) -> String {
    format!("samples_{}", s.sensor_type)
}

/// Writes documents with their collection as a sequence of BSON documents
/// `{c: <collection>, d: <document>}`.
pub fn write_docs(path: &Path, docs: &[(String, RawDocumentBuf)]) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for (collection, doc) in docs {
        let entry = rawdoc! { "c": collection.as_str(), "d": doc.clone() };
        out.write_all(entry.as_bytes())?;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads what `write_docs` wrote.
pub fn read_docs(path: &Path) -> anyhow::Result<Vec<(String, RawDocumentBuf)>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    let mut docs = Vec::new();
    let mut rest = bytes.as_slice();
    while rest.len() >= 4 {
        let len = i32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        anyhow::ensure!(
            len >= 5 && len <= rest.len(),
            "{} is truncated",
            path.display()
        );
        let entry = RawDocumentBuf::from_bytes(rest[..len].to_vec())?;
        let collection = entry.get_str("c")?.to_owned();
        let doc = entry.get_document("d")?.to_raw_document_buf();
        docs.push((collection, doc));
        rest = &rest[len..];
    }
    Ok(docs)
}

/// Groups documents into the MongoDB sink's batches: `size` records each, split by
/// collection in name order.
pub fn batches(docs: Vec<(String, RawDocumentBuf)>, size: usize) -> Vec<DocBatch> {
    let size = size.max(1);
    let mut out = Vec::with_capacity(docs.len().div_ceil(size));
    let mut current: BTreeMap<String, Vec<RawDocumentBuf>> = BTreeMap::new();
    let mut n = 0;
    for (collection, doc) in docs {
        current.entry(collection).or_default().push(doc);
        n += 1;
        if n == size {
            out.push(std::mem::take(&mut current).into_iter().collect());
            n = 0;
        }
    }
    if n > 0 {
        out.push(current.into_iter().collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_survive_the_file_and_batch_like_the_sink() {
        let registry = Registry::default_lab();
        let samples = Fleet::new(&registry, 2, 0).take(30);
        let docs: Vec<(String, RawDocumentBuf)> = samples
            .iter()
            .map(|s| {
                (
                    collection_of(s),
                    RawDocumentBuf::from_document(&to_document(s)).unwrap(),
                )
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("sinkbench-docs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("docs.bson");
        write_docs(&path, &docs).unwrap();
        let read = read_docs(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read, docs);

        let b = batches(read, 20);
        assert_eq!(b.len(), 2);
        assert_eq!(b.iter().flatten().map(|(_, d)| d.len()).sum::<usize>(), 30);
        let names: Vec<&str> = b[0].iter().map(|(c, _)| c.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(
            names, sorted,
            "collections in name order, as the sink's BTreeMap"
        );
    }
}
