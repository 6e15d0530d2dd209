//! Neural-network layers over the flat parameter store: model description, parameter
//! table, kernel recording per layer, and the device-side network.

pub mod architecture;
pub mod layers;
pub mod loss;
pub mod model;
pub mod names;
pub mod network;
pub mod optim;
pub mod params;
pub mod spec;

pub use architecture::ModelConfig;
pub use model::Model;
pub use network::{DeviceMemory, GradientStep, Network, StepState, Totals};
pub use optim::{Optimizer, SgdConfig, UpdateRule};
pub use params::{ParamEntry, ParamTable};
