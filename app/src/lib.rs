//! The twa app, on the desktop and in a browser ([`web`]): a second front end over the
//! engine. Training and the landscape run as tasks with their own devices (threads
//! natively, futures on the web); the UI only sends requests, takes messages and
//! paints (see `../shared/DESIGN.md`, "The landscape view").

pub mod app;
pub mod capture;
pub mod landscape_worker;
#[cfg(target_arch = "wasm32")]
pub mod page;
pub mod panels;
pub mod spawn;
pub mod state;
#[cfg(target_arch = "wasm32")]
pub mod web;
pub mod worker;

pub use state::TwaApp;
