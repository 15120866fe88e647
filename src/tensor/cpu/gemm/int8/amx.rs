//! The AMX-INT8 micro-kernel: a 32 × 32 int32 tile as 2 × 2 tile registers of 16 × 16, each
//! k-block of 64 multiplied by `tdpbssd` (signed × signed, exact int32 sums).
//!
//! Operands (see `Layout` in the module of `int8`): for each 64-deep block, the activation tile
//! holds two A tiles (rows 0–15, 16–31) and the weight panel two B tiles (columns 0–15, 16–31),
//! each 16 × 64 bytes contiguous: every tile load is one sequential KiB.
//!
//! Linux lets a process use the AMX tile data only after asking (`arch_prctl(ARCH_REQ_XCOMP_PERM)`);
//! [`usable`] asks once and the kernel is offered only when the answer is yes.

use super::Int8TileFn;
use std::arch::asm;

pub const MR: usize = 32;
pub const NR: usize = 32;

/// Tile configuration, palette 1: all eight tiles 16 rows × 64 bytes (C: tmm0–3, A: tmm4–5,
/// B: tmm6–7).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

static CONFIG: TileConfig = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
        t += 1;
    }
    TileConfig(c)
};

/// Whether this CPU has AMX-INT8 and the operating system lets this process use it (asked once).
pub fn usable() -> bool {
    granted() && std::arch::x86_64::__cpuid_count(7, 0).edx >> 25 & 1 == 1
}

/// Whether this CPU has AMX-BF16 and the operating system lets this process use it.
pub fn usable_bf16() -> bool {
    granted() && std::arch::x86_64::__cpuid_count(7, 0).edx >> 22 & 1 == 1
}

/// AMX-TILE present and its tile data granted to this process (asked once).
fn granted() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| std::arch::x86_64::__cpuid_count(7, 0).edx >> 24 & 1 == 1 && request_tile_data())
}

#[cfg(target_os = "linux")]
fn request_tile_data() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments; it only changes what this process may use.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn request_tile_data() -> bool {
    false
}

thread_local! {
    /// Whether this thread's tile registers hold [`CONFIG`] (loading it costs as much as a few
    /// products; nothing else in the process configures tiles).
    static CONFIGURED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[inline(always)]
unsafe fn configure() {
    if !CONFIGURED.get() {
        asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly));
        CONFIGURED.set(true);
    }
}

/// The int8 kernel ([`tiles`] with `tdpbssd`).
///
/// # Safety
/// [`usable`] returned true; see [`Int8TileFn`] (`kq` a multiple of 16, the activation tile
/// padded to `MR` rows).
pub unsafe fn amx<const R: usize>(kq: usize, a: *const i32, b: *const i8, c: *mut i32) {
    tiles::<R, false>(kq, a as *const u8, b as *const u8, c as *mut u8)
}

/// `c[32 × 32] = A · B` over `kq` 4-byte words of depth (a multiple of 16): int8 quads with
/// int32 sums (`tdpbssd`), or with `BF16` bf16 pairs with f32 sums (`tdpbf16ps`; its sums
/// round to nearest even and flush denormals). Operands in the blocked layout of the module
/// docs. `R` = 1: the first 16 rows only (2 C tiles); `R` = 2: all 32.
///
/// # Safety
/// [`usable`] (int8) or [`usable_bf16`] returned true; `a` holds `kq · MR` words, `b`
/// `kq · NR` words, `c` `MR × NR` 4-byte values.
pub unsafe fn tiles<const R: usize, const BF16: bool>(kq: usize, a: *const u8, b: *const u8, c: *mut u8) {
    let (stride, sc) = (64usize, NR * 4);
    configure();
    asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
    for kb in 0..kq / 16 {
        let (a0, b0) = (a.add(kb * 2048), b.add(kb * 2048));
        let (a1, b1) = (a0.add(1024), b0.add(1024));
        // Tile loads are not followed by the hardware prefetchers: ask for the weight block
        // after next now (past the panel's end that is the next panel, read next; a prefetch
        // never faults).
        let ahead = b0.add(2 * 2048);
        for line in 0..32 {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ahead.add(line * 64) as *const i8);
        }
        // The same four (two) products, int8 or bf16.
        macro_rules! products {
            ($op:literal) => {
                if R == 2 {
                    asm!(
                        "tileloadd tmm4, [{a0} + {stride}*1]",
                        "tileloadd tmm6, [{b0} + {stride}*1]",
                        "tileloadd tmm7, [{b1} + {stride}*1]",
                        concat!($op, " tmm0, tmm4, tmm6"),
                        "tileloadd tmm5, [{a1} + {stride}*1]",
                        concat!($op, " tmm1, tmm4, tmm7"),
                        concat!($op, " tmm2, tmm5, tmm6"),
                        concat!($op, " tmm3, tmm5, tmm7"),
                        a0 = in(reg) a0, a1 = in(reg) a1, b0 = in(reg) b0, b1 = in(reg) b1, stride = in(reg) stride,
                        options(nostack, readonly)
                    );
                } else {
                    asm!(
                        "tileloadd tmm4, [{a0} + {stride}*1]",
                        "tileloadd tmm6, [{b0} + {stride}*1]",
                        "tileloadd tmm7, [{b1} + {stride}*1]",
                        concat!($op, " tmm0, tmm4, tmm6"),
                        concat!($op, " tmm1, tmm4, tmm7"),
                        a0 = in(reg) a0, b0 = in(reg) b0, b1 = in(reg) b1, stride = in(reg) stride,
                        options(nostack, readonly)
                    );
                }
            };
        }
        if BF16 {
            products!("tdpbf16ps");
        } else {
            products!("tdpbssd");
        }
    }
    asm!(
        "tilestored [{c0} + {sc}*1], tmm0",
        "tilestored [{c1} + {sc}*1], tmm1",
        c0 = in(reg) c, c1 = in(reg) c.add(64), sc = in(reg) sc,
        options(nostack)
    );
    if R == 2 {
        let c2 = c.add(16 * sc);
        asm!(
            "tilestored [{c2} + {sc}*1], tmm2",
            "tilestored [{c3} + {sc}*1], tmm3",
            c2 = in(reg) c2, c3 = in(reg) c2.add(64), sc = in(reg) sc,
            options(nostack)
        );
    }
}

/// Indexed by rows − 1: up to 16 rows take the one-A-tile kernel.
pub static AMX: [Int8TileFn; MR] = {
    let mut t: [Int8TileFn; MR] = [amx::<2> as Int8TileFn; MR];
    let mut i = 0;
    while i < 16 {
        t[i] = amx::<1> as Int8TileFn;
        i += 1;
    }
    t
};
