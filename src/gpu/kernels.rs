//! The kernel registry: every shader file in `shaders/`, its fixed binding layout, and
//! the compute pipelines built from its entry points, compiled once per device.

use super::context::Gpu;
use super::pipeline_cache::DiskCache;
use super::Tuning;

/// How a shader binds one resource: storage read-only, storage read-write, or uniform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    Read,
    ReadWrite,
    Uniform,
}

use Binding::{Read, ReadWrite as Rw, Uniform};

/// One shader file (op family). Its bindings are shared by all its entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shader {
    Linear,
    /// `linear.wgsl` plus the subgroup matrix product (devices with subgroups ≥ 8).
    LinearSubgroup,
    Activation,
    Dropout,
    BatchNorm,
    Conv,
    Loss,
    Optim,
    Data,
    Twa,
    Directions,
    Transformer,
}

impl Shader {
    /// Every shader, for validation and translation tests.
    pub const ALL: [Shader; 12] = [
        Shader::Linear,
        Shader::LinearSubgroup,
        Shader::Activation,
        Shader::Dropout,
        Shader::BatchNorm,
        Shader::Conv,
        Shader::Loss,
        Shader::Optim,
        Shader::Data,
        Shader::Twa,
        Shader::Directions,
        Shader::Transformer,
    ];

    /// File name under `shaders/`.
    pub fn file(self) -> &'static str {
        match self {
            Shader::Linear => "linear.wgsl",
            Shader::LinearSubgroup => "linear.wgsl + linear_subgroup.wgsl",
            Shader::Activation => "activation.wgsl",
            Shader::Dropout => "dropout.wgsl",
            Shader::BatchNorm => "batchnorm.wgsl",
            Shader::Conv => "conv.wgsl",
            Shader::Loss => "loss.wgsl",
            Shader::Optim => "optim.wgsl",
            Shader::Data => "data.wgsl",
            Shader::Twa => "twa.wgsl",
            Shader::Directions => "directions.wgsl",
            Shader::Transformer => "transformer.wgsl",
        }
    }

    /// WGSL source, embedded at build time: `grid.wgsl` (the `LANES` override and the
    /// grid loop's range) and then the shader's own file.
    pub fn source(self) -> &'static str {
        macro_rules! with_grid {
            ($($file:literal),+) => {
                concat!(include_str!("../../shaders/grid.wgsl"), $(include_str!(concat!("../../shaders/", $file))),+)
            };
        }
        match self {
            Shader::Linear => with_grid!("linear.wgsl"),
            Shader::LinearSubgroup => with_grid!("linear.wgsl", "linear_subgroup.wgsl"),
            Shader::Activation => with_grid!("activation.wgsl"),
            Shader::Dropout => with_grid!("dropout.wgsl"),
            Shader::BatchNorm => with_grid!("batchnorm.wgsl"),
            Shader::Conv => with_grid!("conv.wgsl"),
            Shader::Loss => include_str!("../../shaders/loss.wgsl"),
            Shader::Optim => with_grid!("optim.wgsl"),
            Shader::Data => with_grid!("data.wgsl"),
            Shader::Twa => with_grid!("twa.wgsl"),
            Shader::Directions => with_grid!("directions.wgsl"),
            Shader::Transformer => with_grid!("transformer.wgsl"),
        }
    }

    /// Whether the shader starts with `grid.wgsl`, whose `LANES` the host sets from
    /// [`lanes`].
    pub fn has_lanes(self) -> bool {
        self.source()
            .starts_with(include_str!("../../shaders/grid.wgsl"))
    }

    /// Bindings of group 0, in binding order.
    pub fn bindings(self) -> &'static [Binding] {
        match self {
            Shader::Linear | Shader::LinearSubgroup => &[Read, Read, Read, Rw, Uniform],
            Shader::Activation | Shader::Conv => &[Read, Read, Rw, Uniform],
            Shader::Dropout => &[Read, Rw, Uniform, Uniform],
            Shader::BatchNorm => &[Read, Read, Read, Rw, Rw, Rw, Rw, Uniform, Uniform, Read],
            Shader::Loss => &[Read, Read, Rw, Rw, Uniform, Uniform],
            Shader::Optim => &[Read, Rw, Rw, Rw, Uniform, Uniform],
            Shader::Data => &[Read, Read, Read, Rw, Rw, Uniform, Uniform, Read],
            Shader::Twa => &[Read, Read, Rw, Uniform, Rw],
            Shader::Directions => &[Read, Read, Read, Read, Read, Rw, Uniform],
            Shader::Transformer => &[Read, Read, Read, Rw, Rw, Uniform],
        }
    }

    /// Entry points of this shader.
    pub fn entry_points(self) -> &'static [&'static str] {
        match self {
            Shader::Linear => &[
                "matmul",
                "matmul_vec4",
                "matmul_tiled",
                "split_k_sum",
                "transpose",
                "bias_grad",
            ],
            Shader::LinearSubgroup => &["matmul_subgroup"],
            Shader::Activation => &[
                "relu_forward",
                "relu_inplace",
                "relu_backward",
                "gelu_forward",
                "gelu_backward",
                "add",
                "copy",
                "accumulate",
            ],
            Shader::Dropout => &["dropout"],
            Shader::BatchNorm => &[
                "partial_stats",
                "finish_train",
                "finish_recalibrate",
                "normalise",
                "normalise_relu",
                "normalise_running",
                "normalise_running_relu",
                "partial_grads",
                "partial_grads_relu",
                "finish_grads",
                "backward_dx",
                "backward_dx_relu",
            ],
            Shader::Conv => &[
                "im2col",
                "col2im",
                "max_forward",
                "max_backward",
                "max_backward_tiled",
                "avg_forward",
                "avg_backward",
                "flatten",
                "unflatten",
            ],
            Shader::Loss => &["cross_entropy", "evaluate"],
            Shader::Optim => &[
                "sgd_step",
                "adamw_step",
                "zero",
                "clip_partial",
                "clip_factor",
                "clip_scale",
            ],
            Shader::Data => &["gather"],
            Shader::Twa => &["dots", "dots_finish", "combine"],
            Shader::Directions => &["block_dots", "block_sum", "block_combine"],
            Shader::Transformer => &[
                "layernorm_forward",
                "layernorm_backward",
                "layernorm_param_grads",
                "class_token_forward",
                "class_token_backward",
                "class_token_grad",
                "position_forward",
                "position_grad",
                "take_class_token",
                "take_class_token_back",
                "attention_forward",
                "attention_backward",
            ],
        }
    }
}

