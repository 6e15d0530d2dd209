//! CSV tables for tabular models: `DIR/train.csv` and `DIR/test.csv` (or `val.csv`),
//! each with a header row, numeric feature columns and one label column (named by
//! `[data] label_column`, default `label`). Labels that are all non-negative integers
//! are class indices; otherwise they are class names, numbered in sorted order of the
//! training split's names. A row is one sample of F values (shape 1 × 1 × F), each
//! feature normalised with its own training mean and standard deviation.

use super::dataset::{Classes, Dataset, Encoding, Split};
use super::Shape;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Whether `dir` holds a `train.csv`.
pub fn is_table(dir: &Path) -> bool {
    dir.join("train.csv").is_file()
}

/// A file's rows: the feature columns' names, features row by row and label texts.
struct Rows {
    columns: Vec<String>,
    values: Vec<f32>,
    labels: Vec<String>,
}

fn read_rows(path: &Path, label_column: &str) -> Result<Rows> {
    let at = |line: u64, reason: String| Error::format(path, format!("line {line}: {reason}"));
    let mut reader = ::csv::ReaderBuilder::new()
        .trim(::csv::Trim::All)
        .from_path(path)
        .map_err(|e| Error::io(path, e))?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| Error::format(path, format!("no readable header row: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    let label = header
        .iter()
        .position(|c| c == label_column)
        .ok_or_else(|| {
            Error::format(
                path,
                format!(
                    "no label column `{label_column}` among the columns {} (name it with \
                 --label-column)",
                    header.join(", ")
                ),
            )
        })?;
    let columns: Vec<String> = (header.iter().enumerate())
        .filter(|&(i, _)| i != label)
        .map(|(_, c)| c.clone())
        .collect();
    if columns.is_empty() {
        return Err(Error::format(path, "no feature columns besides the label"));
    }
    let mut rows = Rows {
        columns,
        values: Vec::new(),
        labels: Vec::new(),
    };
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            let reason = match e.kind() {
                ::csv::ErrorKind::UnequalLengths {
                    len, expected_len, ..
                } => {
                    format!("{len} fields where the header has {expected_len}")
                }
                _ => e.to_string(),
            };
            at(line, reason)
        })?;
        let line = record.position().map_or(0, |p| p.line());
        for (i, field) in record.iter().enumerate() {
            if i == label {
                rows.labels.push(field.to_string());
                continue;
            }
            let value: f32 = field
                .parse()
                .ok()
                .filter(|v: &f32| v.is_finite())
                .ok_or_else(|| {
                    at(
                        line,
                        format!("column `{}`: `{field}` is not a finite number", header[i]),
                    )
                })?;
            rows.values.push(value);
        }
    }
    if rows.labels.is_empty() {
        return Err(Error::format(path, "no rows below the header"));
    }
    Ok(rows)
}

/// Class indices of both splits' labels: the integers themselves where every label
/// is one, else the training split's names in sorted order (`test` named in errors).
fn class_indices(
    train: &[String],
    test: &[String],
    test_path: &Path,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let numbers = |labels: &[String]| -> Option<Vec<u32>> {
        labels.iter().map(|l| l.parse::<u32>().ok()).collect()
    };
    if let (Some(a), Some(b)) = (numbers(train), numbers(test)) {
        return Ok((a, b));
    }
    let mut names: Vec<&String> = train.iter().collect();
    names.sort();
    names.dedup();
    let index = |l: &String| names.binary_search(&l).map(|i| i as u32);
    let train = train
        .iter()
        .map(|l| index(l).expect("a training name"))
        .collect();
    let test = (test.iter().enumerate())
        .map(|(row, l)| {
            index(l).map_err(|_| {
                Error::format(
                    test_path,
                    format!(
                        "row {}: class `{l}` is not one of the training split's {} classes",
                        row + 1,
                        names.len()
                    ),
                )
            })
        })
        .collect::<Result<_>>()?;
    Ok((train, test))
}

fn split_of(rows: Rows, labels: Vec<u32>, path: PathBuf) -> Split {
    let features = rows.columns.len();
    Split {
        pixels: rows.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        count: labels.len(),
        labels,
        shape: Shape::image(1, 1, features),
        labels_file: path,
        encoding: Encoding::F32,
    }
}

/// Load `dir/train.csv` and `dir/test.csv` (or `val.csv`); `classes` as in
/// [`Dataset::from_splits`].
pub fn load_table(dir: &Path, label_column: &str, classes: Classes) -> Result<Dataset> {
    let train_path = dir.join("train.csv");
    let test_path = ["test.csv", "val.csv"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::io(
                dir.join("test.csv"),
                "no test.csv or val.csv beside train.csv",
            )
        })?;
    let train = read_rows(&train_path, label_column)?;
    let test = read_rows(&test_path, label_column)?;
    if test.columns != train.columns {
        return Err(Error::format(
            &test_path,
            format!(
                "feature columns {} differ from train.csv's {}",
                test.columns.join(", "),
                train.columns.join(", ")
            ),
        ));
    }
    let (train_labels, test_labels) = class_indices(&train.labels, &test.labels, &test_path)?;
    let train = split_of(train, train_labels, train_path);
    let test = split_of(test, test_labels, test_path);
    Dataset::from_splits(train, test, dir.to_path_buf(), classes)
}
