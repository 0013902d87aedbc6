//! `x · Wᵀ` for the 4-bit e5 weights with int8 arithmetic, as the reference engine computes it, and for MiniLM's
//! f32 weights rounded to 7 bits at load.
//!
//! Each 32-value block of a weight row keeps its 4-bit values (−8..7), or its 7-bit ones (−63..63), as int8 with one
//! f32 scale; each 32-value block of an activation row is rounded to int8 with its own scale (max |x| / 127, ties to
//! even) just before the product. A block's dot product is then exact in integers, and the output is
//! Σ_blocks (scale_x · scale_w · dot).
//!
//! candle's `QMatMul` runs the same arithmetic, but one (row, column) pair at a time, re-reading and re-expanding every
//! weight block for each token row; on the short inputs an encoder sees (a dozen tokens) that made it barely faster
//! than expanding the weights to f32. Here the weights are laid out at load one output column per lane (see [`lanes`]),
//! a weight step is loaded once and used for a tile of token rows (four with AVX-512, two with AVX2), every tile runs
//! against one cache-sized panel of columns before the next panel, a block's products add up in integers per column,
//! the float work is once per block for 16 columns, and the activation rows are quantised once per projection. The SIMD
//! kernels (through `pulp`, which checks the CPU at run time and keeps the intrinsics safe to call) use the
//! unsigned-by-signed byte product (`vpmaddubsw`, or with AVX512-VNNI `vpdpbusd`, which also adds a lane's four
//! products to its int32 sum) on `x + 128`. The shift costs no instruction: each block's integer sum starts from
//! −128 · Σ w (precomputed at load), so it ends as the exact signed dot product before it is converted and scaled.
//! Where the CPU has AMX, its tile unit does each block's integer products instead ([`amx`], the same result bit for
//! bit). Other CPUs take a scalar loop with the same integer arithmetic. Measured in bench/RESULTS.md
//! (`kefu-bench embed`, `kefu-bench nlu`).

/// A `[out, in]` weight matrix in int8 blocks of 32.
pub(crate) struct Q8Matrix {
    out: usize,
    inp: usize,
    /// `out × in` values, row-major, for the scalar path (empty where a SIMD kernel runs).
    values: Vec<i8>,
    /// `out × in / 32` block scales, for the scalar path (empty where a SIMD kernel runs).
    scales: Vec<f32>,
    /// The same values for the SIMD kernels, one lane per output column: for each group of 16 columns, each
    /// block and each step of 4 inputs, 64 bytes (column j's 4 bytes in lane j). The last group is padded with
    /// zero columns. Empty where the CPU takes another path.
    lanes: Vec<i8>,
    /// The block scales in the same order: for each group and block, 16 (one per column lane).
    lane_scales: Vec<f32>,
    /// −128 · Σ w per block, in the same order: the start of each block's integer sum, which takes back the
    /// activations' shift to unsigned (`x + 128`), exactly and at no cost per product.
    lane_offsets: Vec<i32>,
    /// Every weight within ±8 (4-bit weights): the SIMD kernels may sum a whole block's byte products in 16 bits.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    narrow: bool,
}

pub(crate) const BLOCK: usize = 32;
/// The largest weight magnitude the SIMD kernels take (see [`Q8Matrix::from_f32`]).
const WEIGHT_MAX: f32 = 63.0;
/// The largest weight magnitude whose byte products the SIMD kernels may sum over a whole block in 16 bits.
const NARROW_MAX: u8 = 8;
/// Token rows per tile on the scalar path.
const TILE: usize = 4;

/// Activation rows rounded to int8 per block and shifted to unsigned (`x + 128`), with their block scales.
struct Quantised {
    values: Vec<u8>,
    scales: Vec<f32>,
}

/// Which code path the encoder's numeric loops run on, chosen from the CPU at run time (pulp checks the features
/// once). Shared by the products here and the GELU in [`crate::bert`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3),
    #[cfg(target_arch = "x86_64")]
    Avx512(pulp::x86::V4),
    /// AVX-512 with VNNI's byte dot products ([`avx512::Vnni`]).
    #[cfg(target_arch = "x86_64")]
    Vnni(avx512::Vnni),
    /// AVX-512 with the products on AMX's tile unit ([`amx`]) where it is the faster one, VNNI (every CPU with AMX
    /// has it) elsewhere ([`Kernel::for_rows`]).
    #[cfg(target_arch = "x86_64")]
    Amx(avx512::Vnni),
}

impl Kernel {
    pub(crate) fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(simd) = pulp::x86::V4::try_new() {
                return match avx512::Vnni::try_new() {
                    Some(vnni) if amx::available() => Kernel::Amx(vnni),
                    Some(vnni) => Kernel::Vnni(vnni),
                    None => Kernel::Avx512(simd),
                };
            }
            if let Some(simd) = pulp::x86::V3::try_new() {
                return Kernel::Avx2(simd);
            }
        }
        Kernel::Scalar
    }

    /// Every path this CPU can run, the detected one first.
    pub(crate) fn available() -> Vec<Kernel> {
        let mut all = vec![Kernel::detect()];
        #[cfg(target_arch = "x86_64")]
        {
            if let Kernel::Amx(vnni) = all[0] {
                all.push(Kernel::Vnni(vnni));
            }
            if let Kernel::Amx(vnni) | Kernel::Vnni(vnni) = all[0] {
                all.push(Kernel::Avx512(vnni.simd));
            }
            if let (Kernel::Avx512(_) | Kernel::Vnni(_) | Kernel::Amx(_), Some(simd)) =
                (all[0], pulp::x86::V3::try_new())
            {
                all.push(Kernel::Avx2(simd));
            }
        }
        if !matches!(all[0], Kernel::Scalar) {
            all.push(Kernel::Scalar);
        }
        all
    }

    /// The path's name in benchmark tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(_) => "AVX2",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => "AVX-512",
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni(_) => "AVX512-VNNI",
            #[cfg(target_arch = "x86_64")]
            Kernel::Amx(_) => "AMX, VNNI outside 9-32 rows",
        }
    }

    /// Runs `f` with this path's CPU features enabled, so that plain loops in it compile to that path's vector
    /// code (`f` must be `#[inline(always)]`).
    pub(crate) fn vectorize<F: pulp::NullaryFnOnce>(self, f: F) -> F::Output {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(simd) => simd.vectorize(f),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(simd) => simd.vectorize(f),
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni(vnni) | Kernel::Amx(vnni) => vnni.vectorize(f),
            Kernel::Scalar => f.call(),
        }
    }

    /// Token rows per call of the product for `rows` in all. AMX and the scalar loop take a tile at a time. The lane
    /// kernels take all of a thread's rows at once ([`lanes`] reads each weight group once per call), the rows split
    /// among the pool's threads in whole tiles.
    fn rows_per_call(self, rows: usize) -> usize {
        let tile = self.tile();
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(_) | Kernel::Avx512(_) | Kernel::Vnni(_) => rows
                .div_ceil(rayon::current_num_threads())
                .next_multiple_of(tile)
                .max(tile),
            _ => tile,
        }
    }

    /// The path a product, or one call of it, of `rows` token rows runs on: AMX keeps [`amx::MIN_ROWS`] to
    /// [`amx::MAX_ROWS`] and hands the rest to VNNI. Below, the tile unit's fixed cost per weight block (loading it
    /// as a tile, storing the sums) outweighs its speed; above, each 16-row tile reads all the weights again where
    /// VNNI's lanes read each panel once for every row. Measured on an Intel Xeon with AMX (`kefu-bench products`,
    /// bench/RESULTS.md): VNNI about 1.5 times as fast at 1–4 rows, AMX 1.1–1.2 times at 13–16, VNNI 1.04–1.11 times
    /// from 48 rows.
    fn for_rows(self, rows: usize) -> Kernel {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Amx(vnni) if !(amx::MIN_ROWS..=amx::MAX_ROWS).contains(&rows) => {
                Kernel::Vnni(vnni)
            }
            kernel => kernel,
        }
    }

    /// Token rows per tile.
    fn tile(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) | Kernel::Vnni(_) => avx512::TILE,
            #[cfg(target_arch = "x86_64")]
            Kernel::Amx(_) => amx::TILE,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(_) => avx2::TILE,
            Kernel::Scalar => TILE,
        }
    }
}

