//! Encoded images (JPEG, PNG) decoded into a data set, shared by the image-folder and
//! tar-shard readers: decoded on every core, in order; where every image is grayscale
//! the data set has one channel, else three (RGB). With a stated size an image is
//! resized so that its shorter side has that size (bilinear) and centre-cropped to a
//! square, as torchvision's `Resize` + `CenterCrop`; without one, every image must have
//! the first one's size.

use super::dataset::{Classes, Dataset, Encoding, Split};
use super::Shape;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The largest side an image is resized to.
pub const MAX_SIDE: usize = 4096;

/// How images are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageOptions {
    /// Resize (shorter side) and centre-crop every image to `size` × `size`.
    pub size: Option<usize>,
    /// Leave out images that cannot be decoded (each reported), instead of stopping at
    /// the first.
    pub skip_bad: bool,
}

/// One image to decode: its name in errors (a file, or an archive's entry), its
/// bytes (none: read the file `name`) and its label.
pub struct Encoded {
    pub name: PathBuf,
    pub bytes: Option<Vec<u8>>,
    pub label: u32,
}

/// A split's decoded images, each with its index among the encoded ones, and the
/// images left out (`skip_bad`) with why.
type DecodedSplit = (Vec<(Decoded, usize)>, Vec<(PathBuf, String)>);

/// One decoded image: its pixels (1 or 3 channels, row-major, channels last) and size.
struct Decoded {
    pixels: Vec<u8>,
    width: usize,
    height: usize,
    gray: bool,
}

fn decode(item: &Encoded, size: Option<usize>) -> Result<Decoded> {
    let path = &item.name;
    // The decoders' messages may span lines: one line here.
    let bad = |e: &dyn std::fmt::Display| {
        let reason = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Error::format(path, format!("not a readable image: {reason}"))
    };
    let read;
    let bytes = match &item.bytes {
        Some(bytes) => bytes,
        None => {
            read = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            &read
        }
    };
    let image = image::ImageReader::new(std::io::Cursor::new(bytes))
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
fn decode_all(files: &[Encoded], options: ImageOptions) -> Result<DecodedSplit> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = files.len().div_ceil(threads).max(1);
    let results: Vec<Vec<Result<Decoded>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(per)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|item| decode(item, options.size))
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
            Err(e) if options.skip_bad => skipped.push((files[i].name.clone(), e.to_string())),
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
fn stack(images: Vec<(Decoded, usize)>, files: &[Encoded], shape: Shape) -> Result<Split> {
    let mut pixels = Vec::with_capacity(images.len() * shape.len());
    let mut labels = Vec::with_capacity(images.len());
    for (image, i) in &images {
        let Encoded {
            name: path, label, ..
        } = &files[*i];
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
        encoding: Encoding::U8,
    })
}

/// The data set of the images `train` and `test` (their splits named by
/// `split_names` in label errors) from `source`, with `classes` classes.
pub fn decode_splits(
    source: &Path,
    (train, test): (Vec<Encoded>, Vec<Encoded>),
    split_names: (PathBuf, PathBuf),
    classes: usize,
    options: ImageOptions,
) -> Result<Dataset> {
    if let Some(size) = options.size.filter(|s| !(1..=MAX_SIDE).contains(s)) {
        return Err(Error::Config(format!(
            "image size {size}: images are resized to 1 to {MAX_SIDE} pixels a side"
        )));
    }
    let (train_images, mut skipped) = decode_all(&train, options)?;
    let (test_images, test_skipped) = decode_all(&test, options)?;
    skipped.extend(test_skipped);
    let first = (train_images.first())
        .or(test_images.first())
        .map(|(image, _)| image)
        .ok_or_else(|| Error::format(source, "no readable image"))?;
    let gray = train_images
        .iter()
        .chain(&test_images)
        .all(|(image, _)| image.gray);
    let shape = Shape::image(first.height, first.width, if gray { 1 } else { 3 });
    let mut train_split = stack(train_images, &train, shape)?;
    let mut test_split = stack(test_images, &test, shape)?;
    train_split.labels_file = split_names.0;
    test_split.labels_file = split_names.1;
    let mut data = Dataset::from_splits(
        train_split,
        test_split,
        source.to_path_buf(),
        Classes::Stated(classes),
    )?;
    data.skipped = skipped;
    Ok(data)
}
