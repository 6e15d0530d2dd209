//! `twa-app`: the desktop window. Sets up eframe and hands over to [`twa_app::TwaApp`].

use twa_app::capture::Capturing;
use twa_app::TwaApp;

fn main() {
    twa::gpu::context::quiet_display_probe();
    let mut preset = twa_app::state::PRESETS[0].to_string();
    let mut capture = None;
    let mut data = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--preset", Some(p)) => preset = p,
            ("--capture", Some(dir)) => capture = Some(std::path::PathBuf::from(dir)),
            ("--data", Some(dir)) => data = Some(dir),
            _ => {
                eprintln!(
                    "usage: twa-app [--preset spirals|head|tail|head-cnn] [--data DIR] [--capture DIR]"
                );
                std::process::exit(3);
            }
        }
    }
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_inner_size([1280.0, 820.0])
            .with_title("twa — Trainable Weight Averaging"),
        ..Default::default()
    };
    let opened = eframe::run_native(
        "twa",
        options,
        Box::new(move |cc| {
            let mut app = TwaApp::new(&cc.egui_ctx, &preset);
            if let Some(dir) = data {
                app.settings.data_dir = dir;
            }
            match capture {
                Some(dir) => {
                    app.start();
                    Ok(Box::new(Capturing::new(app, dir)))
                }
                None => Ok(Box::new(app)),
            }
        }),
    );
    if let Err(e) = opened {
        eprintln!(
            "error: cannot open the window: {e} (a display is needed; without one, run it under xvfb-run)"
        );
        std::process::exit(2);
    }
}
