//! Rows of D values on the device (the TWA basis P, a landscape's plane) and the two
//! passes over them: the dot products of every row with a vector, and a combination
//! of the rows written into a vector (`twa.wgsl`). D is cut into segments that one
//! storage binding holds; a row is stored a segment per buffer (whole rows of one
//! segment per buffer) and the vectors are bound a segment's window at a time, so
//! rows and vectors may be longer than the adapter's largest binding.

use crate::error::Result;
use crate::gpu::kernels::groups_1d;
use crate::gpu::{Bind, Dispatch, Gpu, Kernels};

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct TwaParams {
    rows: u32,
    /// vec4s per row of the segment.
    dim4: u32,
    out_off: u32,
    coef_off: u32,
    scale: f32,
    coef_scale: f32,
    /// vec4s of D per workgroup of `dots`, and their number (in this segment; in
    /// `dots_finish`, of all segments).
    span4: u32,
    spans: u32,
    /// Spans of the segments before this one (where its partial sums go).
    span_off: u32,
    pad: [u32; 3],
}

/// Words per row of `len` values: rounded up to whole vec4s (the padding holds zeros).
pub fn row_stride(len: usize) -> usize {
    len.next_multiple_of(4)
}

/// How D is cut: segments of `len` words (a multiple of the window alignment), the
/// last one shorter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segments {
    pub dim: usize,
    pub len: usize,
}

impl Segments {
    /// Segments as long as one storage binding of `gpu` holds.
    pub fn of(gpu: &Gpu, dim: usize) -> Segments {
        Segments::at_most(gpu, dim, gpu.max_binding() as usize / 4)
    }

    /// Segments of at most `most` words (rounded down to the window alignment).
    pub fn at_most(gpu: &Gpu, dim: usize, most: usize) -> Segments {
        let align = gpu.window_align();
        let len = (most / align * align)
            .max(align)
            .min(row_stride(dim.max(1)));
        Segments { dim, len }
    }

    pub fn count(&self) -> usize {
        self.dim.div_ceil(self.len).max(1)
    }

    /// (first word, words) of each segment; a segment's words are whole vec4s.
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.count()).map(|s| {
            let start = s * self.len;
            (start, row_stride(self.len.min(self.dim - start)))
        })
    }

    /// The words of the longest segment.
    fn longest(&self) -> usize {
        self.iter().map(|(_, w)| w).max().unwrap_or(4)
    }
}

/// vec4s of D per workgroup of `dots` and of `combine`: long spans on a CPU adapter
/// (few long runs of memory, which its prefetcher follows), short ones on a GPU (many
/// workgroups; `combine`: one vec4 per invocation).
fn spans4(gpu: &Gpu) -> (usize, usize) {
    if gpu.tuning == crate::gpu::Tuning::Cpu {
        (4096, 4096)
    } else {
        (1024, 256)
    }
}

/// Rows per workgroup of `dots` (`DOT_ROWS` in the shader).
const DOT_ROWS: usize = 4;