struct Quantise<'a>(&'a [f32]);

impl pulp::NullaryFnOnce for Quantise<'_> {
    type Output = Quantised;

    #[inline(always)]
    fn call(self) -> Quantised {
        quantise_rows(self.0)
    }
}

/// Written over fixed-size arrays with no integer arithmetic that could overflow, so that inside a SIMD frame it
/// compiles to vector code (max, round, convert) rather than a scalar loop with overflow checks.
#[inline(always)]
fn quantise_rows(x: &[f32]) -> Quantised {
    let mut values = vec![0u8; x.len()];
    let mut scales = vec![0f32; x.len() / BLOCK];
    for ((block, out), scale) in x
        .as_chunks::<BLOCK>()
        .0
        .iter()
        .zip(values.as_chunks_mut::<BLOCK>().0)
        .zip(scales.iter_mut())
    {
        let mut lanes = [0f32; 8];
        for part in block.as_chunks::<8>().0 {
            for (m, v) in lanes.iter_mut().zip(part) {
                *m = m.max(v.abs());
            }
        }
        let amax = lanes.iter().fold(0f32, |m, &v| m.max(v));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        // In −127..=127 by construction; the shift makes it 1..=255, exact in f32. Adding 1.5 · 2²³ as well puts that
        // whole number in the low mantissa bits, which a truncating integer cast reads: a float's `as u8` saturates,
        // and that compiled to one scalar conversion per value (AVX2 runs this code; AVX-512 has its own). Two loops,
        // so the second is a plain narrowing. A NaN gives 0 either way.
        let mut bits = [0u32; BLOCK];
        for (b, v) in bits.iter_mut().zip(block) {
            *b = ((*v * inv).round_ties_even() + (128.0 + 12_582_912.0)).to_bits();
        }
        for (o, b) in out.iter_mut().zip(bits) {
            *o = b as u8;
        }
        *scale = d;
    }
    Quantised { values, scales }
}

/// One call's token rows (`xs`: their quantised values, `x_scales`: their block scales; see
/// [`Kernel::rows_per_call`]) against every weight row, on a SIMD path. A struct rather than a closure so that the
/// body is inlined into pulp's feature-enabled frame (a closure call there was not, which left every intrinsic an
/// out-of-line call).
#[cfg(target_arch = "x86_64")]
struct Tile<'a, S> {
    simd: S,
    m: &'a Q8Matrix,
    xs: &'a [u8],
    x_scales: &'a [f32],
    out: &'a mut [f32],
}

/// A SIMD path's product for one call's rows; see [`Q8Matrix::tile_scalar`] for the arithmetic.
#[cfg(target_arch = "x86_64")]
trait TileProduct: Copy {
    fn tile(self, m: &Q8Matrix, xs: &[u8], x_scales: &[f32], out: &mut [f32]);
}

#[cfg(target_arch = "x86_64")]
impl<S: TileProduct> pulp::NullaryFnOnce for Tile<'_, S> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        self.simd.tile(self.m, self.xs, self.x_scales, self.out);
    }
}

#[cfg(target_arch = "x86_64")]
mod amx;
mod speed;

pub use speed::{product_speed, ProductSpeed};

/// 32-bit lanes of one AVX-512 register (two AVX2 ones): output columns per group in the SIMD kernels, and the width
/// of the encoder's lane folds and padded attention rows (`bert`).
pub(crate) const LANES: usize = 16;
/// Inputs per lane per step: `vpmaddubsw` then `vpmaddwd` (or one `vpdpbusd`) sum four byte products into each
/// int32 lane.
const STEP: usize = 4;

/// Row-major `[out, in]` int8 values, their block scales and each block's −128 · Σ w in the SIMD kernels' order
/// (see [`Q8Matrix::lanes`]).
fn by_lanes(out: usize, inp: usize, values: &[i8], scales: &[f32]) -> Lanes {
    let blocks = inp / BLOCK;
    let groups = out.div_ceil(LANES);
    let mut lanes = vec![0i8; groups * LANES * inp];
    let mut lane_scales = vec![0f32; groups * blocks * LANES];
    let mut lane_offsets = vec![0i32; groups * blocks * LANES];
    for c in 0..out {
        let (g, j) = (c / LANES, c % LANES);
        for k in 0..inp {
            let (b, s, i) = (k / BLOCK, k % BLOCK / STEP, k % STEP);
            let at = (((g * blocks + b) * (BLOCK / STEP) + s) * LANES + j) * STEP + i;
            lanes[at] = values[c * inp + k];
        }
        for b in 0..blocks {
            let at = (g * blocks + b) * LANES + j;
            lane_scales[at] = scales[c * blocks + b];
            let block = &values[c * inp + b * BLOCK..c * inp + (b + 1) * BLOCK];
            lane_offsets[at] = -128 * block.iter().map(|&w| i32::from(w)).sum::<i32>();
        }
    }
    Lanes {
        lanes,
        lane_scales,
        lane_offsets,
    }
}

/// The weights in the SIMD kernels' order ([`by_lanes`]).
#[derive(Default)]
struct Lanes {
    lanes: Vec<i8>,
    lane_scales: Vec<f32>,
    lane_offsets: Vec<i32>,
}

/// `w` in blocks of 32, each rounded to −`max`..=`max` with the scale max |w| / `max` (ties to even): the values
/// and one scale per block.
pub(crate) fn round_blocks(w: &[f32], max: f32) -> (Vec<i8>, Vec<f32>) {
    let mut values = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(w.len() / BLOCK);
    for block in w.chunks_exact(BLOCK) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / max;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        values.extend(block.iter().map(|v| (v * inv).round_ties_even() as i8));
        scales.push(d);
    }
    (values, scales)
}