/// A compiled entry point and the layout its bind groups follow.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub name: &'static str,
    pub shader: Shader,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Every kernel of the engine, compiled once per device.
pub struct Kernels {
    pub matmul: Kernel,
    pub matmul_vec4: Kernel,
    pub matmul_tiled: Kernel,
    /// The subgroup variant, where the device has subgroups of at least 8 invocations.
    pub matmul_subgroup: Option<Kernel>,
    /// Use `matmul_tiled` (real GPUs) rather than the register-blocked variants (CPU
    /// rasterisers such as lavapipe, where workgroup-memory tiling does not pay).
    pub prefer_tiled: bool,
    pub split_k_sum: Kernel,
    pub transpose: Kernel,
    pub bias_grad: Kernel,
    pub relu_forward: Kernel,
    pub relu_inplace: Kernel,
    pub relu_backward: Kernel,
    pub gelu_forward: Kernel,
    pub gelu_backward: Kernel,
    pub dropout: Kernel,
    pub add: Kernel,
    pub copy: Kernel,
    pub accumulate: Kernel,
    pub bn_partial_stats: Kernel,
    pub bn_finish_train: Kernel,
    pub bn_finish_recalibrate: Kernel,
    pub bn_normalise: Kernel,
    pub bn_normalise_relu: Kernel,
    pub bn_normalise_running: Kernel,
    pub bn_normalise_running_relu: Kernel,
    pub bn_partial_grads: Kernel,
    pub bn_partial_grads_relu: Kernel,
    pub bn_finish_grads: Kernel,
    pub bn_backward_dx: Kernel,
    pub bn_backward_dx_relu: Kernel,
    pub im2col: Kernel,
    pub col2im: Kernel,
    pub max_forward: Kernel,
    pub max_backward: Kernel,
    pub max_backward_tiled: Kernel,
    pub avg_forward: Kernel,
    pub avg_backward: Kernel,
    pub flatten: Kernel,
    pub unflatten: Kernel,
    pub cross_entropy: Kernel,
    pub evaluate: Kernel,
    pub sgd_step: Kernel,
    pub adamw_step: Kernel,
    pub clip_partial: Kernel,
    pub clip_factor: Kernel,
    pub clip_scale: Kernel,
    pub zero: Kernel,
    pub gather: Kernel,
    pub dots: Kernel,
    pub dots_finish: Kernel,
    pub combine: Kernel,
    pub block_dots: Kernel,
    pub block_sum: Kernel,
    pub layernorm_forward: Kernel,
    pub layernorm_backward: Kernel,
    pub layernorm_param_grads: Kernel,
    pub class_token_forward: Kernel,
    pub class_token_backward: Kernel,
    pub class_token_grad: Kernel,
    pub position_forward: Kernel,
    pub position_grad: Kernel,
    pub take_class_token: Kernel,
    pub take_class_token_back: Kernel,
    pub attention_forward: Kernel,
    pub attention_backward: Kernel,
    pub block_combine: Kernel,
}

