//! `x · Wᵀ` for the 4-bit e5 weights with int8 arithmetic, as the reference engine computes it.
//!
//! Each 32-value block of a weight row keeps its 4-bit values (−8..7) as int8 with one f32 scale; each 32-value
//! block of an activation row is rounded to int8 with its own scale (max |x| / 127, ties to even) just before the
//! product. A block's dot product is then exact in integers, and the output is Σ_blocks (scale_x · scale_w · dot).
//!
//! candle's `QMatMul` runs the same arithmetic, but one (row, column) pair at a time, re-reading and re-expanding
//! every weight block for each token row; on the short inputs an encoder sees (a dozen tokens) that made it
//! barely faster than expanding the weights to f32. Here a weight block is loaded once and used for four token
//! rows, and the activation rows are quantised once per projection. The AVX2 kernel (through `pulp`, which checks
//! the CPU at run time and keeps the intrinsics safe to call) uses the unsigned-by-signed byte product
//! (`vpmaddubsw`) on `x + 128` and takes back `128 · Σ w` per block in integers (precomputed at load); other CPUs
//! take the scalar loop. Measured in bench/RESULTS.md (`kefu-bench embed`, `kefu-bench nlu`).

/// A `[out, in]` weight matrix in int8 blocks of 32.
pub(crate) struct Q8Matrix {
    out: usize,
    inp: usize,
    /// `out × in` values, row-major.
    values: Vec<i8>,
    /// `out × in / 32` block scales.
    scales: Vec<f32>,
    /// `out × in / 32`: 16 · Σ values of the block. The kernel multiplies `x + 128`; taking this from each of the
    /// eight int32 lanes a block's product ends in takes back exactly 128 · Σ w.
    lane_offsets: Vec<i32>,
}

const BLOCK: usize = 32;
/// Token rows handled together per weight block.
const TILE: usize = 4;
// The AVX2 kernel's dispatch covers tiles of 1..=4 rows.
const _: () = assert!(TILE == 4);

/// Activation rows rounded to int8 per block and shifted to unsigned (`x + 128`), with their block scales.
struct Quantised {
    values: Vec<u8>,
    scales: Vec<f32>,
}

struct Quantise<'a>(&'a [f32]);

impl pulp::NullaryFnOnce for Quantise<'_> {
    type Output = Quantised;

    #[inline(always)]
    fn call(self) -> Quantised {
        quantise_rows(self.0)
    }
}

#[inline(always)]
fn quantise_rows(x: &[f32]) -> Quantised {
    let mut values = vec![0u8; x.len()];
    let mut scales = vec![0f32; x.len() / BLOCK];
    for ((block, out), scale) in x
        .chunks_exact(BLOCK)
        .zip(values.chunks_exact_mut(BLOCK))
        .zip(scales.iter_mut())
    {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        for (o, v) in out.iter_mut().zip(block) {
            // In −127..=127 by construction; the shift makes it 1..=255.
            *o = ((*v * inv).round_ties_even() as i32 + 128) as u8;
        }
        *scale = d;
    }
    Quantised { values, scales }
}

impl Q8Matrix {
    /// From Q4_0 rows (see [`crate::bert::q4_0_block`]).
    pub fn from_q4_0(blocks: &[u8], out: usize, inp: usize) -> Q8Matrix {
        assert!(inp.is_multiple_of(BLOCK) && blocks.len() == out * inp / BLOCK * 18);
        let n = out * inp / BLOCK;
        let mut values = Vec::with_capacity(out * inp);
        let mut scales = Vec::with_capacity(n);
        let mut lane_offsets = Vec::with_capacity(n);
        for block in blocks.chunks_exact(18) {
            let (d, v) = crate::bert::q4_0_block(block);
            values.extend_from_slice(&v);
            scales.push(d);
            lane_offsets.push(16 * v.iter().map(|&x| i32::from(x)).sum::<i32>());
        }
        Q8Matrix {
            out,
            inp,
            values,
            scales,
            lane_offsets,
        }
    }

    pub fn out_dim(&self) -> usize {
        self.out
    }

