//! SQL over the lake. Each query gets a fresh DataFusion session with one table per
//! sensor type that has data (`samples_<type>`), partitioned by `date` (a date) and
//! `experiment` (text) from the lake's `date=`/`experiment=` folders, so filters on them
//! skip whole folders. Only read-only statements run (`sandbox`), and the only tables
//! are the lake's, so nothing outside it is readable. Each query has its own memory
//! pool (no spilling: over the limit it fails) and a deadline, and at most
//! `max_concurrent` run at once. Files are listed through `LakeStore`, which shows only
//! live lake files: a query racing compaction reads every row exactly once. The
//! `experiments` and `recordings` tables come from the files the experiments processor
//! keeps in `<lake>/experiments/` (empty, with their columns, until it wrote them), the
//! `alerts` table from `<lake>/alerts/date=.../` (partitioned by `date` like the samples).
//!
//! Each sample table is a `LakeTable`: files that a query's filters rule out by their
//! statistics or bloom filters are left out while planning, not opened one by one.
//!
//! What each query would otherwise read again from every file, the Parquet footers
//! (with their page indexes), the per-file statistics and bloom filters, is kept by the
//! engine across queries (`LakeCaches`). Lake files are immutable once renamed into
//! place and entries are checked against each file's size and modification time, so a
//! cached entry is never stale. What each folder holds is kept while the folder's
//! modification time is unchanged (`FolderListings`), so every query still sees the live
//! files of the moment.