fn layout_entry(binding: u32, kind: Binding) -> wgpu::BindGroupLayoutEntry {
    let ty = match kind {
        Binding::Uniform => wgpu::BufferBindingType::Uniform,
        Binding::Read => wgpu::BufferBindingType::Storage { read_only: true },
        Binding::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
    };
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

/// Compile every entry point of `shader` (through `cache` when given), its
/// streaming kernels [`lanes`] wide and the subgroup product [`subgroup_width`] wide.
fn compile(gpu: &Gpu, shader: Shader, cache: Option<&wgpu::PipelineCache>) -> Vec<Kernel> {
    let device = &gpu.device;
    let mut constants: Vec<(&str, f64)> = Vec::new();
    if shader.has_lanes() {
        constants.push(("LANES", lanes(gpu) as f64));
    }
    if shader == Shader::LinearSubgroup {
        constants.push(("SUBGROUP", subgroup_width(gpu) as f64));
    }
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(shader.file()),
        source: wgpu::ShaderSource::Wgsl(shader.source().into()),
    });
    let entries: Vec<_> = shader
        .bindings()
        .iter()
        .enumerate()
        .map(|(i, &kind)| layout_entry(i as u32, kind))
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(shader.file()),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(shader.file()),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    shader
        .entry_points()
        .iter()
        .map(|&name| Kernel {
            name,
            shader,
            layout: layout.clone(),
            pipeline: device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(name),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    ..Default::default()
                },
                cache,
            }),
        })
        .collect()
}

impl Kernels {
    /// Compile every shader for `gpu`'s device, through the pipeline cache on disk
    /// where there is one.
    pub fn new(gpu: &Gpu) -> Kernels {
        Kernels::with_cache(gpu, DiskCache::open(gpu).as_ref())
    }