    /// `y = x · Wᵀ` for `x` of `rows × in` (row-major); `y` is `rows × out`.
    pub fn matmul(&self, x: &[f32]) -> Vec<f32> {
        use rayon::prelude::*;
        assert_eq!(x.len() % self.inp, 0, "input width");
        let rows = x.len() / self.inp;
        #[cfg(target_arch = "x86_64")]
        let simd = pulp::x86::V3::try_new();
        // Inside pulp's AVX2 frame the rounding is one instruction instead of a libm call.
        #[cfg(target_arch = "x86_64")]
        let q = match simd {
            Some(simd) => simd.vectorize(Quantise(x)),
            None => quantise_rows(x),
        };
        #[cfg(not(target_arch = "x86_64"))]
        let q = quantise_rows(x);
        let mut y = vec![0f32; rows * self.out];
        let (tile_in, tile_out) = (TILE * self.inp, TILE * self.out);
        let one = |((xs, scales), out): ((&[u8], &[f32]), &mut [f32])| {
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = simd {
                return simd.vectorize(avx2::Tile {
                    simd,
                    m: self,
                    xs,
                    x_scales: scales,
                    out,
                });
            }
            self.tile_scalar(xs, scales, out);
        };
        if rows > TILE && rayon::current_num_threads() > 1 {
            q.values
                .par_chunks(tile_in)
                .zip(q.scales.par_chunks(tile_in / BLOCK))
                .zip(y.par_chunks_mut(tile_out))
                .for_each(one);
        } else {
            q.values
                .chunks(tile_in)
                .zip(q.scales.chunks(tile_in / BLOCK))
                .zip(y.chunks_mut(tile_out))
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
                        .map(|(&a, &w)| i32::from(a) * i32::from(w))
                        .sum();
                    let wb = c * blocks + b;
                    let dot = dot - 8 * self.lane_offsets[wb];
                    sum += x_scales[b] * (self.scales[wb] * dot as f32);
                }
                out[r * self.out + c] = sum;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Q8Matrix, BLOCK, TILE};
    use pulp::bytemuck::cast;
    use pulp::x86::V3;
    use std::arch::x86_64::{__m256, __m256i};

    #[inline(always)]
    fn load(bytes: &[u8]) -> __m256i {
        let block: [u8; BLOCK] = bytes[..BLOCK].try_into().expect("a whole block");
        cast(block)
    }

    #[inline(always)]
    fn hsum(simd: V3, v: __m256) -> f32 {
        let s = simd.sse._mm_add_ps(
            simd.avx._mm256_castps256_ps128(v),
            simd.avx._mm256_extractf128_ps::<1>(v),
        );
        let s = simd.sse._mm_add_ps(s, simd.sse._mm_movehl_ps(s, s));
        let s = simd.sse._mm_add_ss(s, simd.sse3._mm_movehdup_ps(s));
        simd.sse._mm_cvtss_f32(s)
    }