/// out[out_off + i] = Σ_d row_i[d]·x[d] for `rows` rows held a segment per binding in
/// `basis` (each `rows` × that segment's words): every segment's per-span partial
/// sums, then their sum.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dots(
    gpu: &Gpu,
    k: &Kernels,
    basis: &[Bind],
    rows: usize,
    segments: Segments,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    out_off: usize,
) -> Vec<Dispatch> {
    let span4 = spans4(gpu).0;
    let spans: Vec<usize> = segments
        .iter()
        .map(|(_, words)| (words / 4).div_ceil(span4).max(1))
        .collect();
    let total: usize = spans.iter().sum();
    let scratch = gpu.storage(total * rows.max(1), "dots per span");
    let params = |dim4: usize, spans: usize, span_off: usize| TwaParams {
        rows: rows as u32,
        dim4: dim4 as u32,
        out_off: out_off as u32,
        coef_off: 0,
        scale: 0.0,
        coef_scale: 0.0,
        span4: span4 as u32,
        spans: spans as u32,
        span_off: span_off as u32,
        pad: [0; 3],
    };
    let mut out_dispatches = Vec::with_capacity(spans.len() + 1);
    let mut span_off = 0;
    for (((start, words), &b), &n) in segments.iter().zip(basis).zip(&spans) {
        let u = gpu.uniform(&params(words / 4, n, span_off), "dots");
        let bindings = [
            b,
            Bind::window(x, start, words),
            out.into(),
            (&u).into(),
            (&scratch).into(),
        ];
        let groups = [rows.div_ceil(DOT_ROWS).max(1) as u32, n as u32, 1];
        out_dispatches.push(Dispatch::new(gpu, &k.dots, &bindings, groups));
        span_off += n;
    }
    let (start, words) = (0, segments.iter().next().map_or(4, |s| s.1));
    let u = gpu.uniform(&params(words / 4, total, 0), "dots finish");
    let bindings = [
        basis[0],
        Bind::window(x, start, words),
        out.into(),
        (&u).into(),
        (&scratch).into(),
    ];
    out_dispatches.push(Dispatch::new(
        gpu,
        &k.dots_finish,
        &bindings,
        groups_1d(rows.max(1), 64),
    ));
    out_dispatches
}

/// y ← scale·y + coef_scale·Σ_i coef[coef_off + i]·row_i over `rows` rows held a
/// segment per binding in `basis`; with no rows (`basis` then any buffers, one per
/// segment), y ← scale·y.
#[allow(clippy::too_many_arguments)]
pub(crate) fn combine(
    gpu: &Gpu,
    k: &Kernels,
    basis: &[Bind],
    rows: usize,
    segments: Segments,
    coef: (&wgpu::Buffer, usize),
    y: &wgpu::Buffer,
    scale: f32,
    coef_scale: f32,
) -> Vec<Dispatch> {
    let span4 = spans4(gpu).1;
    let unused = gpu.storage(1, "unused");
    segments
        .iter()
        .zip(basis)
        .map(|((start, words), &b)| {
            let spans = (words / 4).div_ceil(span4).max(1);
            let p = TwaParams {
                rows: rows as u32,
                dim4: (words / 4) as u32,
                out_off: 0,
                coef_off: coef.1 as u32,
                scale,
                coef_scale,
                span4: span4 as u32,
                spans: spans as u32,
                span_off: 0,
                pad: [0; 3],
            };
            let u = gpu.uniform(&p, "combine");
            let bindings = [
                b,
                coef.0.into(),
                Bind::window(y, start, words),
                (&u).into(),
                (&unused).into(),
            ];
            Dispatch::new(gpu, &k.combine, &bindings, [spans as u32, 1, 1])
        })
        .collect()
}

/// The windows of a D-long vector, one per segment (a vector taken as a one-row basis).
pub(crate) fn windows(x: &wgpu::Buffer, segments: Segments) -> Vec<Bind<'_>> {
    segments
        .iter()
        .map(|(start, words)| Bind::window(x, start, words))
        .collect()
}

/// Rows of one chunk: a buffer per segment.
struct Chunk {
    parts: Vec<wgpu::Buffer>,
    first_row: usize,
    capacity: usize,
}

/// Up to `capacity` rows of D values on the device, in chunks of whole rows a
/// segment per buffer; rows `0..len` are in use.
pub struct Rows {
    pub segments: Segments,
    chunks: Vec<Chunk>,
    rows_per_chunk: usize,
    len: usize,
}

impl Rows {
    /// Room for `capacity` rows cut by `segments`, at most `rows_per_chunk` rows per
    /// buffer (fewer where one binding holds fewer).
    pub fn new(
        gpu: &Gpu,
        capacity: usize,
        segments: Segments,
        rows_per_chunk: usize,
        label: &str,
    ) -> Result<Rows> {
        let fit = gpu.rows_per_binding(segments.longest(), "row segment")?;
        let rows_per_chunk = rows_per_chunk.clamp(1, fit).min(capacity.max(1));
        let chunks = (0..capacity.div_ceil(rows_per_chunk))
            .map(|c| {
                let first_row = c * rows_per_chunk;
                let capacity = rows_per_chunk.min(capacity - first_row);
                Chunk {
                    parts: segments
                        .iter()
                        .map(|(_, words)| gpu.storage(capacity * words, label))
                        .collect(),
                    first_row,
                    capacity,
                }
            })
            .collect();
        Ok(Rows {
            segments,
            chunks,
            rows_per_chunk,
            len: 0,
        })
    }

