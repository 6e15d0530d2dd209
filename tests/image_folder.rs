//! Image folders (torchvision's `ImageFolder` layout): the shipped Fashion-MNIST subset
//! written as PNG files loads as its IDX copy in torchvision's order and evaluates
//! alike; RGB and grayscale, JPEG and PNG, resizing and centre crops; and each bad
//! folder by name.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use twa::data::folder::load_image_folder;
use twa::data::images::ImageOptions;
use twa::data::{Classes, Dataset};
use twa::run::config::{shipped_data_dir, RunConfig};
use twa::train::{TrainConfig, Trainer};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("twa-folder-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Write `pixels` (h × w × channels, 1 or 3) as an image file; the format follows
/// the extension.
fn write_image(path: &Path, w: u32, h: u32, channels: usize, pixels: Vec<u8>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let image = match channels {
        1 => image::DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, pixels).unwrap()),
        _ => image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, pixels).unwrap()),
    };
    image.save(path).unwrap();
}

/// An image of one colour.
fn solid(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    let pixels = (0..w * h).flat_map(|_| rgb).collect();
    write_image(path, w, h, 3, pixels);
}

fn shipped() -> Dataset {
    Dataset::load_idx_dir(&shipped_data_dir(), Classes::Infer).unwrap()
}

/// The shipped subset as `DIR/train/CLASS/NNNNN.png` and `DIR/test/…` (NNNNN: the
/// sample's index in the IDX file).
fn write_png_folder(data: &Dataset, dir: &Path) {
    for (name, split) in [("train", &data.train), ("test", &data.test)] {
        let f = split.features();
        for i in 0..split.count {
            let path = dir.join(format!("{name}/{}/{i:05}.png", split.labels[i]));
            let pixels = split.pixels[i * f..(i + 1) * f].to_vec();
            write_image(&path, 28, 28, 1, pixels);
        }
    }
}

/// The IDX indices in torchvision's order: by class, then by file name (the index).
fn folder_order(split: &twa::data::Split) -> Vec<usize> {
    let mut order: Vec<usize> = (0..split.count).collect();
    order.sort_by_key(|&i| (split.labels[i], i));
    order
}

