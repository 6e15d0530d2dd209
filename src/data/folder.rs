//! Image folders as torchvision's `ImageFolder` reads them: `DIR/train/CLASS/*` and
//! `DIR/val/` (or `DIR/test/`), the classes numbered in the sorted order of the
//! training split's folder names, the files of a class in sorted name order. JPEG and
//! PNG files are decoded on every core; where every image is grayscale the data set
//! has one channel, else three (RGB). With a stated size an image is resized so that
//! its shorter side has that size (bilinear) and centre-cropped to a square, as
//! torchvision's `Resize` + `CenterCrop`; without one, every image must have the first
//! one's size.

use super::dataset::{Classes, Dataset, Split};
use super::Shape;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// File extensions read as images (lower case); other files are ignored, as
/// torchvision's `IMG_EXTENSIONS` filter does.
const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// The largest side an image is resized to.
pub const MAX_SIDE: usize = 4096;

/// How a folder is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FolderOptions {
    /// Resize (shorter side) and centre-crop every image to `size` × `size`.
    pub size: Option<usize>,
    /// Leave out images that cannot be decoded (each reported), instead of stopping at
    /// the first.
    pub skip_bad: bool,
}

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

/// The (file, class index) of every image of a split, classes numbered by `names`.
fn list_split(split: &Path, names: &[String]) -> Result<Vec<(PathBuf, u32)>> {
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
        out.extend(files.into_iter().map(|f| (f, class as u32)));
    }
    if out.is_empty() {
        return Err(Error::format(split, "no class folders with images"));
    }
    Ok(out)
}

/// One decoded image: its pixels (1 or 3 channels, row-major, channels last) and size.
struct Decoded {
    pixels: Vec<u8>,
    width: usize,
    height: usize,
    gray: bool,
}

fn decode(path: &Path, size: Option<usize>) -> Result<Decoded> {
    // The decoders' messages may span lines: one line here.
    let bad = |e: &dyn std::fmt::Display| {
        let reason = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Error::format(path, format!("not a readable image: {reason}"))
    };
    let image = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e.to_string()))?
        .with_guessed_format()
        .map_err(|e| bad(&e))?
        .decode()
        .map_err(|e| bad(&e))?;
    let image = match size {
        Some(s) => resize_and_crop(image, s as u32),
        None => image,
    };
    let gray = !image.color().has_color();
    let (width, height) = (image.width() as usize, image.height() as usize);
    let pixels = if gray {
        image.into_luma8().into_raw()
    } else {
        image.into_rgb8().into_raw()
    };
    Ok(Decoded {
        pixels,
        width,
        height,
        gray,
    })
}

/// torchvision's `Resize(size)` (shorter side to `size`, bilinear) then
/// `CenterCrop(size)`.
fn resize_and_crop(image: image::DynamicImage, size: u32) -> image::DynamicImage {
    let (w, h) = (image.width(), image.height());
    let scale = size as f64 / w.min(h) as f64;
    let (nw, nh) = if w <= h {
        (size, ((h as f64 * scale) as u32).max(size))
    } else {
        (((w as f64 * scale) as u32).max(size), size)
    };
    let resized = if (nw, nh) == (w, h) {
        image
    } else {
        image.resize_exact(nw, nh, image::imageops::FilterType::Triangle)
    };
    let (left, top) = ((nw - size) / 2, (nh - size) / 2);
    resized.crop_imm(left, top, size, size)
}

/// Decode `files` on every core, in order; an unreadable file stops the load unless
/// `skip_bad` (then it is left out and listed).
fn decode_all(
    files: &[(PathBuf, u32)],
    options: FolderOptions,
) -> Result<(Vec<(Decoded, usize)>, Vec<(PathBuf, String)>)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = files.len().div_ceil(threads).max(1);
    let results: Vec<Vec<Result<Decoded>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(per)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(path, _)| decode(path, options.size))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a decoding thread panicked"))
            .collect()
    });
    let mut decoded = Vec::with_capacity(files.len());
    let mut skipped = Vec::new();
    for (i, result) in results.into_iter().flatten().enumerate() {
        match result {
            Ok(image) => decoded.push((image, i)),
            Err(e) if options.skip_bad => skipped.push((files[i].0.clone(), e.to_string())),
            Err(Error::Format { path, reason }) => {
                return Err(Error::Format {
                    path,
                    reason: format!("{reason} (--skip-bad leaves such images out)"),
                })
            }
            Err(e) => return Err(e),
        }
    }
    Ok((decoded, skipped))
}

/// A split's images (each with its index in `files`) stacked, all of `shape`'s size,
/// converted to its channels.
fn stack(images: Vec<(Decoded, usize)>, files: &[(PathBuf, u32)], shape: Shape) -> Result<Split> {
    let mut pixels = Vec::with_capacity(images.len() * shape.len());
    let mut labels = Vec::with_capacity(images.len());
    for (image, i) in &images {
        let (path, label) = &files[*i];
        if (image.height, image.width) != (shape.height, shape.width) {
            return Err(Error::format(
                path,
                format!(
                    "the image is {}×{} but the first one {}×{}: state a size \
                     ([data] image_size or --image-size) to resize them all",
                    image.width, image.height, shape.width, shape.height
                ),
            ));
        }
        if shape.channels == 3 && image.gray {
            pixels.extend(image.pixels.iter().flat_map(|&v| [v, v, v]));
        } else {
            pixels.extend_from_slice(&image.pixels);
        }
        labels.push(*label);
    }
    Ok(Split {
        count: labels.len(),
        pixels,
        labels,
        shape,
        labels_file: PathBuf::new(),
        encoding: super::Encoding::U8,
    })
}

/// Read `dir/train` and `dir/val` (or `dir/test`); `classes` as stated by the user,
/// else the training split's class folders.
pub fn load_image_folder(
    dir: &Path,
    classes: Option<usize>,
    options: FolderOptions,
) -> Result<Dataset> {
    if let Some(size) = options.size.filter(|s| !(1..=MAX_SIDE).contains(s)) {
        return Err(Error::Config(format!(
            "image size {size}: images are resized to 1 to {MAX_SIDE} pixels a side"
        )));
    }
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
    let train_files = list_split(&train_dir, &names)?;
    let test_files = list_split(&test_dir, &names)?;
    let (train, mut skipped) = decode_all(&train_files, options)?;
    let (test, test_skipped) = decode_all(&test_files, options)?;
    skipped.extend(test_skipped);
    let first = train
        .first()
        .or(test.first())
        .map(|(image, _)| image)
        .ok_or_else(|| Error::format(dir, "no readable image"))?;
    let gray = train.iter().chain(&test).all(|(image, _)| image.gray);
    let shape = Shape::image(first.height, first.width, if gray { 1 } else { 3 });
    let mut train = stack(train, &train_files, shape)?;
    let mut test = stack(test, &test_files, shape)?;
    train.labels_file = train_dir;
    test.labels_file = test_dir;
    let count = classes.unwrap_or(names.len());
    let mut data = Dataset::from_splits(train, test, dir.to_path_buf(), Classes::Stated(count))?;
    data.skipped = skipped;
    Ok(data)
}
