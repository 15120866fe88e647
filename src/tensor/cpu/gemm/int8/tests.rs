use super::super::Norm;
use super::*;
use crate::tensor::cpu::gemm::epilogue::apply_act;
use crate::tensor::cpu::row_ops::row_stats;

fn vals(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Every kernel this CPU runs, and the relaxed-SIMD kernel's scheme (in portable code off wasm).
fn kernels() -> Vec<Int8MicroKernel> {
    let mut v = Int8MicroKernel::available();
    for k in [Int8MicroKernel::Relaxed, Int8MicroKernel::RelaxedPairs] {
        if !v.contains(&k) {
            v.push(k);
        }
    }
    v
}

/// The scheme written out plainly: quantise both sides, integer dot products, dequantise (the
/// relaxed-SIMD kernel's activations as u7 with a zero point, `x ≈ s · (u − zp)`).
fn reference_for(kern: Int8MicroKernel, x: &[f32], w: &[f32], m: usize, k: usize, n: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let (qw, sw) = quantize_weight(w, n, k).unwrap();
    let (mut qx, mut sx) = (vec![0i32; m * k], vec![0f32; m]);
    for ((row, q), s) in x.chunks(k.max(1)).zip(qx.chunks_mut(k.max(1))).zip(&mut sx) {
        if kern.layout() == Layout::QuadsU7 {
            let mut u = vec![0u8; k];
            let zp;
            (*s, zp) = quantize_row_u7_body(row, &mut u);
            q.iter_mut().zip(&u).for_each(|(q, &u)| *q = u as i32 - zp);
        } else {
            let mut v = vec![0i8; k];
            *s = quantize_row_body(row, &mut v);
            q.iter_mut().zip(&v).for_each(|(q, &v)| *q = v as i32);
        }
    }
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let acc: i32 = (0..k).map(|p| qx[i * k + p] * qw[j * k + p] as i32).sum();
            y[i * n + j] = acc as f32 * (sx[i] * sw[j]) + bias.map_or(0.0, |b| b[j]);
        }
    }
    y
}

fn run(kern: Int8MicroKernel, x: &[f32], w: &[f32], m: usize, k: usize, n: usize, epi: Epilogue) -> Vec<f32> {
    let q = QuantWeight::quantize(w, n, k, kern).unwrap();
    let mut y = vec![f32::NAN; m * n];
    // SAFETY: `y` is `[m, n]`.
    unsafe { q.matmul_raw(x, m, k, epi, y.as_mut_ptr(), n, true) };
    y
}

#[test]
fn every_int8_kernel_equals_the_scheme_exactly_on_odd_shapes() {
    for kern in kernels() {
        for &(m, k, n) in
            &[(1, 1, 1), (1, 7, 5), (1, 768, 64), (2, 200, 40), (3, 33, 17), (7, 64, 40), (13, 129, 33), (50, 768, 70), (197, 768, 2304), (197, 3072, 768)]
        {
            let (x, w, b) = (vals(m * k, 1), vals(n * k, 2), vals(n, 3));
            let got = run(kern, &x, &w, m, k, n, Epilogue { bias: Some(&b), ..Default::default() });
            let want = reference_for(kern, &x, &w, m, k, n, Some(&b));
            assert_eq!(got, want, "{} m{m} k{k} n{n}", kern.name());
        }
    }
}

/// The numpy reference written from the scheme's definition (`scripts/int8_reference.py`,
/// fixture `int8-linear.json`): every kernel equals it exactly (`y`; the relaxed-SIMD kernel's
/// 7-bit activations `y7`).
#[test]
fn every_int8_kernel_equals_the_independent_numpy_reference() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/generation/int8-linear.json");
    let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let f = |c: &serde_json::Value, key: &str| -> Vec<f32> { c[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect() };
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for kern in kernels() {
        let key = if kern.layout() == Layout::QuadsU7 { "y7" } else { "y" };
        for c in cases {
            let (m, k, n) = (c["m"].as_u64().unwrap() as usize, c["k"].as_u64().unwrap() as usize, c["n"].as_u64().unwrap() as usize);
            let (x, w, b, want) = (f(c, "x"), f(c, "w"), f(c, "b"), f(c, key));
            assert_eq!((x.len(), w.len(), want.len()), (m * k, n * k, m * n));
            let got = run(kern, &x, &w, m, k, n, Epilogue { bias: Some(&b), ..Default::default() });
            assert_eq!(got, want, "{} m{m} k{k} n{n}", kern.name());
        }
    }
}

#[test]
fn the_fast_quantiser_equals_the_plain_body() {
    for n in [1, 5, 15, 16, 17, 31, 64, 100, 768, 3073] {
        for seed in 0..4u64 {
            let mut x: Vec<f32> = vals(n, 40 + seed).iter().map(|v| v * 10f32.powi(seed as i32 - 2)).collect();
            if seed == 3 {
                // Exact ties of the scaled values: x · 127 / 127 = x for small integers.
                x.iter_mut().enumerate().for_each(|(i, v)| *v = (i % 255) as f32 - 127.0 + 0.5 * (i % 2) as f32);
                x[0] = 127.0;
            }
            let (mut a, mut b) = (vec![0i8; n], vec![0i8; n]);
            let (sa, sb) = (quantize_row(&x, &mut a), quantize_row_body(&x, &mut b));
            assert_eq!((a, sa.to_bits()), (b, sb.to_bits()), "n {n} seed {seed}");
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut y = x.clone();
                y[n / 2] = bad;
                let mut q = vec![1i8; n];
                assert!(quantize_row(&y, &mut q).is_nan() && q.iter().all(|&v| v == 0), "n {n} {bad}");
            }
        }
    }
}