#[test]
fn the_shipped_subset_as_png_folders_loads_as_its_idx_files_and_evaluates_alike() {
    let idx = shipped();
    let dir = temp_dir("fashion");
    write_png_folder(&idx, &dir);
    let folder = load_image_folder(&dir, None, ImageOptions::default()).unwrap();
    assert_eq!(folder.classes, 10);
    assert_eq!(folder.train.shape, idx.train.shape);
    for (got, want) in [(&folder.train, &idx.train), (&folder.test, &idx.test)] {
        assert_eq!(got.count, want.count);
        let f = want.features();
        let order = folder_order(want);
        for (k, &i) in order.iter().enumerate() {
            assert_eq!(got.labels[k], want.labels[i], "label of sample {i}");
            assert_eq!(
                got.pixels[k * f..(k + 1) * f],
                want.pixels[i * f..(i + 1) * f],
                "pixels of sample {i}"
            );
        }
    }
    // The same pixels summed in another order.
    assert_close("mean", &folder.mean, &f64s(&idx.mean), 1e-6, 0.0);
    assert_close("std", &folder.std, &f64s(&idx.std), 1e-6, 0.0);

    // One model, both copies of the test split: the same accuracy, the same loss
    // (summed in another order: within 1e-6 relative).
    let model = RunConfig::preset("quick").unwrap().model;
    let config = TrainConfig {
        eval_batch: 500,
        ..TrainConfig::default()
    };
    let init = |data: &Dataset| {
        let mut trainer = Trainer::new(gpu(), data, &model, config.clone()).unwrap();
        let params = trainer.net.model.init_params(3);
        trainer.net.set_params(gpu(), &params);
        block_on(trainer.evaluate()).unwrap()
    };
    // Both normalise with the IDX copy's statistics (a model file carries them).
    let mut folder = folder;
    folder.mean = idx.mean.clone();
    folder.std = idx.std.clone();
    let (a, b) = (init(&idx), init(&folder));
    assert_eq!(a.accuracy(), b.accuracy());
    let (la, lb) = (a.mean_loss(), b.mean_loss());
    assert!((la - lb).abs() <= 1e-6 * la.abs(), "test loss {la} vs {lb}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rgb_jpegs_and_pngs_of_mixed_sizes_are_resized_and_centre_cropped() {
    let dir = temp_dir("rgb");
    // Class `cat` (0): a wide image, red | green | blue in thirds of 10, 20, 10
    // columns; a tall green PNG. Class `dog` (1): a grey (grayscale) PNG, a blue JPEG.
    let mut wide = Vec::new();
    for _ in 0..20 {
        for x in 0..40 {
            wide.extend(match x {
                0..10 => [255, 0, 0],
                10..30 => [0, 255, 0],
                _ => [0, 0, 255],
            });
        }
    }
    write_image(&dir.join("train/cat/a.png"), 40, 20, 3, wide);
    solid(&dir.join("train/cat/b.png"), 20, 30, [0, 255, 0]);
    write_image(&dir.join("train/dog/a.png"), 24, 24, 1, vec![128; 576]);
    solid(&dir.join("train/dog/b.jpg"), 33, 17, [0, 0, 255]);
    solid(&dir.join("val/cat/x.png"), 16, 16, [0, 255, 0]);
    solid(&dir.join("val/dog/y.JPEG"), 16, 16, [0, 0, 255]);
    std::fs::write(dir.join("train/dog/notes.txt"), "not an image").unwrap();
    let options = ImageOptions {
        size: Some(16),
        skip_bad: false,
    };
    let data = load_image_folder(&dir, None, options).unwrap();
    assert_eq!((data.train.count, data.test.count, data.classes), (4, 2, 2));
    assert_eq!(data.train.labels, vec![0, 0, 1, 1]);
    assert_eq!(data.train.shape, twa::nn::model::Shape::image(16, 16, 3));
    let f = 16 * 16 * 3;
    let pixel = |s: &twa::data::Split, i: usize, y: usize, x: usize| {
        let at = i * f + (y * 16 + x) * 3;
        [s.pixels[at], s.pixels[at + 1], s.pixels[at + 2]]
    };
    // The wide image: shorter side 20 → 16, width 40 → 32, the centre 16 columns are
    // the green third (its edges blend with red and blue by at most a column).
    for y in 0..16 {
        for x in 1..15 {
            assert_eq!(pixel(&data.train, 0, y, x), [0, 255, 0], "wide ({y}, {x})");
        }
    }
    // Grey gives three equal channels; JPEG's blue within its compression error.
    assert_eq!(pixel(&data.train, 2, 5, 5), [128, 128, 128]);
    let [r, g, b] = pixel(&data.train, 3, 8, 8);
    assert!(r <= 8 && g <= 8 && b >= 245, "JPEG blue: {r} {g} {b}");
    assert_eq!(pixel(&data.test, 0, 0, 0), [0, 255, 0]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The error of loading `dir` (with `options`), as text.
fn error(dir: &Path, options: ImageOptions) -> String {
    match load_image_folder(dir, None, options) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_image_folders_are_refused_by_name_and_corrupt_files_skipped_only_when_asked() {
    let root = temp_dir("bad");
    let good = |name: &str| {
        let dir = root.join(name);
        for split in ["train", "val"] {
            for class in ["a", "b"] {
                solid(&dir.join(format!("{split}/{class}/1.png")), 8, 8, [9, 9, 9]);
                solid(&dir.join(format!("{split}/{class}/2.png")), 8, 8, [9, 9, 9]);
            }
        }
        dir
    };
    let plain = ImageOptions::default();
    let check = |what: &str, dir: &Path, options: ImageOptions, needles: &[&str]| {
        let e = error(dir, options);
        for needle in needles {
            assert!(e.contains(needle), "{what}: `{needle}` not in: {e}");
        }
    };

    let dir = good("corrupt");
    std::fs::write(dir.join("train/a/3.jpg"), b"\xff\xd8\xff\xe0 not a jpeg").unwrap();
    check(
        "corrupt JPEG",
        &dir,
        plain,
        &["train/a/3.jpg", "not a readable image", "--skip-bad"],
    );
    let skip = ImageOptions {
        skip_bad: true,
        ..plain
    };
    let data = load_image_folder(&dir, None, skip).unwrap();
    assert_eq!(data.train.count, 4);
    assert_eq!(data.skipped.len(), 1);
    assert!(data.skipped[0].0.ends_with("train/a/3.jpg"));

    let dir = good("truncated");
    let png = std::fs::read(dir.join("train/b/1.png")).unwrap();
    std::fs::write(dir.join("train/b/1.png"), &png[..png.len() / 2]).unwrap();
    check(
        "truncated PNG",
        &dir,
        plain,
        &["train/b/1.png", "not a readable image"],
    );

    let dir = good("empty-class");
    std::fs::create_dir_all(dir.join("train/c")).unwrap();
    std::fs::write(dir.join("train/c/readme.txt"), "no images").unwrap();
    check(
        "empty class folder",
        &dir,
        plain,
        &["train/c", "holds no .jpg, .jpeg or .png file"],
    );

    let dir = good("sizes");
    solid(&dir.join("val/b/3.png"), 8, 9, [9, 9, 9]);
    check(
        "mixed image sizes",
        &dir,
        plain,
        &["val/b/3.png", "8×9 but the first one 8×8", "image_size"],
    );
    let sized = ImageOptions {
        size: Some(8),
        ..plain
    };
    assert_eq!(load_image_folder(&dir, None, sized).unwrap().test.count, 5);

    let dir = good("no-val");
    std::fs::remove_dir_all(dir.join("val")).unwrap();
    check("no val split", &dir, plain, &["no val/ or test/ split"]);

    let dir = good("stray-class");
    solid(&dir.join("val/zebra/1.png"), 8, 8, [9, 9, 9]);
    check(
        "val class unknown to train",
        &dir,
        plain,
        &["val/zebra", "not one of the training split's 2 classes"],
    );

    let dir = good("huge");
    let huge = ImageOptions {
        size: Some(100_000),
        ..plain
    };
    check("absurd size", &dir, huge, &["image size 100000"]);

    assert!(!twa::data::folder::is_image_folder(&root.join("nothing")));
    let _ = std::fs::remove_dir_all(&root);
}
