//! Compiled code kept on disk between processes, so a node is compiled once per host rather than
//! once per process (`warden run` would otherwise recompile on every call; a large component
//! takes tens of seconds).
//!
//! Loading compiled code is `unsafe`: Wasmtime maps it and runs it as it is, so bytes anyone
//! else could have written must never be loaded. Every entry is therefore authenticated with an
//! HMAC-SHA256 whose key only this host holds: a file of 32 random bytes, mode 0600, in the
//! cache directory (mode 0700), created on first use. The directory and the key must belong to
//! the user the host runs as and be closed to everyone else: otherwise whoever owns them (or can
//! write the directory) could have planted a key and entries made with it, and a host running as
//! root would run their code. An existing directory is never chmodded into shape: it is refused. The tag covers the entry's name, which is
//! derived from the component's SHA-256 and the engine's configuration and version, and the
//! compiled bytes, so an entry can neither be forged nor moved to another component or engine.
//! An entry whose tag does not verify, or that Wasmtime refuses, is deleted and the component is
//! compiled again; the cache never makes a run fail.

use ring::hmac;
use std::fs::{self, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use subtle::ConstantTimeEq;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The key file's name inside the cache directory.
pub const KEY_FILE: &str = "cache.key";
/// Bytes of the HMAC key.
const KEY_BYTES: usize = 32;
/// Bytes of the tag in front of each entry.
const TAG_BYTES: usize = 32;
/// The largest entry read back: compiled code of an 18 MB component is far below this, and a
/// file planted to be huge is not read into memory.
pub const MAX_ENTRY_BYTES: u64 = 1024 * 1024 * 1024;

/// Why the cache cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CodeCacheError {
    #[error("cannot use the code cache directory {path}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read or create the code cache key {path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the code cache key {path} can be read by other users (mode {mode:o}); compiled code \
         authenticated with it could be forged. Delete the cache directory, or `chmod 600` the key \
         if no one else could have read it"
    )]
    KeyExposed { path: PathBuf, mode: u32 },
    #[error(
        "the code cache key {path} is {bytes} bytes, not {KEY_BYTES}; delete the cache directory \
         and it is created again"
    )]
    KeyCorrupt { path: PathBuf, bytes: usize },
    #[error("no random bytes for the code cache key: the system's random source failed")]
    Random,
    #[error(
        "the code cache {what} {path} is not private to this user (owner uid {owner}, mode \
         {mode:o}; it must be owned by uid {user} with no access for group or others): another \
         user could have planted compiled code. Use a directory of your own"
    )]
    NotPrivate {
        what: &'static str,
        path: PathBuf,
        owner: u32,
        mode: u32,
        user: u32,
    },
}

/// What happened to lookups since the cache was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodeCacheStats {
    /// Entries loaded instead of compiling.
    pub hits: u64,
    /// Lookups that found no entry (the component was compiled and stored).
    pub misses: u64,
    /// Entries thrown away: a tag that did not verify, or code Wasmtime refused.
    pub rejected: u64,
    /// Entries written.
    pub stored: u64,
}

/// A directory of authenticated compiled components.
pub struct CodeCache {
    dir: PathBuf,
    key: hmac::Key,
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
    stored: AtomicU64,
}