/// The relaxed-SIMD kernel's u7 activations: the dispatched quantiser equals its body, and the
/// values are what its docs say.
#[test]
fn the_u7_quantiser_is_what_its_docs_say() {
    // lo −1, hi 3: inv 127/4 = 31.75, zp rint(31.75) = 32; 3 → rint(95.25) + 32 = 127;
    // −1 → −32 + 32 = 0; 0.5 → rint(15.875) + 32 = 48; 0 → 32.
    let mut u = [0u8; 4];
    assert_eq!(quantize_row_u7(&[3.0, -1.0, 0.5, 0.0], &mut u), (4.0 / 127.0, 32));
    assert_eq!(u, [127, 0, 48, 32]);
    // All positive: lo = 0, so zp 0; all negative: hi = 0, zp 127 (−1 · 63.5 → −64, ties to even).
    assert_eq!((quantize_row_u7(&[2.0, 1.0], &mut u[..2]), u[..2].to_vec()), ((2.0 / 127.0, 0), vec![127, 64]));
    assert_eq!((quantize_row_u7(&[-2.0, -1.0], &mut u[..2]), u[..2].to_vec()), ((2.0 / 127.0, 127), vec![0, 63]));
    assert_eq!(quantize_row_u7(&[0.0, 0.0], &mut u[..2]), (0.0, 0));
    let (s, z) = quantize_row_u7(&[1.0, f32::INFINITY], &mut u[..2]);
    assert!(s.is_nan() && z == 0 && u[..2] == [0, 0]);
    for n in [1, 5, 17, 768, 3073] {
        let x: Vec<f32> = vals(n, 60 + n as u64).iter().map(|v| v * 3.0 + 0.7).collect();
        let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
        let (ra, rb) = (quantize_row_u7(&x, &mut a), quantize_row_u7_body(&x, &mut b));
        assert_eq!((a, ra.0.to_bits(), ra.1), (b, rb.0.to_bits(), rb.1), "n {n}");
    }
}

#[test]
fn the_scheme_is_what_the_docs_say() {
    // max 2 → scale 2/127; 1 → rint(63.5) = 64 (ties to even); -2 → -127; 0.01 → rint(0.635) = 1.
    let mut q = [0i8; 4];
    let s = quantize_row(&[1.0, -2.0, 0.01, 0.0], &mut q);
    assert_eq!((q, s), ([64, -127, 1, 0], 2.0 / 127.0));
    assert_eq!(quantize_row(&[0.0, 0.0], &mut q[..2]), 0.0);
    assert!(quantize_row(&[1.0, f32::NAN], &mut q[..2]).is_nan());
    assert!(QuantWeight::from_quantized(&[-128], &[1.0], 1, 1, Int8MicroKernel::Portable).is_err());
}

#[test]
fn the_epilogue_and_the_norm_prologue_match_the_f32_path_on_the_dequantised_values() {
    // 24 columns: a partial tile only; 70: two whole 32-column tiles (the AVX-512 epilogue)
    // and a partial one.
    for (kern, (m, k, n)) in kernels().into_iter().flat_map(|kern| [(9, 96, 24), (9, 96, 70)].map(|s| (kern, s))) {
        let (x, w, b, r) = (vals(m * k, 4), vals(n * k, 5), vals(n, 6), vals(m * n, 7));
        let (nw, nb) = (vals(k, 8), vals(k, 9));
        let norm = Some(Norm { w: &nw, b: &nb, eps: 1e-5 });
        let act = Some(crate::tensor::Activation::QuickGelu);
        let got = run(kern, &x, &w, m, k, n, Epilogue { bias: Some(&b), act, res: Some(&r), norm });
        // The same steps by hand: LayerNorm, the scheme, the activation, the residual.
        let mut xn = x.clone();
        for row in xn.chunks_mut(k) {
            let (mean, inv) = row_stats(row, 1e-5);
            for ((v, &w), &b) in row.iter_mut().zip(&nw).zip(&nb) {
                *v = (*v - mean) * inv * w + b;
            }
        }
        let mut want = reference_for(kern, &xn, &w, m, k, n, Some(&b));
        apply_act(&mut want, crate::tensor::Activation::QuickGelu);
        want.iter_mut().zip(&r).for_each(|(v, r)| *v += r);
        assert!(crate::num::max_abs_diff(&got, &want) <= 1e-6, "{}", kern.name());
    }
}

/// A CPU that reports AMX-INT8, AVX-512 VNNI or AVX-VNNI gets its kernel (on Linux, where the flags are
/// read and AMX's tile data is granted on request), so a machine that has them tests them.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn the_cpus_int8_instructions_are_offered() {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let flags: Vec<&str> = info.lines().find(|l| l.starts_with("flags")).unwrap().split_whitespace().collect();
    let avail = Int8MicroKernel::available();
    if flags.contains(&"amx_int8") && flags.contains(&"amx_tile") {
        assert!(avail.contains(&Int8MicroKernel::Amx), "{avail:?}");
    }
    if flags.contains(&"avx512_vnni") && flags.contains(&"avx512bw") {
        assert!(avail.contains(&Int8MicroKernel::Avx512Vnni), "{avail:?}");
    }
    if flags.contains(&"avx_vnni") {
        assert!(avail.contains(&Int8MicroKernel::AvxVnni), "{avail:?}");
    }
    assert_eq!(Int8MicroKernel::best(), avail[0]);
}
