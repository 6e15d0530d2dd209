//! Which tuning the kernels take: a CPU rasteriser's (lavapipe, SwiftShader: workgroups
//! of one SIMD vector, capped grids, register-blocked matrix products, long spans) or a
//! GPU's (wide workgroups, workgroup-memory tiles, split-K weight gradients, short
//! spans). The adapter's type decides, unless `TWA_KERNELS=cpu|gpu` forces one: so the
//! GPU's choices run, and are tested, on a CPU adapter too.

use crate::error::{Error, Result};

/// The environment variable that forces a tuning.
pub const VARIABLE: &str = "TWA_KERNELS";

/// The two tunings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    Cpu,
    Gpu,
}

impl Tuning {
    /// The tuning for an adapter of type `kind`: forced by [`VARIABLE`] if set (an
    /// unknown value is an error naming the variable), else by the type.
    pub fn for_adapter(kind: wgpu::DeviceType) -> Result<Tuning> {
        match std::env::var(VARIABLE) {
            Ok(value) => Tuning::parse(&value),
            Err(_) => Ok(Tuning::of_type(kind)),
        }
    }

    /// `cpu` or `gpu` (`auto` is not a tuning: leave the variable unset).
    fn parse(value: &str) -> Result<Tuning> {
        match value.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Tuning::Cpu),
            "gpu" => Ok(Tuning::Gpu),
            _ => Err(Error::Config(format!(
                "{VARIABLE}={value}: expected cpu or gpu (or leave it unset: the adapter's type decides)"
            ))),
        }
    }

    /// CPU adapters get the CPU's tuning, every other type the GPU's.
    pub fn of_type(kind: wgpu::DeviceType) -> Tuning {
        if kind == wgpu::DeviceType::Cpu {
            Tuning::Cpu
        } else {
            Tuning::Gpu
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_takes_cpu_or_gpu_and_names_itself_otherwise() {
        assert_eq!(Tuning::parse("gpu").unwrap(), Tuning::Gpu);
        assert_eq!(Tuning::parse(" CPU ").unwrap(), Tuning::Cpu);
        let err = Tuning::parse("fast").unwrap_err().to_string();
        assert!(
            err.contains("TWA_KERNELS=fast") && err.contains("cpu or gpu"),
            "{err}"
        );
        assert_eq!(Tuning::of_type(wgpu::DeviceType::Cpu), Tuning::Cpu);
        assert_eq!(Tuning::of_type(wgpu::DeviceType::DiscreteGpu), Tuning::Gpu);
    }
}