impl Q8Matrix {
    /// From Q4_0 rows (see [`crate::bert::q4_0_block`]).
    pub fn from_q4_0(blocks: &[u8], out: usize, inp: usize) -> Q8Matrix {
        assert!(inp.is_multiple_of(BLOCK) && blocks.len() == out * inp / BLOCK * 18);
        let n = out * inp / BLOCK;
        let mut values = Vec::with_capacity(out * inp);
        let mut scales = Vec::with_capacity(n);
        for block in blocks.chunks_exact(18) {
            let (d, v) = crate::bert::q4_0_block(block);
            values.extend_from_slice(&v);
            scales.push(d);
        }
        Q8Matrix::new(out, inp, values, scales)
    }

    /// From f32 weights `[out, in]` (PyTorch layout): each 32-value block rounded to −63..=63 with the scale
    /// max |w| / 63 (ties to even). Seven bits, not eight, because the SIMD kernels sum two byte products in a
    /// saturating 16-bit lane: 255 · 63 · 2 fits in it, 255 · 127 · 2 would not.
    pub fn from_f32(w: &[f32], out: usize, inp: usize) -> Q8Matrix {
        assert!(inp.is_multiple_of(BLOCK) && w.len() == out * inp);
        let (values, scales) = round_blocks(w, WEIGHT_MAX);
        Q8Matrix::new(out, inp, values, scales)
    }

    fn new(out: usize, inp: usize, values: Vec<i8>, scales: Vec<f32>) -> Q8Matrix {
        let narrow = values.iter().all(|v| v.unsigned_abs() <= NARROW_MAX);
        let Lanes {
            lanes,
            lane_scales,
            lane_offsets,
        } = match Kernel::detect() {
            #[cfg(target_arch = "x86_64")]
            Kernel::Amx(_) | Kernel::Vnni(_) | Kernel::Avx512(_) | Kernel::Avx2(_) => {
                by_lanes(out, inp, &values, &scales)
            }
            Kernel::Scalar => Lanes::default(),
        };
        // The SIMD kernels read only the lanes: no second copy of the weights or their scales (tests keep both, to
        // compare every path).
        let (values, scales) = if lanes.is_empty() || cfg!(test) {
            (values, scales)
        } else {
            (Vec::new(), Vec::new())
        };
        Q8Matrix {
            out,
            inp,
            values,
            scales,
            lanes,
            lane_scales,
            lane_offsets,
            narrow,
        }
    }

    /// `y = x · Wᵀ + b` for `x` of `rows × in` (row-major) and `b` of `out`; `y` is `rows × out`. The bias is added
    /// here, on the product's own buffer, rather than as a separate tensor operation with its own allocation.
    pub fn matmul_bias(&self, x: &[f32], bias: &[f32]) -> Vec<f32> {
        assert_eq!(bias.len(), self.out, "bias width");
        let mut y = self.matmul_with(x, Kernel::detect());
        for row in y.chunks_exact_mut(self.out) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
        y
    }

    /// `y = x · Wᵀ`, as [`Q8Matrix::matmul_bias`] without a bias.
    pub fn matmul(&self, x: &[f32]) -> Vec<f32> {
        self.matmul_with(x, Kernel::detect())
    }

    fn matmul_with(&self, x: &[f32], kernel: Kernel) -> Vec<f32> {
        use rayon::prelude::*;
        assert_eq!(x.len() % self.inp, 0, "input width");
        let rows = x.len() / self.inp;
        // Inside a SIMD frame the rounding is one instruction instead of a libm call; AVX-512 has its own code.
        let q = match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(simd) => simd.vectorize(avx512::Quantise(simd, x)),
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni(vnni) | Kernel::Amx(vnni) => {
                vnni.vectorize(avx512::Quantise(vnni.simd, x))
            }
            _ => kernel.vectorize(Quantise(x)),
        };
        let mut y = vec![0f32; rows * self.out];
        // The path by the product's rows, then by each call's: an AMX product's calls are single tiles, and a last
        // one too short for the tile unit goes to VNNI.
        let kernel = kernel.for_rows(rows);
        let per_call = kernel.rows_per_call(rows);
        let (call_in, call_out) = (per_call * self.inp, per_call * self.out);
        let one = |((xs, x_scales), out): ((&[u8], &[f32]), &mut [f32])| match kernel
            .for_rows(out.len() / self.out)
        {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(simd) => simd.vectorize(Tile {
                simd,
                m: self,
                xs,
                x_scales,
                out,
            }),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(simd) => simd.vectorize(Tile {
                simd: avx512::Zmm::from(simd),
                m: self,
                xs,
                x_scales,
                out,
            }),
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni(vnni) => vnni.vectorize(Tile {
                simd: vnni.zmm(),
                m: self,
                xs,
                x_scales,
                out,
            }),
            #[cfg(target_arch = "x86_64")]
            Kernel::Amx(vnni) => vnni.simd.vectorize(Tile {
                simd: amx::Amx(vnni.simd),
                m: self,
                xs,
                x_scales,
                out,
            }),
            Kernel::Scalar => self.tile_scalar(xs, x_scales, out),
        };
        if rows > per_call {
            q.values
                .par_chunks(call_in)
                .zip(q.scales.par_chunks(call_in / BLOCK))
                .zip(y.par_chunks_mut(call_out))
                .for_each(one);
        } else {
            q.values
                .chunks(call_in)
                .zip(q.scales.chunks(call_in / BLOCK))
                .zip(y.chunks_mut(call_out))
                .for_each(one);
        }
        y
    }

    /// One tile of token rows (`xs`: their quantised values, `scales`: their block scales) into `out`.
    fn tile_scalar(&self, xs: &[u8], scales: &[f32], out: &mut [f32]) {
        let blocks = self.inp / BLOCK;
        for (r, (x_row, x_scales)) in xs.chunks(self.inp).zip(scales.chunks(blocks)).enumerate() {
            for c in 0..self.out {
                let w_row = &self.values[c * self.inp..(c + 1) * self.inp];
                let mut sum = 0f32;
                for (b, (xa, wa)) in x_row.chunks(BLOCK).zip(w_row.chunks(BLOCK)).enumerate() {
                    let dot: i32 = xa
                        .iter()
                        .zip(wa)
                        .map(|(&a, &w)| (i32::from(a) - 128) * i32::from(w))
                        .sum();
                    sum += x_scales[b] * (self.scales[c * blocks + b] * dot as f32);
                }
                out[r * self.out + c] = sum;
            }
        }
    }
}

/// The SIMD product, with one output column per lane: a step holds 4 inputs of 16 columns ([`Q8Matrix::lanes`]),
/// and each token row's 4 inputs are broadcast to every lane. A block's 8 steps add up in int32 lanes, one per
/// column, so the float work (convert, scale, accumulate) is once per block for 16 columns, and no horizontal sums
/// are needed. (One run of inputs per lane, the earlier layout, converted every 64 byte products and ended each
/// column with a reduction.) Written once over [`Columns16`](lanes::Columns16), the few register operations it
/// needs; AVX-512 holds 16 columns in one register, AVX2 in two.
#[cfg(target_arch = "x86_64")]
mod lanes {
    use super::{Q8Matrix, BLOCK, LANES, STEP};
    use pulp::bytemuck::cast_slice;

