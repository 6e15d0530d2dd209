//! The twa desktop app: a second front end over the engine. Training and the
//! landscape run on worker threads with their own devices; the UI thread only sends
//! requests, takes messages and paints (see `../shared/DESIGN.md`, "The landscape view").

pub mod app;
pub mod capture;
pub mod landscape_worker;
pub mod panels;
pub mod spawn;
pub mod worker;

pub use app::TwaApp;