use crate::config::{QueryConfig, human_bytes};
use crate::error::{Error, Result};
use crate::lake_store::{FolderListings, LakeStore, SETTLED};
use crate::lake_table::{BloomFilterCache, LakeTable};
use crate::sandbox;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::cache::TableScopedPath;
use datafusion::execution::cache::cache_manager::{
    CacheManagerConfig, CachedFileMetadata, CachedFileMetadataEntry, FileMetadataCache,
    FileStatisticsCache,
};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::options::{ParquetReadOptions, ReadOptions};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use labstream_lake::tables::{
    ALERTS_DIR, ALERTS_TABLE, EXPERIMENTS_TABLE, RECORDINGS_TABLE, alerts_schema,
    experiments_schema, recordings_schema, table_file,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct QueryEngine {
    lake: PathBuf,
    config: QueryConfig,
    slots: Arc<Semaphore>,
    caches: LakeCaches,
}

/// Per-file metadata shared by every query of an engine (each query still has its own
/// runtime and memory pool): Parquet footers and page indexes, within
/// `query.metadata_cache_bytes`, and each file's statistics (a small fraction of that).
#[derive(Clone, Debug)]
struct LakeCaches {
    metadata: Arc<FileMetadataCache>,
    statistics: Arc<FileStatisticsCache>,
    /// Each file's bloom filters, to drop the files a query's filters rule out while
    /// planning (`LakeTable`).
    blooms: BloomFilterCache,
    /// What each lake folder holds, while it is unchanged (`LakeStore`).
    listings: Arc<FolderListings>,
    /// Each sample table's schema (merged from all its files' footers), with the
    /// folders it was inferred from and their modification times.
    schemas: Arc<Mutex<HashMap<PathBuf, (FolderTimes, SchemaRef)>>>,
}

/// Folders with their modification times, sorted (`folder_times`).
type FolderTimes = Vec<(PathBuf, SystemTime)>;

impl LakeCaches {
    fn new(metadata_bytes: usize) -> Self {
        let metadata: Arc<FileMetadataCache> = Arc::new(
            DefaultCache::<datafusion::object_store::path::Path, CachedFileMetadataEntry>::new(
                metadata_bytes,
            )
            .with_name("labstream lake footers"),
        );
        let statistics: Arc<FileStatisticsCache> = Arc::new(
            DefaultCache::<TableScopedPath, CachedFileMetadata>::new(statistics_bytes(
                metadata_bytes,
            ))
            .with_name("labstream lake file statistics"),
        );
        Self {
            metadata,
            statistics,
            blooms: BloomFilterCache::new(statistics_bytes(metadata_bytes)),
            listings: Arc::default(),
            schemas: Arc::default(),
        }
    }

    /// The schema of the sample table in `dir`: inferred again only when a file came or
    /// went (a folder's modification time changed) since it last was. Inferring reads
    /// every file's footer (from the cache) after listing them all, which on a lake of
    /// thousands of small files costs more than many queries.
    async fn table_schema(
        &self,
        ctx: &SessionContext,
        dir: &Path,
        url: &str,
        options: &ListingOptions,
    ) -> datafusion::error::Result<SchemaRef> {
        let folders = folder_times(&self.listings, dir);
        if let Some((seen, schema)) = self.schemas.lock().unwrap().get(dir)
            && *seen == folders
        {
            return Ok(schema.clone());
        }
        let table_path = ListingTableUrl::parse(url)?;
        let schema = options.infer_schema(&ctx.state(), &table_path).await?;
        // Folder times are coarse (a clock tick): a file renamed in right after a change
        // that is still this recent might leave the time as it was, so such a listing is
        // not remembered.
        let settled = !folders.is_empty()
            && SystemTime::now()
                .checked_sub(SETTLED)
                .is_some_and(|before| folders.iter().all(|(_, t)| *t < before));
        if settled {
            self.schemas
                .lock()
                .unwrap()
                .insert(dir.to_path_buf(), (folders, schema.clone()));
        }
        Ok(schema)
    }

    /// The caches of one query's runtime: these two, and not DataFusion's listing cache
    /// (which keeps listings for a time, not while unchanged: `LakeStore` keeps them).
    fn config(&self, metadata_bytes: usize) -> CacheManagerConfig {
        CacheManagerConfig::default()
            .with_file_metadata_cache(Some(self.metadata.clone()))
            .with_metadata_cache_limit(metadata_bytes)
            .with_file_statistics_cache(Some(self.statistics.clone()))
            .with_file_statistics_cache_limit(statistics_bytes(metadata_bytes))
            .with_list_files_cache_limit(0)
    }
}

/// `dir` and every folder under it, with their modification times (sorted): a file
/// added, renamed or removed in a folder changes its time. From the folder listings the
/// lake's store keeps (a `stat` per folder once they are settled).
fn folder_times(listings: &FolderListings, dir: &Path) -> FolderTimes {
    let mut out: FolderTimes = match listings.walk(dir) {
        Ok(folders) => folders
            .iter()
            .map(|f| (f.path.clone(), f.modified))
            .collect(),
        // Unknown: the schema is inferred again, and not remembered (`table_schema`).
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// A file's statistics take a fraction of its footer (one entry per column, no row
/// group or page entries); so do its bloom filters (a few text columns, folded to the
/// values they hold). Each gets this much.
fn statistics_bytes(metadata_bytes: usize) -> usize {
    metadata_bytes / 4
}

/// A whole result, for callers that want it in memory.
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// A running query: its schema and its batches as they are computed. The first batch
/// is already computed, so planning errors and the errors of queries that must see all
/// their input before answering (sorts, aggregations: most memory-limit failures) come
/// from [`QueryEngine::query_stream`] itself, before anything was sent. Later errors
/// (the deadline, a limit hit while streaming) end the stream with an `Err`.
pub struct QueryStream {
    schema: SchemaRef,
    batches: BoxStream<'static, Result<RecordBatch>>,
}

impl QueryStream {
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.batches.poll_next_unpin(cx)
    }
}

impl QueryConfig {
    /// The engine answering SQL over the lake at `lake` under these limits.
    pub fn build(self, lake: impl Into<PathBuf>) -> Result<QueryEngine> {
        self.validate()?;
        Ok(QueryEngine::with_config(lake, self))
    }
}

impl QueryEngine {
    /// An engine with the default limits (`QueryConfig::default()`).
    pub fn new(lake: impl Into<PathBuf>) -> Self {
        Self::with_config(lake, QueryConfig::default())
    }

    pub(crate) fn with_config(lake: impl Into<PathBuf>, config: QueryConfig) -> Self {
        Self {
            lake: lake.into(),
            slots: Arc::new(Semaphore::new(config.max_concurrent)),
            caches: LakeCaches::new(config.metadata_cache_bytes),
            config,
        }
    }

    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    /// Names of the tables a query can use now.
    pub async fn tables(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = sample_tables(&self.lake)?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        names.extend([EXPERIMENTS_TABLE.to_owned(), RECORDINGS_TABLE.to_owned()]);
        Ok(names)
    }

    /// One of the `max_concurrent` query slots, held until dropped.
    pub(crate) fn try_slot(&self) -> Result<OwnedSemaphorePermit> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Busy {
                running: self.config.max_concurrent,
            })
    }

    pub(crate) fn lake(&self) -> &Path {
        &self.lake
    }

    pub(crate) async fn session(&self) -> Result<SessionContext> {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(2);
        // Filters are applied while decoding (late materialization), cheapest first, so
        // the other columns of rows a filter drops are not decoded: with files sorted
        // by (sensor_id, ts) and page statistics, one sensor's or one recording's rows
        // are a small part of the pages read.
        let parquet = &mut config.options_mut().execution.parquet;
        parquet.pushdown_filters = true;
        parquet.reorder_filters = true;
        // Lake files carry min/max statistics per row group and page, and bloom filters
        // on sensor, participant and recording ids (`LakeWriter`); an equality or IN
        // filter on those skips the row groups whose filter rules the value out.
        parquet.bloom_filter_on_read = true;
        // The query's own memory pool; without a disk manager nothing spills, so a
        // query over its limit fails instead of filling a disk.
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(self.caches.config(self.config.metadata_cache_bytes))
            .with_memory_limit(self.config.max_memory_bytes, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| Error::Internal(format!("query runtime: {e}")))?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        sandbox::restrict_table_functions(&ctx);
        for udf in crate::functions::overrides() {
            ctx.register_udf(udf);
        }
        // Every table is a local folder (`file://`): list it through the lake's view.
        ctx.register_object_store(
            ObjectStoreUrl::local_filesystem().as_ref(),
            Arc::new(LakeStore::new(self.caches.listings.clone())),
        );
        for (name, dir) in sample_tables(&self.lake)? {
            let options = ParquetReadOptions::default()
                .table_partition_cols(vec![
                    ("date".to_owned(), DataType::Date32),
                    ("experiment".to_owned(), DataType::Utf8),
                ])
                .to_listing_options(&ctx.copied_config(), ctx.copied_table_options());
            let url = format!("{}/", dir.display());
            let registered = async {
                let schema = self.caches.table_schema(&ctx, &dir, &url, &options).await?;
                // As `SessionContext::register_listing_table` builds it, wrapped.
                let path = ListingTableUrl::parse(&url)?.with_table_ref(name.as_str().into());
                let config = ListingTableConfig::new(path)
                    .with_listing_options(options)
                    .with_schema(schema);
                let statistics = ctx.runtime_env().cache_manager.get_file_statistic_cache();
                let table = ListingTable::try_new(config)?.with_cache(statistics);
                let table = LakeTable::new(table, self.caches.blooms.clone());
                ctx.register_table(name.as_str(), Arc::new(table))
                    .map(|_| ())
            };
            registered
                .await
                .map_err(|e| Error::Internal(format!("registering {name}: {e}")))?;
        }
        for (name, schema) in [
            (EXPERIMENTS_TABLE, experiments_schema()),
            (RECORDINGS_TABLE, recordings_schema()),
        ] {
            let file = table_file(&self.lake, name);
            let registered = if file.is_file() {
                let url = file.display().to_string();
                ctx.register_parquet(name, url.as_str(), ParquetReadOptions::default())
                    .await
            } else {
                MemTable::try_new(schema, vec![vec![]])
                    .and_then(|t| ctx.register_table(name, Arc::new(t)).map(|_| ()))
            };
            registered.map_err(|e| Error::Internal(format!("registering {name}: {e}")))?;
        }
        register_alerts(&ctx, &self.lake).await?;
        Ok(ctx)
    }

    /// Runs `sql` and collects the whole result.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        let stream = self.query_stream(sql).await?;
        let schema = stream.schema();
        let batches = stream.try_collect().await?;
        Ok(QueryResult { schema, batches })
    }

    /// Runs `sql` under the limits and returns its batches as they are computed.
    #[tracing::instrument(skip_all)]
    pub async fn query_stream(&self, sql: &str) -> Result<QueryStream> {
        let permit = self.try_slot()?;
        let deadline = Instant::now() + self.config.timeout;
        let config = self.config;
        let (stream, first) = tokio::time::timeout_at(deadline, self.start(sql))
            .await
            .map_err(|_| timeout(&config))??;
        let schema = stream.schema();
        let tail = futures::stream::unfold(
            Some((stream, permit)),
            move |state: Option<(SendableRecordBatchStream, OwnedSemaphorePermit)>| async move {
                let (mut stream, permit) = state?;
                // A stream that always has a batch ready never lets a timer fire, so
                // the deadline is also checked between batches.
                if Instant::now() >= deadline {
                    return Some((Err(timeout(&config)), None));
                }
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Err(_) => Some((Err(timeout(&config)), None)),
                    Ok(None) => None,
                    Ok(Some(Ok(batch))) => Some((Ok(batch), Some((stream, permit)))),
                    Ok(Some(Err(e))) => Some((Err(classify(e, &config)), None)),
                }
            },
        );
        // `start` has polled once: put what it got in front of the rest.
        let head = futures::stream::iter(first.map(Ok));
        Ok(QueryStream {
            schema,
            batches: head.chain(tail).boxed(),
        })
    }

    /// Parses, checks, plans and starts `sql`, and computes its first batch.
    async fn start(&self, sql: &str) -> Result<(SendableRecordBatchStream, Option<RecordBatch>)> {
        let config = self.config;
        let df_err = move |e: DataFusionError| classify(e, &config);
        let ctx = self.session().await?;
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect).map_err(df_err)?;
        sandbox::check_statement(&statement)?;
        let plan = state.statement_to_plan(statement).await.map_err(df_err)?;
        sandbox::check_plan(&plan)?;
        let df = ctx.execute_logical_plan(plan).await.map_err(df_err)?;
        let mut stream = df.execute_stream().await.map_err(df_err)?;
        let first = stream.next().await.transpose().map_err(df_err)?;
        Ok((stream, first))
    }
}

