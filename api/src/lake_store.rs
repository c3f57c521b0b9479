//! The lake as queries see it: the local file system, read-only, listing only live lake
//! files (`part-*.parquet` that no compaction output supersedes, per
//! `labstream_schemas::lake_layout::live_files`). A query lists each directory once, so
//! racing a compaction it reads either the inputs or the output, never both, and never
//! a temporary file; the compactor deletes inputs only after a grace period, so files
//! listed a moment ago can still be read.

use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;
use datafusion::object_store::{
    Attributes, CopyOptions, Error, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result,
};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use labstream_schemas::lake_layout::live_files;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::os::unix::fs::FileExt;

// `ObjectStore` is an `#[async_trait]` trait and this crate does not depend on
// `async-trait`, so the async methods below are written as the macro expands them:
// explicit lifetimes and a boxed future.

#[derive(Debug, Default)]
pub(crate) struct LakeStore {
    local: LocalFileSystem,
}

impl LakeStore {
    pub(crate) fn new() -> Self {
        Self::default()
    }
}

impl fmt::Display for LakeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LakeStore(live lake files, read-only, over {})",
            self.local
        )
    }
}

/// Keeps the live lake files of each directory among `objects`.
fn only_live(objects: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
    let mut by_dir: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in &objects {
        let (dir, name) = o
            .location
            .as_ref()
            .rsplit_once('/')
            .unwrap_or(("", o.location.as_ref()));
        by_dir
            .entry(dir.to_owned())
            .or_default()
            .push(name.to_owned());
    }
    let live: HashSet<String> = by_dir
        .into_iter()
        .flat_map(|(dir, names)| {
            live_files(names)
                .0
                .into_iter()
                .map(move |name| format!("{dir}/{name}"))
        })
        .collect();
    objects
        .into_iter()
        .filter(|o| {
            let path = o.location.as_ref();
            let key = if path.contains('/') {
                path.to_owned()
            } else {
                format!("/{path}")
            };
            live.contains(&key)
        })
        .collect()
}

/// The byte range of a read that asks for nothing else (no condition, version or
/// head-only answer): how the Parquet reader asks for a footer, a bloom filter or a
/// column chunk.
fn plain_range(options: &GetOptions) -> Option<GetRange> {
    let GetOptions {
        if_match: None,
        if_none_match: None,
        if_modified_since: None,
        if_unmodified_since: None,
        range: Some(range),
        version: None,
        head: false,
        extensions: _,
    } = options
    else {
        return None;
    };
    Some(range.clone())
}

/// Reads `range` of the file at `path` on one blocking-pool thread: open, stat, read.
/// `LocalFileSystem` opens on one and hands the open file to `GetResult::bytes`, which
/// reads on another; a query over thousands of small lake files makes several reads
/// of each (footer, bloom filters, column chunks), and each hop is a thread wake-up.
async fn read_range(
    location: Path,
    path: std::path::PathBuf,
    range: GetRange,
) -> Result<GetResult> {
    let read = tokio::task::spawn_blocking(move || -> Result<GetResult> {
        let generic = |e: &dyn fmt::Display| Error::Generic {
            store: "LakeStore",
            source: format!("{}: {e}", path.display()).into(),
        };
        let file = std::fs::File::open(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                path: path.display().to_string(),
                source: source.into(),
            },
            _ => generic(&source),
        })?;
        let metadata = file.metadata().map_err(|e| generic(&e))?;
        let size = metadata.len();
        let range = range.as_range(size).map_err(|e| generic(&e))?;
        let mut bytes = vec![0_u8; (range.end - range.start) as usize];
        file.read_exact_at(&mut bytes, range.start)
            .map_err(|e| generic(&e))?;
        let meta = ObjectMeta {
            location,
            last_modified: metadata.modified().map_err(|e| generic(&e))?.into(),
            size,
            e_tag: None,
            version: None,
        };
        let bytes = bytes::Bytes::from(bytes);
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed()),
            attributes: Attributes::default(),
            range,
            meta,
        })
    });
    read.await.map_err(|e| Error::Generic {
        store: "LakeStore",
        source: e.into(),
    })?
}

fn read_only(operation: &str) -> Error {
    Error::NotSupported {
        source: format!("the lake is read-only for queries ({operation})").into(),
    }
}

