//! Writing files users keep: always to a temporary name in the same directory, then
//! renamed, so a killed run never leaves a half-written file.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this process writes the files it is asked to (see [`leave_files_to_rank_0`]).
static WRITES_FILES: AtomicBool = AtomicBool::new(true);

/// In a job of several processes only rank 0 writes metrics, models and histories;
/// the other ranks call this once at start and their writes become no-ops.
pub fn leave_files_to_rank_0() {
    WRITES_FILES.store(false, Ordering::Relaxed);
}

/// Whether this process writes files (false on the ranks after 0 of a job).
pub fn writes_files() -> bool {
    WRITES_FILES.load(Ordering::Relaxed)
}

/// The temporary name `path` is written under by this process.
fn temporary_of(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}{TEMPORARY}{}", std::process::id()))
}

/// What the name of a temporary file holds between the target's name and the
/// writer's process id (see [`is_temporary`]).
const TEMPORARY: &str = ".tmp-";

/// Whether a directory entry named `name` is a temporary this module writes (or
/// wrote, in a process that was killed before it could rename or remove it).
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(TEMPORARY)
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Refuse to replace `path` unless it is absent or a regular file: renaming over a
/// device (`/dev/null`), a directory or a link would replace it, not write into it.
pub fn check_replaceable(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => Err(Error::write(
            path,
            "it exists and is not a regular file (a device, directory or link); choose another path",
        )),
        _ => Ok(()),
    }
}

/// Write `bytes` to `path` atomically (temporary file, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Write `path` atomically with `write`: the bytes go to a temporary file in the same
/// directory, which replaces `path` only once `write` succeeded and the data is on
/// disk, and the rename is made durable too (the directory synced), so a file this
/// returned for survives a crash. A failure at any point leaves the previous file as
/// it was and no temporary. A `path` that is not a regular file is refused.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    if !writes_files() {
        return Ok(());
    }
    check_replaceable(path)?;
    let tmp = temporary_of(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        write(&mut file)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_directory_of(path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::write(path, e)
    })
}

/// Make a rename in `path`'s directory durable (on Unix; elsewhere the rename is).
fn sync_directory_of(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Create `dir` (and parents) and check that files can be written into it.
pub fn ensure_writable_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
    let probe = temporary_of(&dir.join("twa-write-test"));
    std::fs::write(&probe, b"").map_err(|e| Error::write(dir, e))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_interrupted_half_way_leaves_the_previous_file() {
        let dir = std::env::temp_dir().join(format!("twa-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.safetensors");
        write_atomic(&path, b"previous contents").unwrap();
        let err = write_atomic_with(&path, |file| {
            file.write_all(b"half of the new")?;
            Err(std::io::Error::other("disk full (simulated)"))
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("disk full"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"previous contents");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("model.safetensors")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
