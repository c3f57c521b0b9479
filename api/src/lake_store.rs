//! The lake as queries see it: the local file system, read-only, listing only live lake
//! files (`part-*.parquet` that no compaction output supersedes, per
//! `labstream_lake::layout::live_files`). A query lists each directory once, so
//! racing a compaction it reads either the inputs or the output, never both, and never
//! a temporary file; the compactor deletes inputs only after a grace period, so files
//! listed a moment ago can still be read.
//!
//! What a folder holds is kept across queries (`FolderListings`) while the folder's
//! modification time stays what it was: adding, renaming or removing a file in a folder
//! changes it, so a query sees the live files of the moment with a `stat` per folder
//! instead of one per file.

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
use labstream_lake::layout::live_files;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

// `ObjectStore` is an `#[async_trait]` trait and this crate does not depend on
// `async-trait`, so the async methods below are written as the macro expands them:
// explicit lifetimes and a boxed future.

#[derive(Debug, Default)]
pub(crate) struct LakeStore {
    local: LocalFileSystem,
    listings: Arc<FolderListings>,
}

impl LakeStore {
    /// A store that keeps what it lists in `listings` (shared by an engine's queries).
    pub(crate) fn new(listings: Arc<FolderListings>) -> Self {
        Self {
            local: LocalFileSystem::new(),
            listings,
        }
    }
}

/// How old a folder's last change must be for its listing to be kept: folder times are
/// coarse (a clock tick), so a file renamed in right after a change that is still this
/// recent might leave the time as it was.
pub(crate) const SETTLED: Duration = Duration::from_secs(2);

/// The live lake files and subfolders of each folder listed, with the folder's
/// modification time when it was read; used again while that time is unchanged. Only
/// folders whose last change was `SETTLED` ago when read are kept. Lake files are
/// written under a temporary name and renamed in, never changed in place, so a folder's
/// time covers its files' sizes and times too. It takes about 200 bytes per live file
/// (8,064 files: under 2 MB), and forgets a folder once it is gone.
#[derive(Debug, Default)]
pub(crate) struct FolderListings {
    folders: Mutex<HashMap<PathBuf, Arc<Folder>>>,
}

/// One folder as listed.
#[derive(Debug)]
pub(crate) struct Folder {
    pub(crate) path: PathBuf,
    pub(crate) modified: SystemTime,
    /// Its live lake files (`only_live`).
    live: Vec<ObjectMeta>,
    subfolders: Vec<PathBuf>,
}

impl FolderListings {
    /// `dir` and every folder under it (none when `dir` is not a folder), each from
    /// memory when unchanged, else read again. Blocking.
    pub(crate) fn walk(&self, dir: &std::path::Path) -> std::io::Result<Vec<Arc<Folder>>> {
        let mut out = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(path) = pending.pop() {
            let modified = match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => meta.modified()?,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.folders.lock().unwrap().remove(&path);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let known = self
                .folders
                .lock()
                .unwrap()
                .get(&path)
                .filter(|f| f.modified == modified)
                .cloned();
            let folder = match known {
                Some(folder) => folder,
                None => {
                    let folder = Arc::new(read_folder(path, modified)?);
                    let settled = SystemTime::now()
                        .checked_sub(SETTLED)
                        .is_some_and(|before| modified < before);
                    if settled {
                        self.folders
                            .lock()
                            .unwrap()
                            .insert(folder.path.clone(), folder.clone());
                    }
                    folder
                }
            };
            pending.extend(folder.subfolders.iter().cloned());
            out.push(folder);
        }
        Ok(out)
    }
}

/// Reads a folder: its subfolders, and its files as `LocalFileSystem` lists them
/// (symbolic links followed, files gone meanwhile skipped), only the live ones kept.
fn read_folder(path: PathBuf, modified: SystemTime) -> std::io::Result<Folder> {
    let mut files = Vec::new();
    let mut subfolders = Vec::new();
    for entry in std::fs::read_dir(&path)? {
        let entry_path = entry?.path();
        let meta = match std::fs::metadata(&entry_path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            subfolders.push(entry_path);
        } else if meta.is_file()
            && let Ok(location) = Path::from_absolute_path(&entry_path)
        {
            files.push(object_meta(location, &meta)?);
        }
    }
    Ok(Folder {
        path,
        modified,
        live: only_live(files),
        subfolders,
    })
}

