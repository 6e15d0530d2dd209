//! Image folders as torchvision's `ImageFolder` reads them: `DIR/train/CLASS/*` and
//! `DIR/val/` (or `DIR/test/`), the classes numbered in the sorted order of the
//! training split's folder names, the files of a class in sorted name order; decoded
//! as [`super::images`] says.

use super::dataset::Dataset;
use super::images::{decode_splits, Encoded, ImageOptions};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// File extensions read as images (lower case); other files are ignored, as
/// torchvision's `IMG_EXTENSIONS` filter does.
const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Whether `dir` looks like an image folder: a `train` directory holding directories.
pub fn is_image_folder(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("train"))
        .map(|mut entries| entries.any(|e| e.is_ok_and(|e| e.path().is_dir())))
        .unwrap_or(false)
}

/// The class folders of a split directory, sorted by name.
fn class_dirs(split: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = std::fs::read_dir(split).map_err(|e| Error::io(split, e.to_string()))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(split, e.to_string()))?.path();
        if path.is_dir() {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| Error::format(&path, "a class folder's name is not UTF-8"))?
                .to_string();
            dirs.push((name, path));
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// The image files of a class folder, sorted by name.
fn image_files(class: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(class).map_err(|e| Error::io(class, e.to_string()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(class, e.to_string()))?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_lowercase);
        if path.is_file() && ext.is_some_and(|e| EXTENSIONS.contains(&e.as_str())) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Every image file of a split with its class, classes numbered by `names`.
fn list_split(split: &Path, names: &[String]) -> Result<Vec<Encoded>> {
    let mut out = Vec::new();
    for (name, dir) in class_dirs(split)? {
        let Some(class) = names.iter().position(|n| *n == name) else {
            return Err(Error::format(
                &dir,
                format!(
                    "class folder `{name}` is not one of the training split's {} classes",
                    names.len()
                ),
            ));
        };
        let files = image_files(&dir)?;
        if files.is_empty() {
            return Err(Error::format(
                &dir,
                format!("class folder `{name}` holds no .jpg, .jpeg or .png file"),
            ));
        }
        out.extend(files.into_iter().map(|name| Encoded {
            name,
            bytes: None,
            label: class as u32,
        }));
    }
    if out.is_empty() {
        return Err(Error::format(split, "no class folders with images"));
    }
    Ok(out)
}

/// Read `dir/train` and `dir/val` (or `dir/test`); `classes` as stated by the user,
/// else the training split's class folders.
pub fn load_image_folder(
    dir: &Path,
    classes: Option<usize>,
    options: ImageOptions,
) -> Result<Dataset> {
    let train_dir = dir.join("train");
    if !train_dir.is_dir() {
        return Err(Error::io(
            &train_dir,
            "no training split (train/) in the image folder",
        ));
    }
    let test_dir = ["val", "test"]
        .iter()
        .map(|s| dir.join(s))
        .find(|p| p.is_dir())
        .ok_or_else(|| {
            Error::io(
                dir.join("val"),
                "no val/ or test/ split in the image folder",
            )
        })?;
    let names: Vec<String> = class_dirs(&train_dir)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let train = list_split(&train_dir, &names)?;
    let test = list_split(&test_dir, &names)?;
    let count = classes.unwrap_or(names.len());
    decode_splits(dir, (train, test), (train_dir, test_dir), count, options)
}