impl std::fmt::Debug for CodeCache {
    /// Everything but the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeCache")
            .field("dir", &self.dir)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl CodeCache {
    /// Opens the cache in `dir`, creating the directory (mode 0700) and its key (mode 0600) when
    /// missing. A key other users can read is refused: whoever reads it can forge entries.
    pub fn open(dir: &Path) -> Result<CodeCache, CodeCacheError> {
        let directory = |source| CodeCacheError::Directory {
            path: dir.to_path_buf(),
            source,
        };
        if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(directory)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(directory(error)),
        }
        // The directory itself, not what a symlink in its place points to.
        let metadata = fs::symlink_metadata(dir).map_err(directory)?;
        if !metadata.is_dir() {
            return Err(directory(std::io::Error::other("it is not a directory")));
        }
        check_private("directory", dir, &metadata)?;
        let key = read_or_create_key(&dir.join(KEY_FILE))?;
        Ok(CodeCache {
            dir: dir.to_path_buf(),
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            stored: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> CodeCacheStats {
        CodeCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
        }
    }

    /// The entry's file: named by the component's SHA-256, the engine's configuration and the
    /// Wasmtime version, so another engine never even looks at it.
    pub fn entry_path(&self, engine: &Engine, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{}.cwasm", entry_name(engine, sha256)))
    }

    /// The compiled component, if a verified entry is there. Anything else (no entry, a tag that
    /// does not verify, code Wasmtime refuses) is `None`; a bad entry is deleted first, and
    /// `warn` is told why.
    pub fn load(&self, engine: &Engine, sha256: &str, warn: &dyn Fn(&str)) -> Option<Component> {
        let name = entry_name(engine, sha256);
        let path = self.dir.join(format!("{name}.cwasm"));
        let bytes = match read_entry(&path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Err(EntryError::Bad(why)) => return self.reject(&path, &why, warn),
            // Out of descriptors, say: the entry may be good, so it stays.
            Err(EntryError::Unreadable(why)) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                warn(&format!(
                    "compiled code {} was not loaded: {why}; the node is compiled again",
                    path.display()
                ));
                return None;
            }
        };
        if bytes.len() < TAG_BYTES {
            return self.reject(&path, "it is shorter than its tag", warn);
        }
        let (tag, code) = bytes.split_at(TAG_BYTES);
        if !bool::from(tag_of(&self.key, &name, code).as_ref().ct_eq(tag)) {
            return self.reject(
                &path,
                "its tag does not verify: it was not written by this host",
                warn,
            );
        }
        // SAFETY: the bytes are exactly what `Component::serialize` gave this host for this
        // component and engine: the tag over them verifies under a key only this host holds.
        match unsafe { Component::deserialize(engine, code) } {
            Ok(component) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(component)
            }
            Err(error) => self.reject(&path, &format!("Wasmtime refused it: {error}"), warn),
        }
    }

    /// Writes the entry for `component`: to a temporary file first, renamed into place, so a
    /// reader never sees half an entry. A failure is only a warning: the run goes on.
    pub fn store(&self, engine: &Engine, sha256: &str, component: &Component, warn: &dyn Fn(&str)) {
        let name = entry_name(engine, sha256);
        let path = self.dir.join(format!("{name}.cwasm"));
        let written = component
            .serialize()
            .map_err(|error| error.to_string())
            .and_then(|code| {
                if code.len() as u64 + TAG_BYTES as u64 > MAX_ENTRY_BYTES {
                    return Err(format!(
                        "the compiled code is {} bytes, more than the cache keeps",
                        code.len()
                    ));
                }
                let tag = tag_of(&self.key, &name, &code);
                let mut file = tempfile::Builder::new()
                    .prefix(".entry-")
                    .permissions(fs::Permissions::from_mode(0o600))
                    .tempfile_in(&self.dir)
                    .map_err(|error| error.to_string())?;
                file.write_all(tag.as_ref())
                    .and_then(|()| file.write_all(&code))
                    .map_err(|error| error.to_string())?;
                file.persist(&path).map_err(|error| error.to_string())?;
                Ok(())
            });
        match written {
            Ok(()) => {
                self.stored.fetch_add(1, Ordering::Relaxed);
            }
            Err(why) => warn(&format!(
                "cannot write compiled code to {}: {why}; the node runs, compiled again next time",
                path.display()
            )),
        }
    }

    fn reject(&self, path: &Path, why: &str, warn: &dyn Fn(&str)) -> Option<Component> {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let removed = match fs::remove_file(path) {
            Ok(()) => "deleted".to_string(),
            Err(error) => format!("could not be deleted ({error})"),
        };
        warn(&format!(
            "compiled code {} was not loaded: {why}; it {removed}, and the node is compiled again",
            path.display()
        ));
        None
    }
}

