//! SQL over the lake. Each query gets a fresh DataFusion session with one table per
//! sensor type that has data (`samples_<type>`), partitioned by `date` and `experiment`.
//! Only queries are planned: DDL, DML and other statements are refused, and the only
//! tables are the lake's, so nothing outside it is readable. Files are listed through
//! `LakeStore`, which shows only live lake files: a query racing compaction reads every
//! row exactly once.

use crate::error::{Error, Result};
use crate::lake_store::LakeStore;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::options::ParquetReadOptions;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct QueryEngine {
    lake: PathBuf,
}

pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryEngine {
    pub fn new(lake: impl Into<PathBuf>) -> Self {
        Self { lake: lake.into() }
    }

    /// Names of the tables a query can use now.
    pub async fn tables(&self) -> Result<Vec<String>> {
        Ok(sample_tables(&self.lake)?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    async fn session(&self) -> Result<SessionContext> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(2);
        let ctx = SessionContext::new_with_config(config);
        // Every table is a local folder (`file://`): list it through the lake's view.
        ctx.register_object_store(
            ObjectStoreUrl::local_filesystem().as_ref(),
            Arc::new(LakeStore::new()),
        );
        for (name, dir) in sample_tables(&self.lake)? {
            let options = ParquetReadOptions::default().table_partition_cols(vec![
                ("date".to_owned(), DataType::Utf8),
                ("experiment".to_owned(), DataType::Utf8),
            ]);
            let url = format!("{}/", dir.display());
            ctx.register_parquet(name.as_str(), url.as_str(), options)
                .await
                .map_err(|e| Error::Internal(format!("registering {name}: {e}")))?;
        }
        Ok(ctx)
    }

    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        let ctx = self.session().await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx
            .sql_with_options(sql, options)
            .await
            .map_err(Error::from_datafusion)?;
        let schema = df.schema().inner().clone();
        let batches = df.collect().await.map_err(Error::from_datafusion)?;
        Ok(QueryResult { schema, batches })
    }
}

/// `(samples_<type>, directory)` for each sensor type folder holding at least one file.
fn sample_tables(lake: &Path) -> Result<Vec<(String, PathBuf)>> {
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