    /// Up to [`TILE`] token rows against every weight row; see [`Q8Matrix::tile_scalar`]. A struct rather than a
    /// closure so that the body is inlined into pulp's AVX2-enabled frame (a closure call there was not, which
    /// left every intrinsic an out-of-line call).
    pub(super) struct Tile<'a> {
        pub simd: V3,
        pub m: &'a Q8Matrix,
        pub xs: &'a [u8],
        pub x_scales: &'a [f32],
        pub out: &'a mut [f32],
    }

    impl pulp::NullaryFnOnce for Tile<'_> {
        type Output = ();

        #[inline(always)]
        fn call(self) {
            let Tile {
                simd,
                m,
                xs,
                x_scales,
                out,
            } = self;
            tile(simd, m, xs, x_scales, out);
        }
    }

    #[inline(always)]
    fn tile(simd: V3, m: &Q8Matrix, xs: &[u8], x_scales: &[f32], out: &mut [f32]) {
        // A constant row count lets the compiler unroll the row loop and keep the accumulators in registers.
        match x_scales.len() / (m.inp / BLOCK) {
            TILE => rows::<TILE>(simd, m, xs, x_scales, out),
            3 => rows::<3>(simd, m, xs, x_scales, out),
            2 => rows::<2>(simd, m, xs, x_scales, out),
            1 => rows::<1>(simd, m, xs, x_scales, out),
            n => unreachable!("a tile of {n} rows"),
        }
    }

    #[inline(always)]
    fn rows<const R: usize>(simd: V3, m: &Q8Matrix, xs: &[u8], x_scales: &[f32], out: &mut [f32]) {
        let blocks = m.inp / BLOCK;
        let ones = simd.avx._mm256_set1_epi16(1);
        let weights: &[u8] = pulp::bytemuck::cast_slice(&m.values);
        let x_rows: [&[u8]; R] = std::array::from_fn(|t| &xs[t * m.inp..(t + 1) * m.inp]);
        let x_row_scales: [&[f32]; R] =
            std::array::from_fn(|t| &x_scales[t * blocks..(t + 1) * blocks]);
        for (c, ((w_row, w_scales), w_offsets)) in weights
            .chunks_exact(m.inp)
            .zip(m.scales.chunks_exact(blocks))
            .zip(m.lane_offsets.chunks_exact(blocks))
            .enumerate()
        {
            let mut acc = [simd.avx._mm256_setzero_ps(); R];
            for (b, ((w, &ws), &wo)) in w_row
                .chunks_exact(BLOCK)
                .zip(w_scales)
                .zip(w_offsets)
                .enumerate()
            {
                let w = load(w);
                let wo = simd.avx._mm256_set1_epi32(wo);
                for t in 0..R {
                    let x = load(&x_rows[t][b * BLOCK..]);
                    // |(x + 128) · w| ≤ 255 · 8, so a pair sums to at most 4080: no i16 saturation.
                    let pairs = simd.avx2._mm256_maddubs_epi16(x, w);
                    let dot = simd.avx2._mm256_madd_epi16(pairs, ones);
                    let d = simd
                        .avx
                        ._mm256_cvtepi32_ps(simd.avx2._mm256_sub_epi32(dot, wo));
                    let scale = simd.avx._mm256_set1_ps(x_row_scales[t][b] * ws);
                    acc[t] = simd.fma._mm256_fmadd_ps(d, scale, acc[t]);
                }
            }
            for t in 0..R {
                out[t * m.out + c] = hsum(simd, acc[t]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Q4_0 rows from a seeded generator: random nibbles and scales.
    fn random_q4(out: usize, inp: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut bytes = Vec::new();
        for _ in 0..out * inp / BLOCK {
            let scale = half::f16::from_f32((next() % 1000) as f32 / 20_000.0 + 0.001);
            bytes.extend(scale.to_le_bytes());
            bytes.extend((0..16).map(|_| next() as u8));
        }
        bytes
    }

    #[test]
    fn the_kernel_matches_the_product_of_the_rounded_values() {
        let (out, inp) = (37, 96);
        let blocks = random_q4(out, inp, 7);
        let m = Q8Matrix::from_q4_0(&blocks, out, inp);
        for rows in [1, 3, 4, 9] {
            let x: Vec<f32> = (0..rows * inp)
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0)
                .collect();
            // Reference: dequantise both sides and multiply in f64.
            let mut w = vec![0f32; out * inp];
            crate::bert::dequantize_q4_0(&blocks, &mut w);
            let q = quantise_rows(&x);
            let xr: Vec<f64> = q
                .values
                .iter()
                .enumerate()
                .map(|(i, &v)| (f64::from(v) - 128.0) * f64::from(q.scales[i / BLOCK]))
                .collect();
            let y = m.matmul(&x);
            let mut scalar = vec![0f32; rows * out];
            m.tile_scalar(&q.values, &q.scales, &mut scalar);
            for r in 0..rows {
                for c in 0..out {
                    let want: f64 = (0..inp)
                        .map(|k| xr[r * inp + k] * f64::from(w[c * inp + k]))
                        .sum();
                    for got in [y[r * out + c], scalar[r * out + c]] {
                        assert!(
                            (f64::from(got) - want).abs() < 1e-3 * (1.0 + want.abs()),
                            "rows {rows} ({r}, {c}): {got} vs {want}"
                        );
                    }
                }
            }
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
