//! A sample table of the lake: DataFusion's listing table, with the files a query's
//! filters rule out dropped while planning, before any is opened.
//!
//! DataFusion decides file by file, in each file's opener, whether a file can be skipped
//! (its min/max statistics) and which of its row groups to read (statistics, then bloom
//! filters read from the file). On a lake of thousands of small files that work per file
//! costs more than the scan: a recording's rows sit in a few dozen of an uncompacted
//! week's 8,064 files, yet every file of the experiment was opened to find out. Here the
//! query's filters are checked once against every listed file together: their min/max
//! statistics (already collected by the listing) and their bloom filters, which the
//! engine keeps across queries (`BloomFilterCache`), checked against each file's size and
//! modification time from the listing, as the footer cache does. A file is dropped only
//! when no row of it can match: bloom filters have no false negatives. What survives goes
//! to DataFusion unchanged, which still prunes row groups and pages inside each file.

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::{PrunableStatistics, PruningStatistics};
use datafusion::common::{Column, Constraints, DFSchema, ScalarValue, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::{ListingTable, PartitionedFile};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::cache::cache_manager::{
    CachedFileMetadataEntry, FileMetadata, FileMetadataCache,
};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectMeta, ObjectStore};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use futures::StreamExt;
use futures::future::BoxFuture;
use parquet::basic::Type as PhysicalType;
use parquet::bloom_filter::Sbbf;
use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

/// Bloom filters of lake files fetched at once when a query's files are not cached yet.
const FETCH_CONCURRENCY: usize = 32;

/// One sample table: `inner` lists, plans and reads; this drops what cannot match first.
#[derive(Debug)]
pub(crate) struct LakeTable {
    inner: ListingTable,
    blooms: BloomFilterCache,
}

impl LakeTable {
    pub(crate) fn new(inner: ListingTable, blooms: BloomFilterCache) -> Self {
        Self { inner, blooms }
    }

    /// `plan` (the listing table's scan) without the files `filters` rule out, or `None`
    /// when none is ruled out (or `plan` is not a plain file scan).
    async fn pruned(
        &self,
        state: &dyn Session,
        plan: &Arc<dyn ExecutionPlan>,
        filters: &[Expr],
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(exec) = plan.downcast_ref::<DataSourceExec>() else {
            return Ok(None);
        };
        let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() else {
            return Ok(None);
        };
        // Filters name the table's columns with the table (`samples_x.sensor_id`); the
        // schema here is the table's own, unqualified.
        let Some(filter) = conjunction(filters.iter().cloned().map(unnormalize_col)) else {
            return Ok(None);
        };
        // The table's schema: the files' columns, then the partition columns, as in
        // each listed file's statistics.
        let schema = self.inner.schema();
        let predicate =
            state.create_physical_expr(filter, &DFSchema::try_from(Arc::clone(&schema))?)?;
        let pruning = PruningPredicateBuilder::new()
            .with_file_schema(Arc::clone(&schema))
            .try_build(predicate)?;
        if pruning.always_true() {
            return Ok(None);
        }
        let files: Vec<&PartitionedFile> =
            config.file_groups.iter().flat_map(|g| g.iter()).collect();
        // Bloom filters answer "is one of these values in the column": only when the
        // filter pins a column to values (`=`, `IN`).
        let blooms = if pruning.literal_guarantees().is_empty() {
            Vec::new()
        } else {
            let store = state.runtime_env().object_store(&config.object_store_url)?;
            let footers = state.runtime_env().cache_manager.get_file_metadata_cache();
            self.blooms.of_files(&store, &footers, &files).await
        };
        let statistics = LakeFileStatistics {
            min_max: PrunableStatistics::new(
                files
                    .iter()
                    .map(|f| {
                        f.statistics
                            .clone()
                            .unwrap_or_else(|| Arc::new(Statistics::new_unknown(&schema)))
                    })
                    .collect(),
                Arc::clone(&schema),
            ),
            blooms,
        };
        let keep = pruning.prune(&statistics)?;
        let kept = keep.iter().filter(|k| **k).count();
        tracing::debug!(
            files = files.len(),
            kept,
            "lake files pruned while planning"
        );
        if kept == files.len() {
            return Ok(None);
        }
        // Group by group, so that a declared partitioning (one group per partition
        // value) still holds; a group may end up empty.
        let mut keep = keep.into_iter();
        let groups = config
            .file_groups
            .iter()
            .map(|group| {
                let files = group.iter().filter(|_| keep.next().unwrap_or(true));
                FileGroup::new(files.cloned().collect())
            })
            .collect();
        let pruned = FileScanConfigBuilder::from(config.clone())
            .with_file_groups(groups)
            .with_statistics(config.statistics().to_inexact())
            .build();
        Ok(Some(DataSourceExec::from_data_source(pruned)))
    }
}

impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }

    // `TableProvider` is an `#[async_trait]` trait; this crate does not depend on
    // `async-trait` (see `LakeStore`), so `scan` is written as the macro expands it.
    fn scan<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        state: &'life1 dyn Session,
        projection: Option<&'life2 Vec<usize>>,
        filters: &'life3 [Expr],
        limit: Option<usize>,
    ) -> BoxFuture<'async_trait, Result<Arc<dyn ExecutionPlan>>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let plan = self.inner.scan(state, projection, filters, limit).await?;
            if filters.is_empty() {
                return Ok(plan);
            }
            // Dropping files only saves work: when it cannot be worked out (a file's
            // bloom filters unreadable, say), every listed file is scanned, and a real
            // problem with a file shows there.
            match self.pruned(state, &plan, filters).await {
                Ok(Some(pruned)) => Ok(pruned),
                Ok(None) => Ok(plan),
                Err(e) => {
                    tracing::debug!(error = %e, "lake files not pruned while planning");
                    Ok(plan)
                }
            }
        })
    }
}

/// The bloom filters of lake files, shared by the queries of an engine, least recently
/// used first out past its budget. An entry is used only for the file of the size and
/// modification time it was read from (a lake file is never rewritten in place, but a
/// name can be deleted and written again).
#[derive(Clone, Debug)]
pub(crate) struct BloomFilterCache {
    cache: Arc<FileMetadataCache>,
}

impl BloomFilterCache {
    pub(crate) fn new(bytes: usize) -> Self {
        let cache: Arc<FileMetadataCache> = Arc::new(
            DefaultCache::<Path, CachedFileMetadataEntry>::new(bytes)
                .with_name("labstream lake bloom filters"),
        );
        Self { cache }
    }

    /// Each file's bloom filters (`None` where they could not be read), from the cache
    /// or read (with the footer from `footers`) and cached.
    async fn of_files(
        &self,
        store: &Arc<dyn ObjectStore>,
        footers: &Arc<FileMetadataCache>,
        files: &[&PartitionedFile],
    ) -> Vec<Option<Arc<FileBlooms>>> {
        // A budget of 0 turns caching, and with it the bloom filter check while planning,
        // off: reading every file's filters for each query costs what it saves.
        if self.cache.cache_limit() == 0 {
            return vec![None; files.len()];
        }
        let metas: Vec<ObjectMeta> = files.iter().map(|f| f.object_meta.clone()).collect();
        futures::stream::iter(metas)
            .map(|meta| async move {
                if let Some(cached) = self.cached(&meta) {
                    return Some(cached);
                }
                match FileBlooms::read(store, footers, &meta).await {
                    Ok(blooms) => {
                        let blooms = Arc::new(blooms);
                        self.cache.put(
                            &meta.location,
                            CachedFileMetadataEntry::new(meta.clone(), blooms.clone()),
                        );
                        Some(blooms)
                    }
                    Err(e) => {
                        tracing::debug!(file = %meta.location, error = %e, "bloom filters not read");
                        None
                    }
                }
            })
            .buffered(FETCH_CONCURRENCY)
            .collect()
            .await
    }

    fn cached(&self, meta: &ObjectMeta) -> Option<Arc<FileBlooms>> {
        let entry = self.cache.get(&meta.location)?;
        if !entry.is_valid_for(meta) {
            return None;
        }
        let blooms = Arc::clone(&entry.file_metadata);
        (blooms as Arc<dyn Any + Send + Sync>).downcast().ok()
    }
}

/// A file's bloom filters on its text columns: per column, one per row group (`None`
/// for a row group without one).
#[derive(Debug)]
struct FileBlooms {
    columns: HashMap<String, Vec<Option<Sbbf>>>,
    bytes: usize,
}

