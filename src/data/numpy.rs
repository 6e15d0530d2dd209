//! NumPy arrays: a `.npz` archive (`np.savez`, stored or compressed) or a directory of
//! `.npy` files, holding `x_train`, `y_train`, `x_test` and `y_test`. Images are
//! `x[N, H, W]`, `x[N, H, W, C]` (channels last) or, with `[data] channels_first`,
//! `x[N, C, H, W]`; a table `x[N, F]` is read as 1 × 1 × F, each feature normalised
//! on its own. Values of type
//! uint8 are pixels (÷ 255 on the device), float32 and float64 are kept as f32;
//! labels are any integer type, one per sample.

use super::dataset::{Classes, Dataset, Encoding, Split};
use super::Shape;
use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The arrays a NumPy data set holds.
const NAMES: [&str; 4] = ["x_train", "y_train", "x_test", "y_test"];

/// Whether `path` is a `.npz` file or a directory holding `x_train.npy`.
pub fn is_numpy(path: &Path) -> bool {
    (path.is_file()
        && path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npz")))
        || path.join("x_train.npy").is_file()
}

/// One array: its element type (NumPy's `descr`), shape and raw little-endian data.
#[derive(Debug)]
struct Array {
    descr: String,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// The value of `key` in the header's Python dict literal (`'descr': '<f4', …`).
fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

/// Parse a `.npy` file's bytes (`what` names it in errors).
fn parse_npy(what: &Path, bytes: &[u8]) -> Result<Array> {
    let bad = |reason: String| Error::format(what, reason);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy array (no \\x93NUMPY magic)".into()));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!(".npy format version {v} is not supported"))),
    };
    let header = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("the .npy header is truncated or not text".into()))?;
    let descr = header_field(header, "descr")
        .map(|d| d.trim_matches(['\'', '"']).to_string())
        .ok_or_else(|| bad(format!("no 'descr' in the header {header:?}")))?;
    if header_field(header, "fortran_order") != Some("False") {
        return Err(bad(
            "a Fortran-ordered array: save it in C order (np.ascontiguousarray)".into(),
        ));
    }
    let shape_text = header_field(header, "shape")
        .ok_or_else(|| bad(format!("no 'shape' in the header {header:?}")))?;
    let shape = shape_text
        .trim_matches(['(', ')'])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| bad(format!("shape {shape_text} is not a tuple of sizes")))?;
    let size = element_size(&descr).ok_or_else(|| {
        bad(format!(
            "element type {descr} is not supported (uint8, float32 or float64 values; \
             integer labels)"
        ))
    })?;
    let need = shape
        .iter()
        .try_fold(size, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
    let data = &bytes[start + len..];
    if data.len() != need {
        return Err(bad(format!(
            "shape {shape:?} of {descr} needs {need} bytes of data, the file holds {}",
            data.len()
        )));
    }
    Ok(Array {
        descr,
        shape,
        data: data.to_vec(),
    })
}

/// Bytes per element of the supported little-endian (or byte) types.
fn element_size(descr: &str) -> Option<usize> {
    match descr {
        "|u1" | "|i1" | "u1" | "i1" => Some(1),
        "<u2" | "<i2" => Some(2),
        "<u4" | "<i4" | "<f4" => Some(4),
        "<u8" | "<i8" | "<f8" => Some(8),
        _ => None,
    }
}

/// The labels of `y` (one integer per sample, each ≥ 0).
fn labels(what: &Path, y: &Array) -> Result<Vec<u32>> {
    if y.shape.len() != 1 {
        return Err(Error::format(
            what,
            format!(
                "labels must be one integer per sample, got shape {:?}",
                y.shape
            ),
        ));
    }
    let size = element_size(&y.descr).unwrap_or(1);
    let signed = y.descr.contains('i');
    if y.descr.contains('f') {
        return Err(Error::format(
            what,
            format!("labels are {} floats: save them as integers", y.descr),
        ));
    }
    y.data
        .chunks_exact(size)
        .enumerate()
        .map(|(i, b)| {
            let mut word = [0u8; 8];
            word[..size].copy_from_slice(b);
            let fill = if signed && b[size - 1] & 0x80 != 0 {
                0xff
            } else {
                0
            };
            word[size..].iter_mut().for_each(|w| *w = fill);
            let v = i64::from_le_bytes(word);
            u32::try_from(v).map_err(|_| {
                Error::format(what, format!("label {v} at index {i} is not a class index"))
            })
        })
        .collect()
}

