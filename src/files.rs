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

/// Write `bytes` to `path` atomically (temporary file, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Write `path` atomically with `write`: the bytes go to a temporary file in the same
/// directory, which replaces `path` only once `write` succeeded and the data is on
/// disk. A failure at any point leaves the previous file as it was and no temporary.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    if !WRITES_FILES.load(Ordering::Relaxed) {
        return Ok(());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        write(&mut file)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::write(path, e)
    })
}

/// Create `dir` (and parents) and check that files can be written into it.
pub fn ensure_writable_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
    let probe = dir.join(format!(".twa-write-test-{}", std::process::id()));
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