    /// Bytes of one step of one group: 16 lanes of 4.
    pub(super) const STEP_BYTES: usize = LANES * STEP;

    /// Sixteen lanes of int32 or f32, in one register or two.
    pub(super) trait Columns16: Copy {
        type Int: Copy;
        type Float: Copy;
        /// [`Self::dot_add`] is one instruction, so a block's products go straight into the 32-bit sums; adding
        /// pairs in 16 bits first (`NARROW` in [`columns`]) would only add work.
        const ONE_INSTRUCTION_DOT: bool = false;
        fn zero_int(self) -> Self::Int;
        fn zero_float(self) -> Self::Float;
        /// 64 bytes as the lanes: a weight step, or a block's 16 int32 offsets.
        fn step(self, bytes: &[u8; STEP_BYTES]) -> Self::Int;
        /// One row's 4 input bytes in every lane.
        fn splat(self, word: u32) -> Self::Int;
        /// Per 16-bit lane, the sum of its two byte products (`x` unsigned, `w` signed), saturating
        /// (`vpmaddubsw`): (x + 128) · w ≤ 255 · 63 for the weights here, so a pair stays under 32,767.
        fn pairs(self, x: Self::Int, w: Self::Int) -> Self::Int;
        /// 16-bit lane sums (wrapping; the callers keep them in range).
        fn add_pairs(self, a: Self::Int, b: Self::Int) -> Self::Int;
        /// `acc` plus, per 32-bit lane, the sum of its two 16-bit lanes (`vpmaddwd` against ones).
        fn widen_add(self, acc: Self::Int, pairs: Self::Int) -> Self::Int;
        /// `acc` plus, per lane, the sum of its 4 byte products.
        #[inline(always)]
        fn dot_add(self, acc: Self::Int, x: Self::Int, w: Self::Int) -> Self::Int {
            self.widen_add(acc, self.pairs(x, w))
        }
        /// A block's 16 weight scales in the lanes.
        fn floats(self, v: &[f32; LANES]) -> Self::Float;
        /// `acc + sums · x_scale · w_scales`.
        fn scale_add(
            self,
            acc: Self::Float,
            sums: Self::Int,
            x_scale: f32,
            w_scales: Self::Float,
        ) -> Self::Float;
        fn to_array(self, v: Self::Float) -> [f32; LANES];
    }

    /// [`panel`] for the matrix's weight width, a constant, in tiles of up to R rows (1..=4) and G groups.
    #[inline(always)]
    pub(super) fn dispatch<S: Columns16, const R: usize, const G: usize>(
        simd: S,
        m: &Q8Matrix,
        xs: &[u8],
        x_scales: &[f32],
        out: &mut [f32],
    ) {
        if m.narrow && !S::ONE_INSTRUCTION_DOT {
            panel::<S, R, G, true>(simd, m, xs, x_scales, out);
        } else {
            panel::<S, R, G, false>(simd, m, xs, x_scales, out);
        }
    }

    /// Weight bytes per panel of column groups in [`panel`]: a panel's weights stay in the L2 cache (512 KiB on AMD
    /// Zen 3, more on later CPUs) while every tile of rows is run against them.
    const PANEL_BYTES: usize = 64 << 10;

    /// The call's rows against every column: the columns in panels of [`PANEL_BYTES`] of weights, and for each panel
    /// the rows in tiles of up to R. A panel's weights come from memory once per call, and from the
    /// cache for its following tiles; with the rows as the outer loop, each tile read the whole matrix again.
    #[inline(always)]
    fn panel<S: Columns16, const R: usize, const G: usize, const NARROW: bool>(
        simd: S,
        m: &Q8Matrix,
        xs: &[u8],
        x_scales: &[f32],
        out: &mut [f32],
    ) {
        let blocks = m.inp / BLOCK;
        let rows = x_scales.len() / blocks;
        let groups = m.out.div_ceil(LANES);
        let weights: &[u8] = cast_slice(&m.lanes);
        debug_assert_eq!(weights.len(), groups * m.inp * LANES);
        let per_panel = (PANEL_BYTES / (LANES * m.inp)).max(1).next_multiple_of(G);
        for first in (0..groups).step_by(per_panel) {
            let panel = first..groups.min(first + per_panel);
            let mut t = 0;
            while t < rows {
                let n = tile_rows(rows - t, R, S::ONE_INSTRUCTION_DOT);
                let xs = &xs[t * m.inp..(t + n) * m.inp];
                let x_scales = &x_scales[t * blocks..(t + n) * blocks];
                let out = &mut out[t * m.out..(t + n) * m.out];
                let panel = panel.clone();
                match n {
                    4 => tile::<S, 4, G, NARROW>(simd, m, xs, x_scales, weights, out, panel),
                    3 => tile::<S, 3, G, NARROW>(simd, m, xs, x_scales, weights, out, panel),
                    2 => tile::<S, 2, G, NARROW>(simd, m, xs, x_scales, weights, out, panel),
                    1 => tile::<S, 1, G, NARROW>(simd, m, xs, x_scales, weights, out, panel),
                    n => unreachable!("a tile of {n} rows"),
                }
                t += n;
            }
        }
    }

    /// Rows in the next tile when `left` rows remain and a tile holds up to `r`: `r`, except that with `split`
    /// 5 rows left of 4 go as 3 and 2, never leaving a tile of 1. The lane kernels split where a step's products
    /// are one instruction (VNNI): there one row reads each weight step for a single product, where 3 and 2 rows
    /// share it. Without VNNI the 2-row tile is the slower half (4-bit weights on plain AVX-512), so tiles stay
    /// full (`kefu-bench products` at 5, 9 and 13 rows, bench/RESULTS.md).
    pub(super) fn tile_rows(left: usize, r: usize, split: bool) -> usize {
        if split && left == r + 1 && r > 2 {
            r - 1
        } else {
            left.min(r)
        }
    }

    /// The tile's R token rows (a constant, so that the compiler unrolls the loops over rows and groups and keeps
    /// the accumulators in registers) against the panel's column groups, G of 16 at a time while G fit.
    #[inline(always)]
    fn tile<S: Columns16, const R: usize, const G: usize, const NARROW: bool>(
        simd: S,
        m: &Q8Matrix,
        xs: &[u8],
        x_scales: &[f32],
        weights: &[u8],
        out: &mut [f32],
        panel: std::ops::Range<usize>,
    ) {
        let mut g = panel.start;
        while g + G <= panel.end {
            let sums = columns::<S, R, G, NARROW>(simd, m, xs, x_scales, weights, g);
            store(simd, m, out, g, sums);
            g += G;
        }
        while g < panel.end {
            let sums = columns::<S, R, 1, NARROW>(simd, m, xs, x_scales, weights, g);
            store(simd, m, out, g, sums);
            g += 1;
        }
    }

