//! [`super::Q8Matrix`]'s product on Intel AMX: the tile unit does a block's integer dot products for 16 token rows
//! and 16 columns in one instruction (`tdpbusd`, unsigned bytes by signed bytes into int32), and AVX-512 does the
//! float work per block exactly as [`super::lanes`] does it, so the result is the AVX-512 path's bit for bit (tested).
//!
//! The weights need no layout of their own: one block of one column group in [`super::Q8Matrix::lanes`] is 8 steps
//! of 16 columns × 4 inputs, which is the `tdpbusd` B operand as it stands (8 rows of 64 bytes). The A operand is
//! the tile's activation rows, 32 bytes of each (one block), read in place with the row width as the stride.
//!
//! This is most of the workspace's `unsafe` code (the rest is one VNNI intrinsic in [`super::avx512`]). Rust has no
//! stable AMX intrinsics (`x86_amx_intrinsics`, rust-lang #126622) and no maintained crate wraps them, so the
//! instructions are inline assembly, and Linux hands out the tile registers only on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), which is a system call. The scope is kept small: one config load and release
//! per tile of rows, and one assembly block per one or two weight blocks whose every address is checked against its
//! slice first. Measured against AVX-512 in bench/RESULTS.md.

use super::{Q8Matrix, BLOCK, LANES};
use pulp::bytemuck::cast;
use pulp::x86::V4;
use std::arch::asm;
use std::arch::x86_64::{__m512, __m512i};
use std::sync::OnceLock;

/// Token rows per tile: the tile registers' 16 rows.
pub(super) const TILE: usize = 16;
/// Products of fewer rows go to VNNI instead ([`super::Kernel::for_rows`]), as does a last tile of fewer: where the
/// two cross on an Intel Xeon with AMX (`kefu-bench products`: 8 rows 0.96 of VNNI's speed, 9 rows 1.03,
/// bench/RESULTS.md).
pub(super) const MIN_ROWS: usize = 9;
/// Products of more rows go to VNNI ([`super::Kernel::for_rows`]): past two tiles VNNI is faster on an Intel Xeon
/// with AMX (1.04–1.11 times from 48 rows), while from 17 to 32 rows the two are level or the first full tile keeps
/// AMX ahead (`kefu-bench products`, bench/RESULTS.md). A query has fewer rows; a batch more.
pub(super) const MAX_ROWS: usize = 32;
/// Bytes of one block of one column group: the B operand, 8 rows of 64.
const B_BYTES: usize = BLOCK * LANES;

/// Whether the CPU has AMX with int8 products and Linux lets this process use the tile registers (asked once).
pub(super) fn available() -> bool {
    static GRANTED: OnceLock<bool> = OnceLock::new();
    *GRANTED.get_or_init(|| {
        use std::arch::x86_64::{__cpuid, __cpuid_count};
        if __cpuid(0).eax < 7 {
            return false;
        }
        // CPUID.(EAX=7, ECX=0):EDX bit 24 AMX-TILE, bit 25 AMX-INT8.
        let edx = __cpuid_count(7, 0).edx;
        edx & (1 << 24) != 0 && edx & (1 << 25) != 0 && request_tiles()
    })
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn request_tiles() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with these two integer arguments reads no memory; it enables the tile state for this process
    // or fails (an older kernel, or a hypervisor that does not pass AMX through), and either way changes nothing else.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn request_tiles() -> bool {
    false
}