    /// Compile every shader for `gpu`'s device through `disk`, saved afterwards.
    pub fn with_cache(gpu: &Gpu, disk: Option<&DiskCache>) -> Kernels {
        let subgroups = gpu.has_subgroups(8);
        let cache = disk.map(|d| &d.cache);
        let mut all: Vec<Kernel> = Shader::ALL
            .iter()
            .filter(|&&s| s != Shader::LinearSubgroup || subgroups)
            .flat_map(|&s| compile(gpu, s, cache))
            .collect();
        if let Some(disk) = disk {
            disk.save();
        }
        let matmul_subgroup = all
            .iter()
            .position(|k| k.name == "matmul_subgroup")
            .map(|i| all.swap_remove(i));
        let mut take = |name: &str| {
            let i = all
                .iter()
                .position(|k| k.name == name)
                .expect("entry point registered");
            all.swap_remove(i)
        };
        Kernels {
            matmul: take("matmul"),
            matmul_vec4: take("matmul_vec4"),
            matmul_tiled: take("matmul_tiled"),
            matmul_subgroup,
            prefer_tiled: gpu.tuning == Tuning::Gpu,
            split_k_sum: take("split_k_sum"),
            transpose: take("transpose"),
            bias_grad: take("bias_grad"),
            relu_forward: take("relu_forward"),
            relu_inplace: take("relu_inplace"),
            relu_backward: take("relu_backward"),
            gelu_forward: take("gelu_forward"),
            gelu_backward: take("gelu_backward"),
            dropout: take("dropout"),
            add: take("add"),
            copy: take("copy"),
            accumulate: take("accumulate"),
            bn_partial_stats: take("partial_stats"),
            bn_finish_train: take("finish_train"),
            bn_finish_recalibrate: take("finish_recalibrate"),
            bn_normalise: take("normalise"),
            bn_normalise_relu: take("normalise_relu"),
            bn_normalise_running: take("normalise_running"),
            bn_normalise_running_relu: take("normalise_running_relu"),
            bn_partial_grads: take("partial_grads"),
            bn_partial_grads_relu: take("partial_grads_relu"),
            bn_finish_grads: take("finish_grads"),
            bn_backward_dx: take("backward_dx"),
            bn_backward_dx_relu: take("backward_dx_relu"),
            im2col: take("im2col"),
            col2im: take("col2im"),
            max_forward: take("max_forward"),
            max_backward: take("max_backward"),
            max_backward_tiled: take("max_backward_tiled"),
            avg_forward: take("avg_forward"),
            avg_backward: take("avg_backward"),
            flatten: take("flatten"),
            unflatten: take("unflatten"),
            cross_entropy: take("cross_entropy"),
            evaluate: take("evaluate"),
            sgd_step: take("sgd_step"),
            adamw_step: take("adamw_step"),
            clip_partial: take("clip_partial"),
            clip_factor: take("clip_factor"),
            clip_scale: take("clip_scale"),
            zero: take("zero"),
            gather: take("gather"),
            dots: take("dots"),
            dots_finish: take("dots_finish"),
            combine: take("combine"),
            block_dots: take("block_dots"),
            block_sum: take("block_sum"),
            block_combine: take("block_combine"),
            layernorm_forward: take("layernorm_forward"),
            layernorm_backward: take("layernorm_backward"),
            layernorm_param_grads: take("layernorm_param_grads"),
            class_token_forward: take("class_token_forward"),
            class_token_backward: take("class_token_backward"),
            class_token_grad: take("class_token_grad"),
            position_forward: take("position_forward"),
            position_grad: take("position_grad"),
            take_class_token: take("take_class_token"),
            take_class_token_back: take("take_class_token_back"),
            attention_forward: take("attention_forward"),
            attention_backward: take("attention_backward"),
        }
    }
}

/// A buffer as a kernel binds it: whole, or a window of it (start and length in
/// words), so that a buffer larger than the adapter's largest storage binding can be
/// bound a part at a time.
#[derive(Clone, Copy, Debug)]
pub struct Bind<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub window: Option<(usize, usize)>,
}

impl<'a> Bind<'a> {
    /// Words `start..start + len` of `buffer` (`start` a multiple of
    /// [`Gpu::window_align`]).
    pub fn window(buffer: &'a wgpu::Buffer, start: usize, len: usize) -> Bind<'a> {
        Bind {
            buffer,
            window: Some((start, len)),
        }
    }

    fn resource(&self) -> wgpu::BindingResource<'a> {
        match self.window {
            None => self.buffer.as_entire_binding(),
            Some((start, len)) => {
                let start = start as u64 * 4;
                let len = (len.max(1) as u64 * 4).min(self.buffer.size() - start);
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: self.buffer,
                    offset: start,
                    size: std::num::NonZeroU64::new(len),
                })
            }
        }
    }
}

impl<'a> From<&'a wgpu::Buffer> for Bind<'a> {
    fn from(buffer: &'a wgpu::Buffer) -> Bind<'a> {
        Bind {
            buffer,
            window: None,
        }
    }
}

