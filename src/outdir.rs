//! A command's output directory, held for as long as the command writes into it:
//! created if needed, locked so that a second run on the same directory is refused
//! (naming the first), cleared of the temporaries a killed run left behind, and
//! removed again when the command ends having written nothing into it.

use crate::error::{Error, Result};
use crate::files::{ensure_writable_dir, is_temporary, writes_files};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside an output directory.
pub const LOCK: &str = ".twa.lock";

/// An output directory this process holds (see the module docs); dropping it lets go.
#[derive(Debug)]
pub struct OutputDir {
    path: PathBuf,
    /// The locked file; `None` in a process that writes no files (ranks after 0).
    lock: Option<File>,
    /// Whether this process created the directory.
    created: bool,
}

impl OutputDir {
    /// Take `path` for this command: create it (and its parents), lock it, and remove
    /// the temporaries of earlier killed runs. Fails with one line if another process
    /// holds it, or if it cannot be written.
    pub fn claim(path: &Path) -> Result<OutputDir> {
        if !writes_files() {
            return Ok(OutputDir {
                path: path.to_path_buf(),
                lock: None,
                created: false,
            });
        }
        if path.exists() && !path.is_dir() {
            return Err(Error::write(path, "it exists and is not a directory"));
        }
        let created = !path.exists();
        ensure_writable_dir(path)?;
        let mut held = OutputDir {
            path: path.to_path_buf(),
            lock: None,
            created,
        };
        held.lock = Some(lock(path)?);
        held.remove_temporaries();
        Ok(held)
    }

    /// Remove what a killed writer left: temporaries of [`crate::files`]. Only the
    /// holder of the lock calls this, so no live writer's temporary is touched.
    fn remove_temporaries(&self) {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if is_temporary(&name.to_string_lossy()) && entry.file_type().is_ok_and(|t| t.is_file())
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Whether the directory holds nothing but the lock file.
    fn holds_nothing(&self) -> bool {
        std::fs::read_dir(&self.path)
            .is_ok_and(|mut entries| entries.all(|e| e.is_ok_and(|e| e.file_name() == LOCK)))
    }
}

impl Drop for OutputDir {
    /// The lock file goes (removed while still locked: a process that opened it
    /// meanwhile finds it gone and takes a new one, see [`lock`]), and a directory
    /// this process created and wrote nothing into goes too, so a refused command
    /// leaves no empty `--out` behind.
    fn drop(&mut self) {
        if self.lock.is_none() {
            return;
        }
        let _ = std::fs::remove_file(self.path.join(LOCK));
        if self.created && self.holds_nothing() {
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// Lock `dir`'s lock file for this process (released when the process ends, however
/// it ends: a killed run's file stays behind unlocked) and write into it who holds
/// it. A file its holder removed between our opening and locking it is not the lock
/// any more: then the new one is taken.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::write(&path, e))?;
        if let Some(file) = try_lock(dir, &path, file)? {
            return Ok(file);
        }
    }
}

/// Lock `file`, opened at `path`; `None` if `path` no longer names it.
fn try_lock(dir: &Path, path: &Path, mut file: File) -> Result<Option<File>> {
    match file.try_lock() {
        Ok(()) if !names(path, &file) => return Ok(None),
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                "another process".to_string()
            } else {
                holder.to_string()
            };
            return Err(Error::Config(format!(
                "{} is in use by {holder}; wait for it to end or choose another --out",
                dir.display()
            )));
        }
        Err(TryLockError::Error(e)) => return Err(Error::write(path, e)),
    }
    let me = format!(
        "process {} ({})\n",
        std::process::id(),
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    let written = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(me.as_bytes()));
    written.map_err(|e| Error::write(path, e))?;
    Ok(Some(file))
}

/// Whether `path` names the open `file` (the same inode on Unix; elsewhere a locked
/// file cannot be removed, so it does).
fn names(path: &Path, file: &File) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(path), file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, file);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("twa-outdir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_second_claim_is_refused_while_the_first_holds_the_directory() {
        let dir = scratch("lock");
        let first = OutputDir::claim(&dir).unwrap();
        std::fs::write(dir.join("metrics.jsonl"), b"{}\n").unwrap();
        let err = OutputDir::claim(&dir).unwrap_err().to_string();
        assert!(
            err.contains("is in use by process") && err.contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        let again = OutputDir::claim(&dir).unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_claim_removes_temporaries_and_an_unused_new_directory_goes_again() {
        let dir = scratch("tidy");
        std::fs::create_dir_all(&dir).unwrap();
        for name in [".checkpoint.safetensors.tmp-12345", ".twa-write-test.tmp-9"] {
            std::fs::write(dir.join(name), b"half").unwrap();
        }
        std::fs::write(dir.join("model.safetensors"), b"kept").unwrap();
        std::fs::write(dir.join(".notes.tmp-mine"), b"kept").unwrap();
        let held = OutputDir::claim(&dir).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".notes.tmp-mine", LOCK, "model.safetensors"]);
        drop(held);
        assert!(
            dir.join("model.safetensors").exists(),
            "a used directory stays"
        );
        assert!(!dir.join(LOCK).exists(), "the lock goes with its holder");
        std::fs::remove_dir_all(&dir).unwrap();

        let fresh = scratch("fresh").join("nested");
        drop(OutputDir::claim(&fresh).unwrap());
        assert!(
            !fresh.exists(),
            "a directory created and left empty is removed"
        );
        let _ = std::fs::remove_dir_all(fresh.parent().unwrap());
    }
}