impl ObjectStore for LakeStore {
    fn put_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        _location: &'life1 Path,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> BoxFuture<'async_trait, Result<PutResult>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async { Err(read_only("put")) })
    }

    fn put_multipart_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        _location: &'life1 Path,
        _opts: PutMultipartOptions,
    ) -> BoxFuture<'async_trait, Result<Box<dyn MultipartUpload>>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async { Err(read_only("put")) })
    }

    fn get_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        options: GetOptions,
    ) -> BoxFuture<'async_trait, Result<GetResult>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        match plain_range(&options) {
            Some(range) => match self.local.path_to_filesystem(location) {
                Ok(path) => Box::pin(read_range(location.clone(), path, range)),
                Err(e) => Box::pin(async { Err(e) }),
            },
            None => self.local.get_opts(location, options),
        }
    }

    // Delegated so that a file is opened once for all the ranges a scan reads
    // (`axum::body::Bytes` is `bytes::Bytes`).
    fn get_ranges<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        ranges: &'life2 [Range<u64>],
    ) -> BoxFuture<'async_trait, Result<Vec<axum::body::Bytes>>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.local.get_ranges(location, ranges)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        locations.map(|_| Err(read_only("delete"))).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        // Whole directories must be seen before deciding which of their files are live.
        let all = self.local.list(prefix);
        futures::stream::once(async move { all.try_collect::<Vec<_>>().await })
            .map_ok(|objects| futures::stream::iter(only_live(objects).into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    fn list_with_delimiter<'life0, 'life1, 'async_trait>(
        &'life0 self,
        prefix: Option<&'life1 Path>,
    ) -> BoxFuture<'async_trait, Result<ListResult>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let listed = self.local.list_with_delimiter(prefix).await?;
            Ok(ListResult {
                common_prefixes: listed.common_prefixes,
                objects: only_live(listed.objects),
            })
        })
    }

    fn copy_opts<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        _from: &'life1 Path,
        _to: &'life2 Path,
        _options: CopyOptions,
    ) -> BoxFuture<'async_trait, Result<()>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async { Err(read_only("copy")) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::object_store::ObjectStoreExt;

    fn touch(dir: &std::path::Path, name: &str) {
        std::fs::write(dir.join(name), b"PAR1").unwrap();
    }

    fn part(first: i64, last: i64) -> String {
        format!("part-t-p0-{first:020}-{last:020}.parquet")
    }

    #[tokio::test]
    async fn lists_only_live_lake_files() {
        let root = tempfile::tempdir().unwrap();
        let a = root
            .path()
            .join("samples/door/date=2026-11-23/experiment=none");
        let b = root
            .path()
            .join("samples/door/date=2026-11-24/experiment=none");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        for name in [part(0, 9), part(10, 19), part(0, 19), part(20, 29)] {
            touch(&a, &name);
        }
        touch(&a, &format!(".{}.compact.tmp", part(0, 29)));
        touch(&a, "notes.txt");
        // The same names in another directory are another file set.
        touch(&b, &part(0, 9));
        touch(&b, &part(10, 19));

        let store = LakeStore::new();
        let prefix = Path::from_filesystem_path(root.path().join("samples")).unwrap();
        let mut listed: Vec<String> = store
            .list(Some(&prefix))
            .map_ok(|o| {
                o.location
                    .as_ref()
                    .rsplit_once("samples/")
                    .unwrap()
                    .1
                    .to_owned()
            })
            .try_collect()
            .await
            .unwrap();
        listed.sort();
        assert_eq!(
            listed,
            [
                format!("door/date=2026-11-23/experiment=none/{}", part(0, 19)),
                format!("door/date=2026-11-23/experiment=none/{}", part(20, 29)),
                format!("door/date=2026-11-24/experiment=none/{}", part(0, 9)),
                format!("door/date=2026-11-24/experiment=none/{}", part(10, 19)),
            ]
        );

        let dir = Path::from_filesystem_path(&a).unwrap();
        let listed = store.list_with_delimiter(Some(&dir)).await.unwrap();
        let mut names: Vec<&str> = listed
            .objects
            .iter()
            .map(|o| o.location.filename().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [part(0, 19), part(20, 29)]);

        // Reads go through; writes are refused.
        let file = Path::from_filesystem_path(a.join(part(0, 9))).unwrap();
        assert_eq!(
            &store.get(&file).await.unwrap().bytes().await.unwrap()[..],
            b"PAR1"
        );
        assert!(
            store
                .put(&file, PutPayload::from_static(b"x"))
                .await
                .is_err()
        );
        assert!(store.delete(&file).await.is_err());
        assert!(a.join(part(0, 9)).exists());
    }

    #[tokio::test]
    async fn ranged_reads_give_the_bytes_of_the_range_as_the_local_store_does() {
        let root = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..=255).cycle().take(10_000).collect();
        std::fs::write(root.path().join("f.parquet"), &content).unwrap();
        let file = Path::from_filesystem_path(root.path().join("f.parquet")).unwrap();
        let store = LakeStore::new();
        let local = LocalFileSystem::new();

        for range in [0..4, 9_996..10_000, 1_234..5_678, 0..10_000, 9_000..20_000] {
            let got = store.get_range(&file, range.clone()).await.unwrap();
            let end = (range.end as usize).min(content.len());
            assert_eq!(&got[..], &content[range.start as usize..end], "{range:?}");
            assert_eq!(got, local.get_range(&file, range.clone()).await.unwrap());
            let result = store
                .get_opts(&file, GetOptions::new().with_range(Some(range.clone())))
                .await
                .unwrap();
            assert_eq!(result.range, range.start..end as u64);
            assert_eq!(result.meta.size, 10_000);
            assert_eq!(result.meta.location, file);
        }
        let many = store.get_ranges(&file, &[0..2, 100..103]).await.unwrap();
        assert_eq!(&many[1][..], &content[100..103]);

        // Past the end, empty or missing: errors, as from the local store.
        assert!(store.get_range(&file, 10_000..10_004).await.is_err());
        assert!(store.get_range(&file, 7..7).await.is_err());
        std::fs::write(root.path().join("gone.parquet"), b"PAR1").unwrap();
        let missing = Path::from_filesystem_path(root.path().join("gone.parquet")).unwrap();
        std::fs::remove_file(root.path().join("gone.parquet")).unwrap();
        assert!(matches!(
            store.get_range(&missing, 0..4).await,
            Err(Error::NotFound { .. })
        ));
        // A conditional read still goes to the local store and its checks.
        let stale = GetOptions {
            if_match: Some("not-the-etag".to_owned()),
            range: Some(GetRange::Bounded(0..4)),
            ..GetOptions::default()
        };
        assert!(store.get_opts(&file, stale).await.is_err());
    }
}