    /// R rows against the G column groups from `g`: `[row][group]` sums. With
    /// `NARROW` (weights within ±8), a block's pair sums add up in the 16-bit lanes and are widened once per block
    /// rather than once per step: 8 steps · 255 · 8 · 2 = 32,640 fits, and the integer sums are the same.
    #[inline(always)]
    fn columns<S: Columns16, const R: usize, const G: usize, const NARROW: bool>(
        simd: S,
        m: &Q8Matrix,
        xs: &[u8],
        x_scales: &[f32],
        weights: &[u8],
        g: usize,
    ) -> [[S::Float; G]; R] {
        let blocks = m.inp / BLOCK;
        // Each group's blocks (of weights, offsets and scales) and each row's (of inputs and their scales), every
        // slice checked once to hold `blocks`, so that the loop below indexes them without bounds checks.
        let group = |i: usize| (g + i) * blocks..(g + i + 1) * blocks;
        let w_blocks: [&[[[u8; STEP_BYTES]; BLOCK / STEP]]; G] = std::array::from_fn(|i| {
            let all: &[[u8; BLOCK * LANES]] = weights.as_chunks().0;
            cast_slice(&all[group(i)])
        });
        let offsets: [&[[i32; LANES]]; G] =
            std::array::from_fn(|i| &m.lane_offsets.as_chunks().0[group(i)]);
        let w_scales: [&[[f32; LANES]]; G] =
            std::array::from_fn(|i| &m.lane_scales.as_chunks().0[group(i)]);
        let x_blocks: [&[[u32; BLOCK / STEP]]; R] = std::array::from_fn(|t| {
            cast_slice(&xs.as_chunks::<BLOCK>().0[t * blocks..(t + 1) * blocks])
        });
        let x_scales: [&[f32]; R] =
            std::array::from_fn(|t| &x_scales[t * blocks..(t + 1) * blocks]);
        for i in 0..G {
            assert!(
                w_blocks[i].len() == blocks
                    && offsets[i].len() == blocks
                    && w_scales[i].len() == blocks
            );
        }
        for t in 0..R {
            assert!(x_blocks[t].len() == blocks && x_scales[t].len() == blocks);
        }
        let mut acc = [[simd.zero_float(); G]; R];
        for b in 0..blocks {
            // Each block's sums start from −128 · Σ w, so they end as the exact dot products of the unshifted
            // activations: in 32 bits, or, with NARROW, at the widening.
            // (Loops, not `array::from_fn`: a closure there may not be inlined into the SIMD frame.)
            let mut offset = [simd.zero_int(); G];
            for i in 0..G {
                offset[i] = simd.step(&pulp::bytemuck::cast(offsets[i][b]));
            }
            let mut sums = if NARROW {
                [[simd.zero_int(); G]; R]
            } else {
                [offset; R]
            };
            for s in 0..BLOCK / STEP {
                let mut w = [simd.zero_int(); G];
                for i in 0..G {
                    w[i] = simd.step(&w_blocks[i][b][s]);
                }
                for t in 0..R {
                    let x = simd.splat(x_blocks[t][b][s]);
                    for i in 0..G {
                        sums[t][i] = if NARROW {
                            simd.add_pairs(sums[t][i], simd.pairs(x, w[i]))
                        } else {
                            simd.dot_add(sums[t][i], x, w[i])
                        };
                    }
                }
            }
            if NARROW {
                for row in &mut sums {
                    for (v, &o) in row.iter_mut().zip(&offset) {
                        *v = simd.widen_add(o, *v);
                    }
                }
            }
            // Each group's scales are read once per block, not once per row.
            let mut ws = [simd.zero_float(); G];
            for i in 0..G {
                ws[i] = simd.floats(&w_scales[i][b]);
            }
            for t in 0..R {
                let x_scale = x_scales[t][b];
                for i in 0..G {
                    acc[t][i] = simd.scale_add(acc[t][i], sums[t][i], x_scale, ws[i]);
                }
            }
        }
        acc
    }

    /// Writes the groups' sums from column `g · 16` on (the padding columns of the last group dropped).
    #[inline(always)]
    fn store<S: Columns16, const R: usize, const G: usize>(
        simd: S,
        m: &Q8Matrix,
        out: &mut [f32],
        g: usize,
        sums: [[S::Float; G]; R],
    ) {
        for (t, row) in sums.iter().enumerate() {
            for (i, &v) in row.iter().enumerate() {
                let c = (g + i) * LANES;
                let n = LANES.min(m.out - c);
                out[t * m.out + c..t * m.out + c + n].copy_from_slice(&simd.to_array(v)[..n]);
            }
        }
    }
}

/// [`lanes`] with AVX2: 16 columns in two registers; tiles of two token rows, one column group at a time (the
/// sixteen 256-bit registers hold 4 integer and 4 float accumulators, the step's weights and a row's inputs).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::lanes::{Columns16, STEP_BYTES};
    use super::{Q8Matrix, LANES};
    use pulp::bytemuck::cast;
    use pulp::x86::V3;
    use std::arch::x86_64::{__m256, __m256i};

    /// Token rows per tile.
    pub(super) const TILE: usize = 2;

    impl Columns16 for V3 {
        type Int = [__m256i; 2];
        type Float = [__m256; 2];

        #[inline(always)]
        fn zero_int(self) -> Self::Int {
            [self.avx._mm256_setzero_si256(); 2]
        }

        #[inline(always)]
        fn zero_float(self) -> Self::Float {
            [self.avx._mm256_setzero_ps(); 2]
        }

        #[inline(always)]
        fn step(self, bytes: &[u8; STEP_BYTES]) -> Self::Int {
            cast(*bytes)
        }

        #[inline(always)]
        fn splat(self, word: u32) -> Self::Int {
            [self.avx._mm256_set1_epi32(word as i32); 2]
        }

        // Both halves written out: `[0, 1].map(…)` is not inlined into the AVX2 context and runs 4x slower.
        #[inline(always)]
        fn pairs(self, x: Self::Int, w: Self::Int) -> Self::Int {
            let half = |h: usize| self.avx2._mm256_maddubs_epi16(x[h], w[h]);
            [half(0), half(1)]
        }

        #[inline(always)]
        fn add_pairs(self, a: Self::Int, b: Self::Int) -> Self::Int {
            let half = |h: usize| self.avx2._mm256_add_epi16(a[h], b[h]);
            [half(0), half(1)]
        }

        #[inline(always)]
        fn widen_add(self, acc: Self::Int, pairs: Self::Int) -> Self::Int {
            let ones = self.avx._mm256_set1_epi16(1);
            let half = |h: usize| {
                self.avx2
                    ._mm256_add_epi32(acc[h], self.avx2._mm256_madd_epi16(pairs[h], ones))
            };
            [half(0), half(1)]
        }

        #[inline(always)]
        fn floats(self, v: &[f32; LANES]) -> Self::Float {
            cast(*v)
        }

        #[inline(always)]
        fn scale_add(
            self,
            acc: Self::Float,
            sums: Self::Int,
            x_scale: f32,
            ws: Self::Float,
        ) -> Self::Float {
            let x_scale = self.avx._mm256_set1_ps(x_scale);
            let half = |h: usize| {
                let scale = self.avx._mm256_mul_ps(x_scale, ws[h]);
                self.fma
                    ._mm256_fmadd_ps(self.avx._mm256_cvtepi32_ps(sums[h]), scale, acc[h])
            };
            [half(0), half(1)]
        }

        #[inline(always)]
        fn to_array(self, v: Self::Float) -> [f32; LANES] {
            cast(v)
        }
    }

    impl super::TileProduct for V3 {
        /// Any number of token rows, in tiles of [`TILE`], one column group at a time.
        #[inline(always)]
        fn tile(self, m: &Q8Matrix, xs: &[u8], x_scales: &[f32], out: &mut [f32]) {
            super::lanes::dispatch::<V3, TILE, 1>(self, m, xs, x_scales, out);
        }
    }
}