fn timeout(config: &QueryConfig) -> Error {
    Error::Timeout {
        limit: humantime::format_duration(config.timeout).to_string(),
    }
}

/// A query over its memory pool is the query's doing (narrow it), not an internal error.
fn classify(e: DataFusionError, config: &QueryConfig) -> Error {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(detail) => {
            tracing::info!(%detail, "query over its memory limit");
            Error::MemoryLimit {
                limit: human_bytes(config.max_memory_bytes),
            }
        }
        _ => Error::from_datafusion(e),
    }
}

/// `(samples_<type>, directory)` for each sensor type folder holding at least one file.
pub(crate) fn sample_tables(lake: &Path) -> Result<Vec<(String, PathBuf)>> {
    let root = lake.join("samples");
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Internal(format!("listing {}: {e}", root.display()))),
    };
    let mut tables = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() && holds_parquet(&path) {
            tables.push((format!("samples_{name}"), path));
        }
    }
    tables.sort();
    Ok(tables)
}

fn holds_parquet(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            holds_parquet(&p)
        } else {
            p.extension().is_some_and(|x| x == "parquet")
        }
    })
}

/// The `alerts` table: the alerts lake writer's files, or no rows (with the columns)
/// before it wrote any.
async fn register_alerts(ctx: &SessionContext, lake: &Path) -> Result<()> {
    let dir = lake.join(ALERTS_DIR);
    // Temporary files start with '.', and hold no row yet.
    let has_files = holds_parquet(&dir);
    let registered = if has_files {
        let options = ParquetReadOptions::default()
            .table_partition_cols(vec![("date".to_owned(), DataType::Date32)]);
        let url = format!("{}/", dir.display());
        ctx.register_parquet(ALERTS_TABLE, url.as_str(), options)
            .await
    } else {
        let mut fields: Vec<arrow::datatypes::Field> = alerts_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(arrow::datatypes::Field::new(
            "date",
            DataType::Date32,
            false,
        ));
        let schema = Arc::new(arrow::datatypes::Schema::new(fields));
        MemTable::try_new(schema, vec![vec![]])
            .and_then(|t| ctx.register_table(ALERTS_TABLE, Arc::new(t)).map(|_| ()))
    };
    registered.map_err(|e| Error::Internal(format!("registering {ALERTS_TABLE}: {e}")))
}

#[cfg(test)]
mod tests;