/// A file's `ObjectMeta` as `LocalFileSystem` makes it (its e-tag too).
fn object_meta(location: Path, meta: &std::fs::Metadata) -> std::io::Result<ObjectMeta> {
    let modified = meta.modified()?;
    let micros = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    Ok(ObjectMeta {
        location,
        last_modified: modified.into(),
        size: meta.len(),
        e_tag: Some(format!("{:x}-{micros:x}-{:x}", meta.ino(), meta.len())),
        version: None,
    })
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
        let generic = |e: &dyn fmt::Display| store_error(format!("{}: {e}", path.display()));
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
    read.await.map_err(store_error)?
}

/// An error of this store that is none of `object_store`'s kinds (I/O, a lost task).
fn store_error(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::Generic {
        store: "LakeStore",
        source: source.into(),
    }
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
        let dir = match prefix.map(|p| self.local.path_to_filesystem(p)) {
            Some(Ok(dir)) => dir,
            Some(Err(e)) => return futures::stream::once(async { Err(e) }).boxed(),
            // The whole file system: not a lake folder, nothing to keep.
            None => {
                let all = self.local.list(None);
                return futures::stream::once(async move { all.try_collect::<Vec<_>>().await })
                    .map_ok(|objects| futures::stream::iter(only_live(objects).into_iter().map(Ok)))
                    .try_flatten()
                    .boxed();
            }
        };
        let listings = self.listings.clone();
        let walked = tokio::task::spawn_blocking(move || listings.walk(&dir));
        futures::stream::once(async move {
            let folders = walked.await.map_err(store_error)?.map_err(store_error)?;
            let live: Vec<ObjectMeta> = folders
                .iter()
                .flat_map(|f| f.live.iter().cloned())
                .collect();
            Ok::<_, Error>(futures::stream::iter(live.into_iter().map(Ok)))
        })
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

        let store = LakeStore::default();
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

    /// The names `store` lists under `dir`, sorted.
    async fn listed_names(store: &LakeStore, dir: &std::path::Path) -> Vec<String> {
        // Not `from_filesystem_path`: that resolves the path, and fails once it is gone.
        let prefix = Path::from_absolute_path(dir).unwrap();
        let mut names: Vec<String> = store
            .list(Some(&prefix))
            .map_ok(|o| o.location.filename().unwrap().to_owned())
            .try_collect()
            .await
            .unwrap();
        names.sort();
        names
    }

    fn set_folder_time(dir: &std::path::Path, time: SystemTime) {
        std::fs::File::open(dir)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }

    /// A settled folder is listed from memory while its time is what it was; any file
    /// added, renamed or removed changes the time, and the next listing shows it.
    #[tokio::test]
    async fn a_settled_folder_is_listed_from_memory_until_it_changes() {
        let root = tempfile::tempdir().unwrap();
        let table = root.path().join("samples/door");
        let a = table.join("date=2026-11-23/experiment=none");
        std::fs::create_dir_all(&a).unwrap();
        touch(&a, &part(0, 9));
        touch(&a, &part(10, 19));
        let old = SystemTime::now() - Duration::from_secs(3600);
        for dir in [&a, &a.parent().unwrap().to_path_buf(), &table] {
            set_folder_time(dir, old);
        }
        let store = LakeStore::default();
        assert_eq!(
            listed_names(&store, &table).await,
            [part(0, 9), part(10, 19)]
        );

        // A file whose folder's time is then put back: the kept listing is what is used.
        touch(&a, &part(20, 29));
        set_folder_time(&a, old);
        assert_eq!(
            listed_names(&store, &table).await,
            [part(0, 9), part(10, 19)]
        );

        // A compaction output renamed in: the folder changed, its live files show.
        let tmp = format!(".{}.compact.tmp", part(0, 29));
        touch(&a, &tmp);
        std::fs::rename(a.join(&tmp), a.join(part(0, 29))).unwrap();
        assert_eq!(listed_names(&store, &table).await, [part(0, 29)]);

        // A folder changed a moment ago is not kept: a change within the same clock
        // tick might leave its time as it is.
        let recent = std::fs::metadata(&a).unwrap().modified().unwrap();
        touch(&a, &part(30, 39));
        set_folder_time(&a, recent);
        assert_eq!(
            listed_names(&store, &table).await,
            [part(0, 29), part(30, 39)]
        );

        // Removed folders are gone from the listing.
        std::fs::remove_dir_all(table.join("date=2026-11-23")).unwrap();
        assert!(listed_names(&store, &table).await.is_empty());
        assert!(listed_names(&store, &a).await.is_empty());
    }

    #[tokio::test]
    async fn ranged_reads_give_the_bytes_of_the_range_as_the_local_store_does() {
        let root = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..=255).cycle().take(10_000).collect();
        std::fs::write(root.path().join("f.parquet"), &content).unwrap();
        let file = Path::from_filesystem_path(root.path().join("f.parquet")).unwrap();
        let store = LakeStore::default();
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
