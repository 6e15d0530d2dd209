//! `twa bench --loader DIR`: how fast an image folder becomes device data — every image
//! decoded, resized (shorter side) and centre-cropped to the side asked for on all
//! cores, then both splits uploaded — in images/s, to set beside
//! `bench/pytorch_loader.py` (torchvision's `ImageFolder` through a `DataLoader` with
//! as many workers, the same transforms) on the same files.

use crate::data::folder::load_image_folder;
use crate::data::images::ImageOptions;
use crate::data::DeviceSplit;
use crate::error::Result;
use crate::gpu::Gpu;
use std::path::Path;
use std::time::Instant;

/// Load `dir` at `side` × `side` and upload it, timed; prints one line (and, with
/// `json`, one JSON object as the last line of stdout).
pub fn measure(gpu: &Gpu, dir: &Path, side: usize, json: bool) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let options = ImageOptions {
        size: Some(side),
        skip_bad: false,
    };
    let data = load_image_folder(dir, None, options)?;
    let decoded = started.elapsed().as_secs_f64();
    let train = DeviceSplit::upload(gpu, &data.train, &data)?;
    let test = DeviceSplit::upload(gpu, &data.test, &data)?;
    pollster::block_on(gpu.wait())?;
    let total = started.elapsed().as_secs_f64();
    drop((train, test));
    let images = data.train.count + data.test.count;
    println!(
        "adapter: {}\nloader: {images} images of {} at {side}×{side}, {threads} threads: \
         decode + resize + crop {decoded:.2} s, upload {:.2} s, {:.0} images/s",
        gpu.describe(),
        dir.display(),
        total - decoded,
        images as f64 / total
    );
    if json {
        let report = serde_json::json!({
            "adapter": gpu.describe(),
            "images": images,
            "side": side,
            "threads": threads,
            "decode_s": decoded,
            "upload_s": total - decoded,
            "images_per_s": images as f64 / total,
        });
        println!("{report}");
    }
    Ok(())
}