    /// These rows with every row counted as in use (their values written later).
    pub fn all_in_use(mut self) -> Rows {
        self.len = self.chunks.iter().map(|c| c.capacity).sum();
        self
    }

    /// Rows in use.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the rows in use.
    pub fn bytes(&self) -> usize {
        4 * self.len * row_stride(self.segments.dim)
    }

    /// The chunks holding rows in use, each with its rows in use.
    fn used(&self) -> impl Iterator<Item = (&Chunk, usize)> {
        self.chunks
            .iter()
            .map(|c| (c, c.capacity.min(self.len.saturating_sub(c.first_row))))
            .filter(|&(_, rows)| rows > 0)
    }

    /// Record copying the first D values of `src` into row `i` (rows up to `i` are then
    /// in use).
    pub fn copy_in(&mut self, encoder: &mut wgpu::CommandEncoder, i: usize, src: &wgpu::Buffer) {
        let chunk = &self.chunks[i / self.rows_per_chunk];
        let row = i - chunk.first_row;
        for ((start, words), part) in self.segments.iter().zip(&chunk.parts) {
            encoder.copy_buffer_to_buffer(
                src,
                (start * 4) as u64,
                part,
                (row * words * 4) as u64,
                (words * 4) as u64,
            );
        }
        self.len = self.len.max(i + 1);
    }

    /// Dispatches writing row_i·x into out[out_off + i] for the rows in use.
    pub fn dots(
        &self,
        gpu: &Gpu,
        k: &Kernels,
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
        out_off: usize,
    ) -> Vec<Dispatch> {
        self.used()
            .flat_map(|(c, rows)| {
                let basis: Vec<Bind> = c.parts.iter().map(Bind::from).collect();
                dots(
                    gpu,
                    k,
                    &basis,
                    rows,
                    self.segments,
                    x,
                    out,
                    out_off + c.first_row,
                )
            })
            .collect()
    }

    /// Dispatches for y ← scale·y + coef_scale·Σ_i coef[coef_off + i]·row_i over the
    /// rows in use.
    pub fn combine(
        &self,
        gpu: &Gpu,
        k: &Kernels,
        coef: (&wgpu::Buffer, usize),
        y: &wgpu::Buffer,
        scale: f32,
        coef_scale: f32,
    ) -> Vec<Dispatch> {
        if self.is_empty() {
            // The sum over rows is empty: y ← scale·y.
            let any = vec![Bind::from(coef.0); self.segments.count()];
            return combine(gpu, k, &any, 0, self.segments, coef, y, scale, 0.0);
        }
        self.used()
            .enumerate()
            .flat_map(|(n, (c, rows))| {
                let basis: Vec<Bind> = c.parts.iter().map(Bind::from).collect();
                let s = if n == 0 { scale } else { 1.0 };
                let coef = (coef.0, coef.1 + c.first_row);
                combine(gpu, k, &basis, rows, self.segments, coef, y, s, coef_scale)
            })
            .collect()
    }

    /// The rows in use as rows × D floats (read back; for tests and reports).
    pub async fn read(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let dim = self.segments.dim;
        let mut out = vec![0.0f32; self.len * dim];
        for (c, rows) in self.used() {
            for ((start, words), part) in self.segments.iter().zip(&c.parts) {
                let values: Vec<f32> = gpu.read(part, 0, rows * words).await?;
                let len = words.min(dim - start);
                for (r, row) in values.chunks(words).enumerate() {
                    let at = (c.first_row + r) * dim + start;
                    out[at..at + len].copy_from_slice(&row[..len]);
                }
            }
        }
        Ok(out)
    }
}