impl FileBlooms {
    /// Reads them: the footer (through the footer cache), then the filters' bytes in as
    /// few reads as the store makes of nearby ranges.
    async fn read(
        store: &Arc<dyn ObjectStore>,
        footers: &Arc<FileMetadataCache>,
        meta: &ObjectMeta,
    ) -> Result<Self> {
        let metadata = DFParquetMetadata::new(store.as_ref(), meta)
            .with_file_metadata_cache(Some(Arc::clone(footers)))
            .fetch_metadata()
            .await?;
        let schema = metadata.file_metadata().schema_descr();
        let mut wanted: Vec<(usize, usize, Range<u64>)> = Vec::new();
        for (row_group, chunks) in metadata.row_groups().iter().enumerate() {
            for (column, chunk) in chunks.columns().iter().enumerate() {
                let descr = schema.column(column);
                // Top-level text columns: their values hash as the bytes of the string.
                if descr.physical_type() != PhysicalType::BYTE_ARRAY
                    || descr.path().parts().len() != 1
                {
                    continue;
                }
                if let (Some(offset), Some(length)) =
                    (chunk.bloom_filter_offset(), chunk.bloom_filter_length())
                    && let (Ok(offset), Ok(length)) = (u64::try_from(offset), u64::try_from(length))
                {
                    wanted.push((column, row_group, offset..offset + length));
                }
            }
        }
        let ranges: Vec<Range<u64>> = wanted.iter().map(|(_, _, r)| r.clone()).collect();
        let bytes = store.get_ranges(&meta.location, &ranges).await?;
        let mut columns: HashMap<String, Vec<Option<Sbbf>>> = HashMap::new();
        let mut size = 0;
        for ((column, row_group, range), data) in wanted.into_iter().zip(bytes) {
            let filter = Sbbf::from_bytes(&data)?;
            size += usize::try_from(range.end - range.start).unwrap_or(usize::MAX);
            let per_row_group = columns
                .entry(schema.column(column).name().to_owned())
                .or_insert_with(|| (0..metadata.num_row_groups()).map(|_| None).collect());
            per_row_group[row_group] = Some(filter);
        }
        Ok(Self {
            columns,
            bytes: size,
        })
    }

    /// Whether no row group of the file can hold any of `values` in `column` (`false`
    /// when one may, or when a row group has no filter to tell).
    fn rules_out(&self, column: &str, values: &[&str]) -> bool {
        self.columns.get(column).is_some_and(|row_groups| {
            row_groups.iter().all(|filter| {
                filter
                    .as_ref()
                    .is_some_and(|f| values.iter().all(|v| !f.check(*v)))
            })
        })
    }
}

impl FileMetadata for FileBlooms {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn memory_size(&self) -> usize {
        self.bytes + std::mem::size_of::<Self>()
    }

    fn extra_info(&self) -> datafusion::common::HashMap<String, String> {
        let mut info = datafusion::common::HashMap::default();
        info.insert("columns".to_owned(), self.columns.len().to_string());
        info
    }
}

/// What the pruning predicate is evaluated against, one container per listed file:
/// min/max statistics from the listing, and whether the file's bloom filters rule out
/// the values a column is pinned to.
struct LakeFileStatistics {
    min_max: PrunableStatistics,
    blooms: Vec<Option<Arc<FileBlooms>>>,
}

impl PruningStatistics for LakeFileStatistics {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.min_max.min_values(column)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.min_max.max_values(column)
    }

    fn num_containers(&self) -> usize {
        self.min_max.num_containers()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        self.min_max.null_counts(column)
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        self.min_max.row_counts()
    }

    /// Per file: `false` when its bloom filters show that `column` holds none of
    /// `values`, null when it may (a bloom filter never says a value is there for sure).
    fn contained(&self, column: &Column, values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        if self.blooms.is_empty() {
            return None;
        }
        // Only text: the filters hold the bytes of each string; the bytes of other
        // types depend on the file's physical type.
        let values: Vec<&str> = values.iter().map(text).collect::<Option<_>>()?;
        let answers: BooleanArray = self
            .blooms
            .iter()
            .map(|file| {
                file.as_ref()
                    .is_some_and(|f| f.rules_out(&column.name, &values))
                    .then_some(false)
            })
            .collect();
        (answers.null_count() < answers.len()).then_some(answers)
    }
}

fn text(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s),
        ScalarValue::Dictionary(_, inner) => text(inner),
        _ => None,
    }
}