/// The entry's name: SHA-256 over the component's SHA-256 and the engine's compatibility hash
/// (which covers Wasmtime's version and every setting that changes compiled code).
fn entry_name(engine: &Engine, sha256: &str) -> String {
    use sha2::{Digest, Sha256};
    // DefaultHasher's keys are fixed, so this is the same in every process of one build; a
    // different build that hashes differently only misses the cache.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = Sha256::new()
        .chain_update(b"warden code cache v1\0")
        .chain_update(sha256.as_bytes())
        .chain_update(b"\0")
        .chain_update(hasher.finish().to_le_bytes())
        .finalize();
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What the tag covers: the entry's name, then the compiled bytes.
/// The HMAC of an entry: its name, a zero byte, its code. Computed in place: a Python node's
/// code is 50 MB, and copying it to sign it cost a warm start about a tenth of its time.
fn tag_of(key: &hmac::Key, name: &str, code: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    context.update(name.as_bytes());
    context.update(&[0]);
    context.update(code);
    context.sign()
}

/// Why an entry was not read: one that is not what this host writes (deleted), or one that
/// could not be read just now (kept).
enum EntryError {
    Bad(String),
    Unreadable(String),
}

/// The entry's bytes; `None` if there is none.
fn read_entry(path: &Path) -> Result<Option<Vec<u8>>, EntryError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(no_follow())
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) if error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(EntryError::Bad("it is a symbolic link".into()));
        }
        Err(error) => {
            return Err(EntryError::Unreadable(format!(
                "it cannot be opened: {error}"
            )));
        }
    };
    let metadata = file
        .metadata()
        .map_err(|error| EntryError::Unreadable(format!("it cannot be read: {error}")))?;
    if !metadata.is_file() {
        return Err(EntryError::Bad("it is not a regular file".into()));
    }
    let length = metadata.len();
    if length > MAX_ENTRY_BYTES {
        return Err(EntryError::Bad(format!(
            "it is {length} bytes, more than any entry this host writes"
        )));
    }
    let mut bytes = Vec::with_capacity(length as usize);
    file.take(MAX_ENTRY_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|error| EntryError::Unreadable(format!("it cannot be read: {error}")))?;
    Ok(Some(bytes))
}

/// Refuses what another user owns, or what group or others may access.
fn check_private(
    what: &'static str,
    path: &Path,
    metadata: &fs::Metadata,
) -> Result<(), CodeCacheError> {
    let user = rustix::process::geteuid().as_raw();
    let mode = metadata.mode() & 0o7777;
    if metadata.uid() != user || mode & 0o077 != 0 {
        return Err(CodeCacheError::NotPrivate {
            what,
            path: path.to_path_buf(),
            owner: metadata.uid(),
            mode,
            user,
        });
    }
    Ok(())
}