/// [`lanes`] with AVX-512 F/BW/DQ/VL: 16 columns in one register; tiles of four token rows against three column
/// groups at a time (12 integer and 12 float accumulators). Where the CPU also has AVX512-VNNI (AMD Zen 4 on,
/// Intel Cascade Lake on), a step's 4 byte products per lane and their sum are one `vpdpbusd` instead of
/// `vpmaddubsw`, `vpmaddwd` and an add; the integer sums, and so the results, are the same bit for bit (tested).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::lanes::{Columns16, STEP_BYTES};
    use super::{Q8Matrix, Quantised, BLOCK, LANES};
    use pulp::bytemuck::cast;
    use pulp::x86::V4;
    use std::arch::x86_64::{__m512, __m512i};

    pulp::simd_type! {
        /// [`V4`]'s features and AVX512-VNNI: a frame in which `vpdpbusd` inlines.
        pub struct V4Vnni {
            pub sse: "sse",
            pub sse2: "sse2",
            pub fxsr: "fxsr",
            pub sse3: "sse3",
            pub ssse3: "ssse3",
            pub sse4_1: "sse4.1",
            pub sse4_2: "sse4.2",
            pub popcnt: "popcnt",
            pub avx: "avx",
            pub avx2: "avx2",
            pub bmi1: "bmi1",
            pub bmi2: "bmi2",
            pub fma: "fma",
            pub lzcnt: "lzcnt",
            pub avx512f: "avx512f",
            pub avx512bw: "avx512bw",
            pub avx512cd: "avx512cd",
            pub avx512dq: "avx512dq",
            pub avx512vl: "avx512vl",
            pub avx512vnni: "avx512vnni",
        }
    }

    /// Proof that the CPU has AVX-512 and AVX512-VNNI (only [`Vnni::try_new`] makes one).
    #[derive(Clone, Copy)]
    pub(crate) struct Vnni {
        pub(super) simd: V4,
        features: V4Vnni,
    }

    impl std::fmt::Debug for Vnni {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("AVX-512 with VNNI")
        }
    }

    impl Vnni {
        pub(crate) fn try_new() -> Option<Vnni> {
            Some(Vnni {
                simd: V4::try_new()?,
                features: V4Vnni::try_new()?,
            })
        }

        /// Runs `f` with AVX-512 and VNNI enabled (see [`super::Kernel::vectorize`]).
        #[inline(always)]
        pub(crate) fn vectorize<F: pulp::NullaryFnOnce>(self, f: F) -> F::Output {
            self.features.vectorize(f)
        }

        pub(super) fn zmm(self) -> Zmm<true> {
            Zmm(self.simd)
        }
    }

    /// AVX-512's registers as [`Columns16`]; with `VNNI` (made only by [`Vnni::zmm`]), `dot_add` is `vpdpbusd`.
    #[derive(Clone, Copy)]
    pub(super) struct Zmm<const VNNI: bool>(V4);

    impl From<V4> for Zmm<false> {
        fn from(simd: V4) -> Self {
            Zmm(simd)
        }
    }

    /// Token rows per tile.
    pub(super) const TILE: usize = 4;

    /// [`super::quantise_rows`] with 512-bit registers: a block is two registers, its maximum one reduction, and
    /// the rounding is the CPU's conversion in its default mode (to nearest, ties to even), so the result is the
    /// scalar function's bit for bit (tested).
    pub(super) struct Quantise<'a>(pub V4, pub &'a [f32]);

    impl pulp::NullaryFnOnce for Quantise<'_> {
        type Output = Quantised;

        #[inline(always)]
        fn call(self) -> Quantised {
            let Quantise(simd, x) = self;
            let f = simd.avx512f;
            let mut values = vec![0u8; x.len()];
            let mut scales = vec![0f32; x.len() / BLOCK];
            let shift = f._mm512_set1_epi32(128);
            for ((block, out), scale) in x
                .as_chunks::<BLOCK>()
                .0
                .iter()
                .zip(values.as_chunks_mut::<BLOCK>().0)
                .zip(scales.iter_mut())
            {
                let (lo, hi) = block.split_at(16);
                let lo: __m512 = cast(<[f32; 16]>::try_from(lo).expect("16 lanes"));
                let hi: __m512 = cast(<[f32; 16]>::try_from(hi).expect("16 lanes"));
                let amax = f._mm512_reduce_max_ps(
                    f._mm512_max_ps(f._mm512_abs_ps(lo), f._mm512_abs_ps(hi)),
                );
                let d = amax / 127.0;
                let inv = f._mm512_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
                for (half, dst) in [lo, hi].into_iter().zip(out.as_chunks_mut::<16>().0) {
                    let q = f._mm512_cvtps_epi32(f._mm512_mul_ps(half, inv));
                    // 1..=255 after the shift; the narrowing keeps the low byte.
                    *dst = cast(f._mm512_cvtepi32_epi8(f._mm512_add_epi32(q, shift)));
                }
                *scale = d;
            }
            Quantised { values, scales }
        }
    }

    impl<const VNNI: bool> Columns16 for Zmm<VNNI> {
        type Int = __m512i;
        type Float = __m512;
        const ONE_INSTRUCTION_DOT: bool = VNNI;

        #[inline(always)]
        fn zero_int(self) -> __m512i {
            self.0.avx512f._mm512_setzero_si512()
        }

        #[inline(always)]
        fn zero_float(self) -> __m512 {
            self.0.avx512f._mm512_setzero_ps()
        }

        #[inline(always)]
        fn step(self, bytes: &[u8; STEP_BYTES]) -> __m512i {
            cast(*bytes)
        }

        #[inline(always)]
        fn splat(self, word: u32) -> __m512i {
            self.0.avx512f._mm512_set1_epi32(word as i32)
        }

        #[inline(always)]
        fn pairs(self, x: __m512i, w: __m512i) -> __m512i {
            self.0.avx512bw._mm512_maddubs_epi16(x, w)
        }

        #[inline(always)]
        fn add_pairs(self, a: __m512i, b: __m512i) -> __m512i {
            self.0.avx512bw._mm512_add_epi16(a, b)
        }

        #[inline(always)]
        fn widen_add(self, acc: __m512i, pairs: __m512i) -> __m512i {
            let ones = self.0.avx512f._mm512_set1_epi16(1);
            self.0
                .avx512f
                ._mm512_add_epi32(acc, self.0.avx512bw._mm512_madd_epi16(pairs, ones))
        }

        #[inline(always)]
        fn dot_add(self, acc: __m512i, x: __m512i, w: __m512i) -> __m512i {
            if VNNI {
                // SAFETY: a `Zmm<true>` comes only from a `Vnni`, whose construction checked that the CPU has
                // AVX512-VNNI, and it runs inside that `Vnni`'s frame (`Kernel::Vnni`). The intrinsic only reads
                // and returns registers.
                #[allow(unsafe_code)]
                unsafe {
                    std::arch::x86_64::_mm512_dpbusd_epi32(acc, x, w)
                }
            } else {
                self.widen_add(acc, self.pairs(x, w))
            }
        }

        #[inline(always)]
        fn floats(self, v: &[f32; LANES]) -> __m512 {
            cast(*v)
        }

        #[inline(always)]
        fn scale_add(self, acc: __m512, sums: __m512i, x_scale: f32, w_scales: __m512) -> __m512 {
            let f = self.0.avx512f;
            let scale = f._mm512_mul_ps(f._mm512_set1_ps(x_scale), w_scales);
            f._mm512_fmadd_ps(f._mm512_cvtepi32_ps(sums), scale, acc)
        }

        #[inline(always)]
        fn to_array(self, v: __m512) -> [f32; LANES] {
            cast(v)
        }
    }

    impl<const VNNI: bool> super::TileProduct for Zmm<VNNI> {
        /// Any number of token rows, in tiles of [`TILE`], three column groups at a time.
        #[inline(always)]
        fn tile(self, m: &Q8Matrix, xs: &[u8], x_scales: &[f32], out: &mut [f32]) {
            super::lanes::dispatch::<Zmm<VNNI>, TILE, 3>(self, m, xs, x_scales, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::speed::{activations, random_q4, weights};
    use super::*;

    /// Every path the CPU has against the product, in f64, of the values each side was rounded to (`w`: the
    /// weights as the matrix holds them, `[out, in]`).
    fn check_paths(m: &Q8Matrix, w: &[f32], x: &[f32]) {
        let (out, inp) = (m.out, m.inp);
        let rows = x.len() / inp;
        let q = quantise_rows(x);
        let xr: Vec<f64> = q
            .values
            .iter()
            .enumerate()
            .map(|(i, &v)| (f64::from(v) - 128.0) * f64::from(q.scales[i / BLOCK]))
            .collect();
        let kernels = Kernel::available();
        let ys: Vec<Vec<f32>> = kernels
            .iter()
            .map(|&kernel| m.matmul_with(x, kernel))
            .collect();
        // AMX and VNNI do AVX-512's float work in the same order on the same integer sums: the same bits.
        #[cfg(target_arch = "x86_64")]
        if let Kernel::Amx(_) | Kernel::Vnni(_) = kernels[0] {
            let plain = kernels
                .iter()
                .position(|k| matches!(k, Kernel::Avx512(_)))
                .expect("the plain AVX-512 path");
            for (kernel, y) in kernels.iter().zip(&ys).take(plain) {
                assert_eq!(y, &ys[plain], "rows {rows}: {kernel:?} against AVX-512");
            }
        }
        for r in 0..rows {
            for c in 0..out {
                let want: f64 = (0..inp)
                    .map(|k| xr[r * inp + k] * f64::from(w[c * inp + k]))
                    .sum();
                for got in ys.iter().map(|y| y[r * out + c]) {
                    assert!(
                        (f64::from(got) - want).abs() < 1e-3 * (1.0 + want.abs()),
                        "rows {rows} ({r}, {c}): {got} vs {want}"
                    );
                }
            }
        }
        // The bias goes to every row's columns in order.
        let bias: Vec<f32> = (0..out).map(|c| c as f32 - 10.5).collect();
        let with_bias = m.matmul_bias(x, &bias);
        for (i, (got, y)) in with_bias.iter().zip(&ys[0]).enumerate() {
            assert_eq!(*got, y + bias[i % out], "element {i}");
        }
    }

    /// The weights as the matrix holds them (value · block scale), `[out, in]`.
    fn held(m: &Q8Matrix) -> Vec<f32> {
        m.values
            .iter()
            .enumerate()
            .map(|(i, &v)| f32::from(v) * m.scales[i / BLOCK])
            .collect()
    }

    #[test]
    fn with_vnni_a_call_never_ends_in_a_one_row_tile_that_a_wider_tile_could_share() {
        let tiles = |mut left: usize, r: usize, split: bool| {
            let mut sizes = Vec::new();
            while left > 0 {
                let n = lanes::tile_rows(left, r, split);
                sizes.push(n);
                left -= n;
            }
            sizes
        };
        assert_eq!(tiles(1, 4, true), [1]);
        assert_eq!(tiles(4, 4, true), [4]);
        assert_eq!(tiles(5, 4, true), [3, 2]);
        assert_eq!(tiles(6, 4, true), [4, 2]);
        assert_eq!(tiles(9, 4, true), [4, 3, 2]);
        assert_eq!(tiles(13, 4, true), [4, 4, 3, 2]);
        // AVX2's tiles of 2: 3 rows cannot split into two tiles wider than one row.
        assert_eq!(tiles(3, 2, true), [2, 1]);
        // Without VNNI tiles stay full.
        assert_eq!(tiles(9, 4, false), [4, 4, 1]);
    }

    #[test]
    fn every_kernel_matches_the_product_of_the_rounded_values() {
        // An odd and an even number of blocks per row; tiles full and partial on every path; column groups taken
        // three at a time and one at a time; the last shape's 41 groups in two panels (32 or 33 groups, then the rest).
        for (out, inp, rows) in [
            (37, 96, 1),
            (37, 96, 9),
            (37, 96, 17),
            (29, 128, 3),
            (29, 128, 12),
            (53, 64, 70),
            (645, 128, 9),
        ] {
            let x = activations(rows, inp);
            // 4-bit weights, decoded independently of the matrix.
            let blocks = random_q4(out, inp, 7);
            let mut w = vec![0f32; out * inp];
            crate::bert::dequantize_q4_0(&blocks, &mut w);
            check_paths(&Q8Matrix::from_q4_0(&blocks, out, inp), &w, &x);
            // 7-bit weights from f32.
            let f = weights(out, inp);
            let m = Q8Matrix::from_f32(&f, out, inp);
            let w = held(&m);
            for (a, b) in f.iter().zip(&w) {
                assert!(
                    (a - b).abs() <= 0.5 * 1.65 / 63.0 + 1e-6,
                    "{a} rounded to {b}"
                );
            }
            check_paths(&m, &w, &x);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn with_amx_products_of_9_to_32_rows_run_on_the_tiles_and_the_rest_on_vnni() {
        // Only the choice of path is asked here; nothing runs on the tile unit, so any AVX512-VNNI host checks it.
        let Some(vnni) = avx512::Vnni::try_new() else {
            return;
        };
        let amx = Kernel::Amx(vnni);
        let vnni_rows = (1..amx::MIN_ROWS).chain([amx::MAX_ROWS + 1, 70, 500]);
        for rows in vnni_rows {
            assert!(matches!(amx.for_rows(rows), Kernel::Vnni(_)), "{rows} rows");
        }
        for rows in amx::MIN_ROWS..=amx::MAX_ROWS {
            assert!(matches!(amx.for_rows(rows), Kernel::Amx(_)), "{rows} rows");
        }
        // An AMX product's calls are single tiles, which is all the tile unit takes.
        assert_eq!(amx.rows_per_call(amx::MAX_ROWS), amx::TILE);
    }

    /// The lane code at AVX-512's tile shape (4 rows by 3 groups), run with AVX2's instructions: hosts without
    /// AVX-512 still test the row and group arithmetic that path takes, against the AVX2 path's own results.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_lane_code_at_avx512s_tile_shape_matches_avx2() {
        #[derive(Clone, Copy)]
        struct Wide(pulp::x86::V3);
        impl TileProduct for Wide {
            #[inline(always)]
            fn tile(self, m: &Q8Matrix, xs: &[u8], x_scales: &[f32], out: &mut [f32]) {
                lanes::dispatch::<_, 4, 3>(self.0, m, xs, x_scales, out);
            }
        }
        let Some(simd) = pulp::x86::V3::try_new() else {
            return;
        };
        for (out, inp, rows) in [(37, 96, 7), (53, 64, 12), (645, 128, 9)] {
            let x = activations(rows, inp);
            let f = weights(out, inp);
            for m in [
                Q8Matrix::from_q4_0(&random_q4(out, inp, 11), out, inp),
                Q8Matrix::from_f32(&f, out, inp),
            ] {
                let q = simd.vectorize(Quantise(&x));
                let mut wide = vec![0f32; rows * out];
                simd.vectorize(Tile {
                    simd: Wide(simd),
                    m: &m,
                    xs: &q.values,
                    x_scales: &q.scales,
                    out: &mut wide,
                });
                assert_eq!(
                    wide,
                    m.matmul_with(&x, Kernel::Avx2(simd)),
                    "{out}x{inp}, {rows} rows"
                );
            }
        }
    }

    #[test]
    fn seven_bit_weights_never_saturate_the_byte_products() {
        // The largest products there are: every activation at its block maximum (255 after the shift) against
        // weights of ±63; a saturating 16-bit pair sum would cap them.
        let (out, inp) = (4, 64);
        let f: Vec<f32> = (0..out * inp)
            .map(|i| if (i / inp) % 2 == 0 { 2.0 } else { -2.0 })
            .collect();
        let m = Q8Matrix::from_f32(&f, out, inp);
        assert!(m.values.iter().all(|v| v.abs() == 63));
        let x = vec![1.5f32; 9 * inp];
        let w = held(&m);
        check_paths(&m, &w, &x);
        let y = m.matmul_with(&x, Kernel::detect());
        assert!((y[0] - 1.5 * 2.0 * inp as f32).abs() < 1e-3, "{}", y[0]);
        assert!((y[1] + 1.5 * 2.0 * inp as f32).abs() < 1e-3, "{}", y[1]);
    }

    #[test]
    fn four_bit_weights_never_overflow_a_blocks_16_bit_sums() {
        // The largest 4-bit products: activations at their block maximum (255 after the shift) against weights of
        // -8 (nibble 0) and +7 (nibble 15), summed over whole blocks in 16 bits.
        let (out, inp) = (4, 64);
        let mut blocks = Vec::new();
        for r in 0..out {
            for _ in 0..inp / BLOCK {
                blocks.extend_from_slice(&0x3C00u16.to_le_bytes()); // scale 1.0 in fp16
                blocks.extend_from_slice(&[if r % 2 == 0 { 0x00 } else { 0xFF }; 16]);
            }
        }
        let m = Q8Matrix::from_q4_0(&blocks, out, inp);
        assert!(m.narrow);
        let x = vec![1.5f32; 9 * inp];
        let w = held(&m);
        check_paths(&m, &w, &x);
        let y = m.matmul_with(&x, Kernel::detect());
        assert!((y[0] + 1.5 * 8.0 * inp as f32).abs() < 1e-3, "{}", y[0]);
        assert!((y[1] - 1.5 * 7.0 * inp as f32).abs() < 1e-3, "{}", y[1]);
        assert!(!Q8Matrix::from_f32(&[1.0; 64], 2, 32).narrow);
    }

    #[test]
    fn every_path_rounds_activations_bit_for_bit_alike() {
        // Ties (x.5 after scaling by 1), negative values, a zero block and a block of tiny values.
        let mut x: Vec<f32> = (0..32 * 40)
            .map(|i| ((i * 7919 % 2001) as f32 - 1000.0) / 37.0)
            .collect();
        x[0] = 127.0;
        for (i, v) in [2.5, -3.5, 0.5, -0.5, 126.5, -126.5]
            .into_iter()
            .enumerate()
        {
            x[1 + i] = v;
        }
        x[32..64].fill(0.0);
        x[64..96].iter_mut().for_each(|v| *v *= 1e-30);
        let want = quantise_rows(&x);
        // The rounding written plainly, with a float's saturating `as u8`.
        for (block, (values, &d)) in x
            .chunks(BLOCK)
            .zip(want.values.chunks(BLOCK).zip(&want.scales))
        {
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            let plain: Vec<u8> = block
                .iter()
                .map(|v| ((v * inv).round_ties_even() + 128.0) as u8)
                .collect();
            assert_eq!(values, plain);
        }
        // The shared code inside every SIMD frame, and AVX-512's own.
        for kernel in Kernel::available() {
            let got = kernel.vectorize(Quantise(&x));
            assert_eq!(got.values, want.values, "{kernel:?}");
            assert_eq!(got.scales, want.scales, "{kernel:?}");
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V4::try_new() {
            let got = simd.vectorize(avx512::Quantise(simd, &x));
            assert_eq!(got.values, want.values);
            assert_eq!(got.scales, want.scales);
        }
    }

    #[test]
    fn int8_rounding_keeps_the_block_maximum_and_rounds_ties_to_even() {
        let mut v = vec![0f32; 32];
        v[0] = 127.0;
        v[1] = 2.5;
        v[2] = -3.5;
        let q = quantise_rows(&v);
        assert_eq!(q.scales[0], 1.0);
        assert_eq!(q.values[0], 255);
        assert_eq!(q.values[1], 130);
        assert_eq!(q.values[2], 124);
        let zeros = quantise_rows(&[0f32; 32]);
        assert!(zeros.values.iter().all(|&v| v == 128) && zeros.scales[0] == 0.0);
    }
}