/// One recorded kernel launch: pipeline, bind group and workgroup counts, built once
/// and replayed every step.
#[derive(Clone, Debug)]
pub struct Dispatch {
    /// The kernel's entry point (for profiles).
    pub name: &'static str,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

impl Dispatch {
    /// Bind `resources` (one buffer or window per binding, in binding order) to
    /// `kernel`.
    #[track_caller]
    pub fn new<'a, R: Into<Bind<'a>> + Copy>(
        gpu: &Gpu,
        kernel: &Kernel,
        resources: &[R],
        groups: [u32; 3],
    ) -> Dispatch {
        let bindings = kernel.shader.bindings();
        assert_eq!(
            resources.len(),
            bindings.len(),
            "{}: {} resources for {} bindings",
            kernel.name,
            resources.len(),
            bindings.len()
        );
        let entries: Vec<_> = resources
            .iter()
            .enumerate()
            .map(|(i, &r)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: r.into().resource(),
            })
            .collect();
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &kernel.layout,
            entries: &entries,
        });
        Dispatch {
            name: kernel.name,
            pipeline: kernel.pipeline.clone(),
            bind_group,
            groups,
        }
    }

    /// Record this launch into a compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
}

/// Record `dispatches` into one compute pass of a new encoder and submit it.
pub fn submit(gpu: &Gpu, dispatches: &[&Dispatch]) -> wgpu::SubmissionIndex {
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for d in dispatches {
            d.record(&mut pass);
        }
    }
    gpu.queue.submit([encoder.finish()])
}

/// Workgroups for a 1-D kernel with one invocation per item, `len` items at `width`
/// per group.
pub fn groups_1d(len: usize, width: usize) -> [u32; 3] {
    [len.div_ceil(width).clamp(1, 65535) as u32, 1, 1]
}

/// Invocations per workgroup of the streaming kernels (the grid loops of
/// `grid.wgsl` and the TWA passes over the basis; their shaders' `LANES`): 256 on a
/// GPU, 8 on a CPU adapter, one SIMD vector there. A CPU runs a workgroup as one
/// thread; with 8 lanes and a contiguous chunk per workgroup each thread reads memory
/// as one stream. On lavapipe (Mesa 25) against 256 lanes with a grid stride: the
/// projection Pᵀ(Pg) 1.6–2× as fast, the cnn step 161–170 ms instead of 187–198.
pub fn lanes(gpu: &Gpu) -> usize {
    match gpu.tuning {
        Tuning::Cpu => CPU_LANES,
        Tuning::Gpu => GPU_LANES,
    }
}

/// Invocations per workgroup of `matmul_subgroup` (its `SUBGROUP`): the adapter's
/// smallest subgroup, so that a workgroup is one subgroup whatever size the driver
/// picks (8 on lavapipe; at most 128).
pub fn subgroup_width(gpu: &Gpu) -> usize {
    (gpu.info.subgroup_min_size as usize).clamp(8, 128)
}

/// [`lanes`] on a CPU adapter.
pub const CPU_LANES: usize = 8;

/// [`lanes`] on a GPU.
pub const GPU_LANES: usize = 256;

/// Most workgroups of a grid loop on a CPU adapter.
pub const CPU_GRID_GROUPS: usize = 512;

/// Workgroups of [`lanes`] invocations for a grid loop over `len` items. A CPU
/// adapter (the CPU [`Tuning`]) pays for every workgroup it launches, so there each invocation loops over
/// many items (at most [`CPU_GRID_GROUPS`]: the cnn step on lavapipe took 300–360 ms
/// with a workgroup per 256 items, 175–200 with 64 to 512 on Mesa 25, and 400–420
/// with 512 against 440–460 with 64 on Mesa 22.3); a GPU gets one item per invocation.
pub fn grid(gpu: &Gpu, len: usize) -> [u32; 3] {
    let cap = match gpu.tuning {
        Tuning::Cpu => CPU_GRID_GROUPS,
        Tuning::Gpu => 65535,
    };
    [len.div_ceil(lanes(gpu)).clamp(1, cap) as u32, 1, 1]
}