/// A split from its arrays (`x` read from `path`, `y` from `labels_path`): images or
/// table rows, and labels.
fn split_of(
    (path, x): (PathBuf, Array),
    (labels_path, y): (PathBuf, Array),
    channels_first: bool,
) -> Result<Split> {
    let path = path.as_path();
    let count = *x.shape.first().unwrap_or(&0);
    let labels = labels(&labels_path, &y)?;
    if labels.len() != count {
        return Err(Error::format(
            &labels_path,
            format!(
                "{} labels for {count} samples of {}",
                labels.len(),
                path.display()
            ),
        ));
    }
    let shape = match *x.shape.get(1..).unwrap_or(&[]) {
        [f] => Shape::image(1, 1, f),
        [h, w] => Shape::image(h, w, 1),
        [h, w, c] if !channels_first => Shape::image(h, w, c),
        [c, h, w] => Shape::image(h, w, c),
        _ => {
            return Err(Error::format(
                path,
                format!(
                    "samples of shape {:?}: expected [N, H, W], [N, H, W, C] (or with \
                     channels_first [N, C, H, W]) or a table [N, F]",
                    x.shape
                ),
            ))
        }
    };
    let (encoding, mut pixels) = match x.descr.as_str() {
        "|u1" | "u1" => (Encoding::U8, x.data),
        "<f4" => (Encoding::F32, x.data),
        "<f8" => (
            Encoding::F32,
            x.data
                .chunks_exact(8)
                .flat_map(|b| {
                    (f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).to_le_bytes()
                })
                .collect(),
        ),
        other => {
            return Err(Error::format(
                path,
                format!("samples of type {other}: uint8, float32 or float64 are read"),
            ))
        }
    };
    if channels_first && x.shape.len() == 4 {
        pixels = to_channels_last(&pixels, count, shape, encoding.bytes());
    }
    Ok(Split {
        pixels,
        labels,
        count,
        shape,
        labels_file: labels_path,
        encoding,
    })
}

/// [N, C, H, W] values of `size` bytes reordered to [N, H, W, C].
fn to_channels_last(data: &[u8], count: usize, shape: Shape, size: usize) -> Vec<u8> {
    let (c, hw) = (shape.channels, shape.height * shape.width);
    let mut out = vec![0u8; data.len()];
    for n in 0..count {
        for ch in 0..c {
            for p in 0..hw {
                let from = ((n * c + ch) * hw + p) * size;
                let to = ((n * hw + p) * c + ch) * size;
                out[to..to + size].copy_from_slice(&data[from..from + size]);
            }
        }
    }
    out
}

/// Read the four arrays from a `.npz` file or a directory of `.npy` files.
fn read_arrays(path: &Path) -> Result<Vec<(PathBuf, Array)>> {
    if path.is_dir() {
        return NAMES
            .iter()
            .map(|name| {
                let file = path.join(format!("{name}.npy"));
                let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
                Ok((file.clone(), parse_npy(&file, &bytes)?))
            })
            .collect();
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| Error::format(path, format!("not a readable .npz (zip) archive: {e}")))?;
    if let Some(name) = NAMES
        .iter()
        .find(|n| archive.index_for_name(&format!("{n}.npy")).is_none())
    {
        let held: Vec<String> = (archive.file_names())
            .filter_map(|n| n.ok().map(|n| n.into_owned()))
            .collect();
        return Err(Error::format(
            path,
            format!(
                "no array `{name}` ({name}.npy) in the archive, which holds {}",
                held.join(", ")
            ),
        ));
    }
    NAMES
        .iter()
        .map(|name| {
            let entry = format!("{name}.npy");
            let what = path.join(&entry);
            let mut member = archive
                .by_name(&entry)
                .map_err(|e| Error::format(&what, format!("cannot be read: {e}")))?;
            let mut bytes = Vec::new();
            member
                .read_to_end(&mut bytes)
                .map_err(|e| Error::format(&what, format!("cannot be read: {e}")))?;
            Ok((what.clone(), parse_npy(&what, &bytes)?))
        })
        .collect()
}

/// Load `x_train`/`y_train` and `x_test`/`y_test` from `path` (see the module doc);
/// `classes` as in [`Dataset::from_splits`].
pub fn load_numpy(path: &Path, classes: Classes, channels_first: bool) -> Result<Dataset> {
    let mut arrays = read_arrays(path)?.into_iter();
    let mut next = || arrays.next().expect("four arrays");
    let train = split_of(next(), next(), channels_first)?;
    let test = split_of(next(), next(), channels_first)?;
    Dataset::from_splits(train, test, path.to_path_buf(), classes)
}
