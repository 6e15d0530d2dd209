//! Neural-network layers over the flat parameter store: model description, parameter
//! table, kernel recording per layer, and the device-side network.

pub mod layers;
pub mod model;
pub mod network;
pub mod params;

pub use model::{Model, ModelConfig};
pub use network::{Network, SgdConfig, StepState, Totals};
pub use params::{ParamEntry, ParamTable};
