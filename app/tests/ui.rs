//! The app rendered headless (egui_kittest on the wgpu renderer, lavapipe in CI): it
//! starts, a demo run is started by clicking, the panels fill in, errors from the
//! worker show as a message while the app keeps running.

use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};
use std::time::{Duration, Instant};
use twa_app::TwaApp;

fn harness(preset: &str, out: &str) -> Harness<'static, TwaApp> {
    // As the app's main does first thing; every test comes here before any GPU work.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(twa::gpu::context::quiet_display_probe);
    let out = std::env::temp_dir().join(format!("twa-app-{out}-{}", std::process::id()));
    let preset = preset.to_string();
    Harness::builder()
        .with_size(egui::vec2(1280.0, 820.0))
        .wgpu()
        .build_eframe(move |cc| {
            let mut app = TwaApp::new(&cc.egui_ctx, &preset);
            app.out_dir = out;
            app
        })
}

/// Step the UI until `done` holds (the workers run in real time), at most `limit`.
fn step_until(h: &mut Harness<'static, TwaApp>, limit: Duration, done: impl Fn(&TwaApp) -> bool) {
    let started = Instant::now();
    while !done(h.state()) {
        assert!(
            started.elapsed() < limit,
            "timed out; status: {}, error: {:?}",
            h.state().status,
            h.state().error
        );
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.run_steps(3);
}

#[test]
fn a_demo_run_started_by_clicking_fills_every_panel() {
    let mut h = harness("spirals", "demo");
    h.run_steps(3);
    // The frame time in the corner is wall clock: its digits (≤ 300 pixels) vary with
    // the machine's load; everything else must match exactly.
    h.snapshot_options("start", &SnapshotOptions::new().max_failed_pixels(300));
    h.get_by_label("Start").click();
    h.run_steps(1);
    assert!(h.state().running(), "Start launches the worker");
    step_until(&mut h, Duration::from_secs(300), |app| {
        !app.running()
            && app.shown.as_ref().is_some_and(|s| s.view.grid.complete())
            && !app.landscape_busy()
    });
    let app = h.state();
    assert_eq!(app.error, None);
    let results: Vec<(&str, f64)> = app
        .curves
        .results
        .iter()
        .map(|r| (r.method.as_str(), r.epochs))
        .collect();
    // Each result at the epochs of training it cost: TWA branches off at epoch 10.
    assert_eq!(
        results,
        [
            ("SGD (epoch 10)", 10.0),
            ("SWA", 10.0),
            ("TWA", 12.0),
            ("SGD (epoch 20)", 20.0)
        ]
    );
    assert_eq!(app.curves.sgd.test_acc.len(), 20, "SGD epochs");
    let twa_epochs: Vec<f64> = app.curves.twa.test_acc.iter().map(|p| p[0]).collect();
    assert_eq!(twa_epochs, [11.0, 12.0], "TWA's branch from epoch 10");
    assert_eq!(
        app.alpha.as_ref().map(Vec::len),
        Some(51),
        "α over w₀ + 10 × 5 samples"
    );
    assert!(
        !app.trajectory.is_empty(),
        "TWA's path was reported while it trained"
    );
    let shown = app.shown.as_ref().unwrap();
    assert_eq!(shown.view.grid.spec.n, 33);
    assert!(shown.view.grid.loss.iter().all(|v| v.is_finite()));
    assert!(app.status.starts_with("Finished"), "{}", app.status);
    // Timings, the adapter name and the asynchronously read running loss vary between
    // runs and machines; panels that fail to render would change far more pixels.
    h.snapshot_options(
        "finished",
        &SnapshotOptions::new().max_failed_pixels(60_000),
    );
}

#[test]
fn per_layer_coefficients_show_each_layers_alpha() {
    let mut h = harness("spirals", "layers");
    h.state_mut().settings.coefficients = twa::twa::directions::Coefficients::Layer;
    h.run_steps(2);
    h.get_by_label("Start").click();
    h.run_steps(1);
    assert!(h.state().running(), "Start launches the worker");
    step_until(&mut h, Duration::from_secs(300), |app| !app.running());
    let app = h.state();
    assert_eq!(app.error, None);
    let names: Vec<&str> = app.alpha_per_layer.iter().map(|l| l.0.as_str()).collect();
    // The spirals MLP (2-32-32-2 with BatchNorm) by its PyTorch layer names.
    assert_eq!(names, ["0", "1", "3", "4", "6"]);
    for (name, alpha) in &app.alpha_per_layer {
        assert_eq!(alpha.len(), 51, "layer {name}");
        let sum: f64 = alpha.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6, "layer {name}: α sums to {sum}");
    }
    h.get_by_label_contains("α per layer");
}

#[test]
fn a_worker_error_shows_as_a_message_and_the_app_keeps_running() {
    let mut h = harness("head", "error");
    h.state_mut().settings.data_dir = "/nonexistent/fashion-mnist".into();
    h.run_steps(2);
    h.get_by_label("Start").click();
    step_until(&mut h, Duration::from_secs(60), |app| {
        !app.running() && app.error.is_some()
    });
    let error = h.state().error.clone().unwrap();
    assert!(error.contains("data directory not found"), "{error}");
    h.get_by_label_contains("data directory not found");
    // Still responsive: a new run can be started.
    h.state_mut().settings = twa_app::state::Settings::from_preset("spirals").unwrap();
    h.run_steps(2);
    h.get_by_label("Start").click();
    h.run_steps(1);
    assert!(h.state().running());
    assert_eq!(h.state().error, None);
    h.get_by_label("Stop").click();
    step_until(&mut h, Duration::from_secs(60), |app| !app.running());
    assert_eq!(h.state().status, "Stopped.");
}