/// The 64-byte tile configuration (palette 1): tiles 0 and 1 hold A (rows × 32 bytes), 2 and 3 B (8 × 64), 4 and 5
/// C (rows × 16 int32); two of each so that two weight blocks go through in one assembly block.
#[repr(C, align(64))]
struct Config {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

impl Config {
    fn new(rows: usize) -> Config {
        assert!((1..=TILE).contains(&rows), "a tile of {rows} rows");
        let rows = rows as u8;
        let mut c = Config {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for (t, (r, b)) in [
            (rows, BLOCK),
            (rows, BLOCK),
            (8, 64),
            (8, 64),
            (rows, 64),
            (rows, 64),
        ]
        .into_iter()
        .enumerate()
        {
            c.rows[t] = r;
            c.colsb[t] = b as u16;
        }
        c
    }
}

/// One block's integer sums for up to 16 rows × 16 columns, as `tilestored` writes them (row stride 64 bytes).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Sums([i32; TILE * LANES]);

/// AMX's [`super::TileProduct`]: a tile of up to 16 token rows (see the module comment), run in pulp's AVX-512 frame.
#[derive(Clone, Copy)]
pub(super) struct Amx(pub V4);

impl super::TileProduct for Amx {
    #[inline(always)]
    fn tile(self, m: &Q8Matrix, xs: &[u8], x_scales: &[f32], out: &mut [f32]) {
        let f = self.0.avx512f;
        let blocks = m.inp / BLOCK;
        let rows = x_scales.len() / blocks;
        assert_eq!(xs.len(), rows * m.inp, "activation rows");
        let weights: &[u8] = pulp::bytemuck::cast_slice(&m.lanes);
        let config = Config::new(rows);
        // SAFETY: `ldtilecfg` reads the 64 bytes of `config`, a valid palette-1 configuration (rows 1..=16, at most
        // 64 bytes a row). The tile registers are this thread's; nothing else in this process uses them.
        #[allow(unsafe_code)]
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly));
        }
        let mut sums = [Sums([0; TILE * LANES]); 2];
        for g in 0..m.out.div_ceil(LANES) {
            let mut acc = [f._mm512_setzero_ps(); TILE];
            let mut b = 0;
            while b < blocks {
                let two = b + 1 < blocks;
                let a = |b: usize| &xs[b * BLOCK..(rows - 1) * m.inp + (b + 1) * BLOCK];
                let w =
                    |b: usize| &weights[(g * blocks + b) * B_BYTES..(g * blocks + b + 1) * B_BYTES];
                let (x0, w0) = (a(b), w(b));
                let [s0, s1] = &mut sums;
                if two {
                    let (x1, w1) = (a(b + 1), w(b + 1));
                    // SAFETY: each A tile reads `rows` rows of 32 bytes at stride `inp` from the start of its
                    // slice, which ends at the last row's 32nd byte; each B tile reads the 512 bytes of its slice;
                    // each C tile writes `rows` rows of 64 bytes at stride 64 into its 1,024-byte `Sums`. The
                    // shapes are the configuration's: A's 32 bytes are B's 8 rows of 4, C has A's rows and B's
                    // 64 bytes.
                    #[allow(unsafe_code)]
                    unsafe {
                        asm!(
                            "tileloadd tmm0, [{x0} + {stride}*1]",
                            "tileloadd tmm1, [{x1} + {stride}*1]",
                            "tileloadd tmm2, [{w0} + {ws}*1]",
                            "tileloadd tmm3, [{w1} + {ws}*1]",
                            "tilezero tmm4",
                            "tilezero tmm5",
                            "tdpbusd tmm4, tmm0, tmm2",
                            "tdpbusd tmm5, tmm1, tmm3",
                            "tilestored [{c0} + {ws}*1], tmm4",
                            "tilestored [{c1} + {ws}*1], tmm5",
                            x0 = in(reg) x0.as_ptr(),
                            x1 = in(reg) x1.as_ptr(),
                            stride = in(reg) m.inp,
                            w0 = in(reg) w0.as_ptr(),
                            w1 = in(reg) w1.as_ptr(),
                            ws = in(reg) 64usize,
                            c0 = in(reg) s0.0.as_mut_ptr(),
                            c1 = in(reg) s1.0.as_mut_ptr(),
                            options(nostack),
                        );
                    }
                } else {
                    // SAFETY: as above, for one block.
                    #[allow(unsafe_code)]
                    unsafe {
                        asm!(
                            "tileloadd tmm0, [{x0} + {stride}*1]",
                            "tileloadd tmm2, [{w0} + {ws}*1]",
                            "tilezero tmm4",
                            "tdpbusd tmm4, tmm0, tmm2",
                            "tilestored [{c0} + {ws}*1], tmm4",
                            x0 = in(reg) x0.as_ptr(),
                            stride = in(reg) m.inp,
                            w0 = in(reg) w0.as_ptr(),
                            ws = in(reg) 64usize,
                            c0 = in(reg) s0.0.as_mut_ptr(),
                            options(nostack),
                        );
                    }
                }
                for (h, block) in sums.iter().take(1 + usize::from(two)).enumerate() {
                    let at = (g * blocks + b + h) * LANES;
                    let offsets: [i32; LANES] = m.lane_offsets[at..at + LANES]
                        .try_into()
                        .expect("16 offsets");
                    let ws: [f32; LANES] =
                        m.lane_scales[at..at + LANES].try_into().expect("16 scales");
                    let (offsets, ws): (__m512i, __m512) = (cast(offsets), cast(ws));
                    for (t, acc) in acc.iter_mut().enumerate().take(rows) {
                        let row: [i32; LANES] = block.0[t * LANES..(t + 1) * LANES]
                            .try_into()
                            .expect("16 sums");
                        // The same operations, in the same order, as `lanes::Columns16::scale_add` on AVX-512.
                        let sums = f._mm512_add_epi32(offsets, cast(row));
                        let scale =
                            f._mm512_mul_ps(f._mm512_set1_ps(x_scales[t * blocks + b + h]), ws);
                        *acc = f._mm512_fmadd_ps(f._mm512_cvtepi32_ps(sums), scale, *acc);
                    }
                }
                b += 1 + usize::from(two);
            }
            let c = g * LANES;
            let n = LANES.min(m.out - c);
            for (t, acc) in acc.iter().enumerate().take(rows) {
                let v: [f32; LANES] = cast(*acc);
                out[t * m.out + c..t * m.out + c + n].copy_from_slice(&v[..n]);
            }
        }
        // SAFETY: returns the tile registers to their initial state; it touches no memory.
        #[allow(unsafe_code)]
        unsafe {
            asm!("tilerelease", options(nostack, nomem));
        }
    }
}
