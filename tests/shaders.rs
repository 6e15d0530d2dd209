//! Every shader parses and validates with naga and translates to SPIR-V, MSL, HLSL and
//! GLSL: evidence that the kernels run on every API wgpu targets.

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use twa::gpu::Shader;

fn validate(shader: Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(shader.source())
        .unwrap_or_else(|e| panic!("{}: {}", shader.file(), e.emit_to_string(shader.source())));
    let capabilities = match shader {
        Shader::LinearSubgroup => Capabilities::SUBGROUP,
        _ => Capabilities::default(),
    };
    let info = Validator::new(ValidationFlags::all(), capabilities)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {:?}", shader.file(), e));
    (module, info)
}

#[test]
fn every_shader_validates_and_has_its_entry_points() {
    for shader in Shader::ALL {
        let (module, _) = validate(shader);
        let names: Vec<_> = module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        for entry in shader.entry_points() {
            assert!(
                names.contains(entry),
                "{}: entry point {entry} missing",
                shader.file()
            );
        }
        let bindings = module
            .global_variables
            .iter()
            .filter(|(_, v)| v.binding.is_some())
            .count();
        assert_eq!(
            bindings,
            shader.bindings().len(),
            "{}: binding count vs registry",
            shader.file()
        );
    }
}

/// The shader's module with its `LANES` override (if any) set to `lanes`, as a
/// pipeline gets it, and the subgroup product's `SUBGROUP` to lavapipe's 8 with a
/// CPU's lanes, a GPU's 32 otherwise.
fn with_lanes(shader: Shader, lanes: usize) -> (naga::Module, naga::valid::ModuleInfo) {
    let (module, info) = validate(shader);
    let mut constants = naga::back::PipelineConstants::default();
    if shader.has_lanes() {
        constants.insert("LANES".to_string(), lanes as f64);
    }
    if shader == Shader::LinearSubgroup {
        let width = if lanes == twa::gpu::kernels::CPU_LANES {
            8.0
        } else {
            32.0
        };
        constants.insert("SUBGROUP".to_string(), width);
    }
    let (module, info) =
        naga::back::pipeline_constants::process_overrides(&module, &info, None, &constants)
            .unwrap_or_else(|e| panic!("{} with {lanes} lanes: {e}", shader.file()));
    (module.into_owned(), info.into_owned())
}

#[test]
fn every_shader_translates_to_spirv_msl_hlsl_and_glsl() {
    let widths = [twa::gpu::kernels::CPU_LANES, twa::gpu::kernels::GPU_LANES];
    for (shader, lanes) in Shader::ALL.into_iter().flat_map(|s| widths.map(|w| (s, w))) {
        let (module, info) = with_lanes(shader, lanes);
        spv::write_vec(&module, &info, &spv::Options::default(), None)
            .unwrap_or_else(|e| panic!("{} → SPIR-V: {e}", shader.file()));
        msl::write_string(
            &module,
            &info,
            &msl::Options::default(),
            &msl::PipelineOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{} → MSL: {e}", shader.file()));
        let mut out = String::new();
        let options = hlsl::Options::default();
        hlsl::Writer::new(&mut out, &options, &Default::default())
            .write(&module, &info, None)
            .unwrap_or_else(|e| panic!("{} → HLSL: {e}", shader.file()));
        // wgpu's GL backend offers no subgroups, so that variant needs no GLSL.
        if shader == Shader::LinearSubgroup {
            continue;
        }
        for ep in &module.entry_points {
            let mut out = String::new();
            let options = glsl::Options {
                version: glsl::Version::Desktop(430),
                ..Default::default()
            };
            let pipeline = glsl::PipelineOptions {
                shader_stage: ep.stage,
                entry_point: ep.name.clone(),
                multiview: None,
            };
            glsl::Writer::new(
                &mut out,
                &module,
                &info,
                &options,
                &pipeline,
                naga::proc::BoundsCheckPolicies::default(),
            )
            .and_then(|mut w| w.write())
            .unwrap_or_else(|e| panic!("{}::{} → GLSL: {e}", shader.file(), ep.name));
        }
    }
}