/// Reads the key, or creates it: 32 random bytes written to a private temporary file, synced,
/// then linked into place, so the key file is whole from the moment it exists and two processes
/// starting at once end up with the same key.
fn read_or_create_key(path: &Path) -> Result<[u8; KEY_BYTES], CodeCacheError> {
    let key_error = |source| CodeCacheError::Key {
        path: path.to_path_buf(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(_) => return read_key(path),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(key_error(error)),
    }
    let mut key = [0u8; KEY_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| CodeCacheError::Random)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut staged = tempfile::Builder::new()
        .prefix(".key-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(key_error)?;
    staged
        .write_all(&key)
        .and_then(|()| staged.as_file().sync_all())
        .map_err(key_error)?;
    match fs::hard_link(staged.path(), path) {
        Ok(()) => Ok(key),
        // Another process linked its key first: use that one.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => read_key(path),
        Err(error) => Err(key_error(error)),
    }
}

/// Reads an existing key: a regular file of this user's, mode 0600 or closer, 32 bytes.
fn read_key(path: &Path) -> Result<[u8; KEY_BYTES], CodeCacheError> {
    let key_error = |source| CodeCacheError::Key {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(no_follow())
        .open(path)
        .map_err(key_error)?;
    let metadata = file.metadata().map_err(key_error)?;
    if !metadata.is_file() {
        return Err(key_error(std::io::Error::other("it is not a regular file")));
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o077 != 0 && metadata.uid() == rustix::process::geteuid().as_raw() {
        return Err(CodeCacheError::KeyExposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    check_private("key", path, &metadata)?;
    let mut bytes = Vec::with_capacity(KEY_BYTES);
    Read::by_ref(&mut file)
        .take(KEY_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(key_error)?;
    <[u8; KEY_BYTES]>::try_from(bytes.as_slice()).map_err(|_| CodeCacheError::KeyCorrupt {
        path: path.to_path_buf(),
        bytes: bytes.len(),
    })
}

/// Open flags for files in the cache: never through a symlink, never blocking on a FIFO.
fn no_follow() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn component(engine: &Engine) -> Component {
        let wat = r#"(component (core module (func (export "f"))))"#;
        Component::new(engine, wat::parse_str(wat).unwrap()).unwrap()
    }

    fn quiet(_: &str) {}

    #[test]
    fn a_stored_entry_loads_and_a_tampered_one_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CodeCache::open(&dir.path().join("cache")).unwrap();
        let engine = Engine::default();
        assert!(cache.load(&engine, "abc", &quiet).is_none());
        cache.store(&engine, "abc", &component(&engine), &quiet);
        assert!(cache.load(&engine, "abc", &quiet).is_some());
        assert_eq!(
            cache.stats(),
            CodeCacheStats {
                hits: 1,
                misses: 1,
                rejected: 0,
                stored: 1
            }
        );

        // One bit of the code flipped: refused, deleted, reported.
        let path = cache.entry_path(&engine, "abc");
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let warnings = std::sync::Mutex::new(Vec::new());
        let warn = |message: &str| warnings.lock().unwrap().push(message.to_string());
        assert!(cache.load(&engine, "abc", &warn).is_none());
        assert!(!path.exists());
        assert_eq!(cache.stats().rejected, 1);
        assert!(warnings.lock().unwrap()[0].contains("does not verify"));
    }

    #[test]
    fn an_entry_cannot_move_to_another_component_or_host() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CodeCache::open(&dir.path().join("cache")).unwrap();
        let engine = Engine::default();
        cache.store(&engine, "one", &component(&engine), &quiet);
        // Copied under another component's name: the tag covers the name.
        fs::copy(
            cache.entry_path(&engine, "one"),
            cache.entry_path(&engine, "two"),
        )
        .unwrap();
        assert!(cache.load(&engine, "two", &quiet).is_none());
        // Written by another host (another key): refused too.
        let other = tempfile::tempdir().unwrap();
        let theirs = CodeCache::open(&other.path().join("cache")).unwrap();
        theirs.store(&engine, "one", &component(&engine), &quiet);
        fs::copy(
            theirs.entry_path(&engine, "one"),
            cache.entry_path(&engine, "one"),
        )
        .unwrap();
        assert!(cache.load(&engine, "one", &quiet).is_none());
        assert_eq!(cache.stats().rejected, 2);
    }

    #[test]
    fn the_key_is_private_and_kept() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("cache");
        let path = dir.join(KEY_FILE);
        CodeCache::open(&dir).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let key = fs::read(&path).unwrap();
        CodeCache::open(&dir).unwrap();
        assert_eq!(fs::read(&path).unwrap(), key, "a second open keeps the key");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = CodeCache::open(&dir).unwrap_err();
        assert!(
            matches!(error, CodeCacheError::KeyExposed { mode: 0o644, .. }),
            "{error}"
        );

        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, b"short").unwrap();
        assert!(matches!(
            CodeCache::open(&dir).unwrap_err(),
            CodeCacheError::KeyCorrupt { bytes: 5, .. }
        ));
    }

    #[test]
    fn a_huge_planted_entry_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CodeCache::open(&dir.path().join("cache")).unwrap();
        let engine = Engine::default();
        let path = cache.entry_path(&engine, "big");
        let file = File::create(&path).unwrap();
        file.set_len(MAX_ENTRY_BYTES + 1).unwrap();
        let warnings = std::sync::Mutex::new(Vec::new());
        let warn = |message: &str| warnings.lock().unwrap().push(message.to_string());
        assert!(cache.load(&engine, "big", &warn).is_none());
        assert!(!path.exists());
        assert!(warnings.lock().unwrap()[0].contains("more than any entry"));
    }

    #[test]
    fn a_symlink_or_a_fifo_in_place_of_an_entry_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CodeCache::open(&dir.path().join("cache")).unwrap();
        let engine = Engine::default();
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, b"not ours").unwrap();
        let path = cache.entry_path(&engine, "link");
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let warnings = std::sync::Mutex::new(Vec::new());
        let warn = |message: &str| warnings.lock().unwrap().push(message.to_string());
        assert!(cache.load(&engine, "link", &warn).is_none());
        assert!(fs::symlink_metadata(&path).is_err(), "the link is gone");
        assert!(elsewhere.exists(), "what it pointed to is untouched");
        assert!(warnings.lock().unwrap()[0].contains("symbolic link"));

        let fifo = cache.entry_path(&engine, "fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        // Opened without blocking, refused as not a regular file.
        assert!(cache.load(&engine, "fifo", &quiet).is_none());
        assert!(fs::symlink_metadata(&fifo).is_err());
    }

    #[test]
    fn a_directory_open_to_others_is_refused_not_repaired() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("shared");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let error = CodeCache::open(&dir).unwrap_err();
        assert!(
            matches!(
                error,
                CodeCacheError::NotPrivate {
                    what: "directory",
                    mode: 0o777,
                    ..
                }
            ),
            "{error}"
        );
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o777, "its mode is left as it was");
        // A symlink to a private directory is not a private directory.
        let private = parent.path().join("private");
        fs::DirBuilder::new().mode(0o700).create(&private).unwrap();
        let link = parent.path().join("link");
        std::os::unix::fs::symlink(&private, &link).unwrap();
        assert!(CodeCache::open(&link).is_err());
        assert!(CodeCache::open(&private).is_ok());
    }

    /// Run as root, the host must not trust a directory or key another user planted.
    #[test]
    fn a_directory_or_key_of_another_user_is_refused() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: only root can give files to another user");
            return;
        }
        let nobody = rustix::process::Uid::from_raw(65534);
        let parent = tempfile::tempdir().unwrap();
        let theirs = parent.path().join("theirs");
        fs::DirBuilder::new().mode(0o700).create(&theirs).unwrap();
        rustix::fs::chown(&theirs, Some(nobody), None).unwrap();
        assert!(matches!(
            CodeCache::open(&theirs).unwrap_err(),
            CodeCacheError::NotPrivate {
                what: "directory",
                owner: 65534,
                ..
            }
        ));
        let ours = parent.path().join("ours");
        CodeCache::open(&ours).unwrap();
        rustix::fs::chown(ours.join(KEY_FILE), Some(nobody), None).unwrap();
        assert!(matches!(
            CodeCache::open(&ours).unwrap_err(),
            CodeCacheError::NotPrivate {
                what: "key",
                owner: 65534,
                ..
            }
        ));
    }

    #[test]
    fn processes_starting_at_once_share_one_whole_key() {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("cache");
        let opened: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || CodeCache::open(&path).map(|_| ()))
            })
            .collect();
        for handle in opened {
            handle.join().unwrap().unwrap();
        }
        assert_eq!(fs::read(path.join(KEY_FILE)).unwrap().len(), KEY_BYTES);
        let leftovers: Vec<_> = fs::read_dir(&path)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .filter(|name| name != KEY_FILE)
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
