use super::epilogue::{apply_act, round_bf16};
use super::*;
use crate::tensor::Activation;

fn vals(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i * 7919 + seed * 104729) % 1999) as f32 - 999.0) / 700.0).collect()
}

/// The naive triple loop, in f64.
fn naive(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, lda: usize, epi: Epilogue) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f64;
            for p in 0..k {
                s += x[i * lda + p] as f64 * w[j * k + p] as f64;
            }
            y[i * n + j] = s as f32 + epi.bias.map_or(0.0, |b| b[j]);
        }
    }
    if let Some(a) = epi.act {
        apply_act(&mut y, a);
    }
    if let Some(r) = epi.res {
        y.iter_mut().zip(r).for_each(|(v, r)| *v += r);
    }
    y
}

fn check(kern: MicroKernel, m: usize, k: usize, n: usize, lda: usize, epi_kind: usize) {
    let x = vals(m.max(1) * lda, 1);
    let w = vals(n * k, 2);
    let bias = vals(n, 3);
    let res = vals(m * n, 4);
    let epi = match epi_kind {
        0 => Epilogue::default(),
        1 => Epilogue { bias: Some(&bias), ..Default::default() },
        2 => Epilogue { bias: Some(&bias), act: Some(Activation::QuickGelu), res: Some(&res), norm: None },
        _ => Epilogue { bias: None, act: Some(Activation::Silu), res: Some(&res), norm: None },
    };
    let want = naive(&x, &w, m, k, n, lda, epi);
    let p = PackedWeight::pack(&w, n, k, kern).unwrap();
    let mut got = vec![f32::NAN; m * n];
    p.matmul(&x, m, lda, epi, &mut got).unwrap();
    let tol = 1e-5 * (k as f32).sqrt().max(1.0) * 4.0;
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!((a - b).abs() <= tol * b.abs().max(1.0), "{kern:?} m{m} k{k} n{n} lda{lda} epi{epi_kind}: [{i}] {a} vs {b}");
    }
}

/// Every kernel this machine has, on shapes that are not multiples of any tile, K = 1,
/// N = 1, M = 1 (the one-row kernels, K a multiple of their unrolling and not), K past one K block, strided rows, and each epilogue.
#[test]
fn every_kernel_matches_the_naive_product_on_odd_shapes() {
    let shapes = [
        (1, 1, 1),
        (1, 7, 1),
        (1, 768, 100),
        (1, 10, 33),
        (7, 66, 48),
        (5, 1, 3),
        (13, 37, 33),
        (25, 300, 65),
        (197, 64, 70),
        (3, 513, 17),
        (12, 256, 32),
        (40, 20, 200),
    ];
    let kernels = MicroKernel::available();
    assert!(kernels.contains(&MicroKernel::Portable));
    for kern in kernels {
        for &(m, k, n) in &shapes {
            for epi in 0..4 {
                check(kern, m, k, n, k, epi);
            }
            check(kern, m, k, n, k + 3, 2);
        }
    }
}

#[test]
fn a_large_call_split_over_tasks_matches() {
    for kern in MicroKernel::available() {
        check(kern, 300, 700, 260, 700, 2);
    }
}

#[test]
fn half_panels_match_the_same_values_in_f32() {
    let (m, k, n) = (7, 300, 45);
    let x = vals(m * k, 5);
    let wb: Vec<half::bf16> = vals(n * k, 6).into_iter().map(half::bf16::from_f32).collect();
    let wf: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
    let wh: Vec<half::f16> = wf.iter().map(|&v| half::f16::from_f32(v)).collect();
    for kern in MicroKernel::available() {
        let mut want = vec![0f32; m * n];
        PackedWeight::pack(&wf, n, k, kern).unwrap().matmul(&x, m, k, Epilogue::default(), &mut want).unwrap();
        for p in [PackedWeight::pack_half(HalfSlice::Bf16(&wb), n, k, kern).unwrap(), PackedWeight::pack_half(HalfSlice::F16(&wh), n, k, kern).unwrap()] {
            assert!(p.is_half());
            let mut got = vec![0f32; m * n];
            p.matmul(&x, m, k, Epilogue::default(), &mut got).unwrap();
            assert!(want.iter().zip(&got).all(|(a, b)| (a - b).abs() < 2e-3), "{kern:?}");
        }
    }
}

/// The pre-engine half-weight test, kept with its tolerances: bf16 panels give the f32
/// product of the same values (bias included) to 1e-5, f16 to 1e-3.
#[test]
fn half_linear_equals_f32_linear_of_the_same_values() {
    let (m, k, n) = (3usize, 37usize, 150usize);
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
    let wb: Vec<half::bf16> = (0..n * k).map(|i| half::bf16::from_f32(((i * 13 % 97) as f32 - 48.0) / 40.0)).collect();
    let wf: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
    let b: Vec<f32> = (0..n).map(|i| i as f32 / 100.0).collect();
    let epi = Epilogue { bias: Some(&b), ..Default::default() };
    let run = |p: PackedWeight| {
        let mut y = vec![0f32; m * n];
        p.matmul(&x, m, k, epi, &mut y).unwrap();
        y
    };
    let want = naive(&x, &wf, m, k, n, k, epi);
    let got = run(PackedWeight::pack_half(HalfSlice::Bf16(&wb), n, k, MicroKernel::best()).unwrap());
    assert!(want.iter().zip(&got).all(|(a, c)| (a - c).abs() < 1e-5));
    let wh: Vec<half::f16> = wf.iter().map(|&v| half::f16::from_f32(v)).collect();
    let got = run(PackedWeight::pack_half(HalfSlice::F16(&wh), n, k, MicroKernel::best()).unwrap());
    assert!(want.iter().zip(&got).all(|(a, c)| (a - c).abs() < 1e-3));
}

#[test]
fn layer_norm_prologue_equals_the_norm_then_the_product() {
    let (m, k, n, lda) = (29, 70, 45, 73);
    let x = vals(m * lda, 11).iter().enumerate().map(|(i, v)| v * 3.0 + (i / lda) as f32).collect::<Vec<_>>();
    let w = vals(n * k, 12);
    let (nw, nb) = (vals(k, 13), vals(k, 14));
    let rows: Vec<f32> = x.chunks(lda).flat_map(|r| r[..k].to_vec()).collect();
    let normed = crate::tensor::cpu::row_ops::layer_norm_rows(&rows, &nw, &nb, k, 1e-5).unwrap();
    for kern in MicroKernel::available() {
        let p = PackedWeight::pack(&w, n, k, kern).unwrap();
        let want = p.matmul_new(&normed, m, k, Epilogue::default()).unwrap();
        let got = p.matmul_new(&x, m, lda, Epilogue { norm: Some(Norm { w: &nw, b: &nb, eps: 1e-5 }), ..Default::default() }).unwrap();
        assert_eq!(got, want, "{}", kern.name());
        let e = p.matmul_new(&x, m, lda, Epilogue { norm: Some(Norm { w: &nw[..5], b: &nb, eps: 1e-5 }), ..Default::default() }).unwrap_err();
        assert!(e.contains("layer norm of 5 weights and 70 biases for 70 features"), "{e}");
    }
}

/// `Precision::Bf16`: the product of the bf16-rounded operands in f32 (sums in another order:
/// within f32 rounding of it), on every kernel; far from the unrounded product.
#[test]
fn bf16_weights_and_activations_equal_the_product_of_the_rounded_values() {
    let (m, k, n) = (13, 200, 37);
    let (x, w) = (vals(m * k, 21), vals(n * k, 22));
    let r = |v: &[f32]| v.iter().map(|&a| half::bf16::from_f32(a).to_f32()).collect::<Vec<_>>();
    let want = naive(&r(&x), &r(&w), m, k, n, k, Epilogue::default());
    let exact = naive(&x, &w, m, k, n, k, Epilogue::default());
    let mut rounded = x.clone();
    round_bf16(&mut rounded);
    assert_eq!(rounded, r(&x), "round_bf16 rounds as half::bf16 does");
    for kern in MicroKernel::available() {
        let b: Vec<half::bf16> = w.iter().map(|&a| half::bf16::from_f32(a)).collect();
        let p = PackedWeight::pack_bf16(HalfSlice::Bf16(&b), n, k, kern).unwrap();
        let got = p.matmul_new(&x, m, k, Epilogue::default()).unwrap();
        let (d, far) = (crate::num::max_abs_diff(&got, &want), crate::num::max_abs_diff(&got, &exact));
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        assert!(d <= 1e-6 * scale, "{}: {d} (scale {scale})", kern.name());
        assert!(far > 100.0 * d.max(1e-7), "{}: bf16 is as near the f32 product ({far:.1e})", kern.name());
    }
}

/// Every bf16 dot-product engine the CPU has (AMX-BF16, AVX-512 BF16), and the one
/// `pack_bf16_best` picks: the same product of the rounded values as the f32 kernels' bf16
/// path, up to the order (and the rounding) of the f32 sums, with the epilogue and the
/// LayerNorm prologue; each offered exactly where the CPU reports it (`amx_bf16`,
/// `avx512_bf16`), so none is skipped silently.
#[test]
fn every_bf16_engine_computes_the_product_of_the_rounded_values() {
    type Pack = Box<dyn Fn(HalfSlice, usize, usize) -> PackedWeight>;
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut packers: Vec<(String, Pack)> = vec![("best".into(), Box::new(|w, n, k| PackedWeight::pack_bf16_best(w, n, k).unwrap()))];
    #[cfg(target_arch = "x86_64")]
    {
        use super::bf16::Bf16Engine;
        #[cfg(target_os = "linux")]
        {
            let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
            let flags: Vec<&str> = info.lines().find(|l| l.starts_with("flags")).unwrap().split_whitespace().collect();
            let engines = Bf16Engine::available();
            assert_eq!(engines.contains(&Bf16Engine::Amx), flags.contains(&"amx_bf16"), "AMX-BF16 offered exactly where the CPU has it");
            assert_eq!(engines.contains(&Bf16Engine::Avx512), flags.contains(&"avx512_bf16"), "AVX-512 BF16 offered exactly where the CPU has it");
        }
        for e in Bf16Engine::available() {
            packers.push((e.name().into(), Box::new(move |w, n, k| PackedWeight::pack_bf16_on(w, n, k, e).unwrap())));
        }
    }
    let r = |v: &[f32]| v.iter().map(|&a| half::bf16::from_f32(a).to_f32()).collect::<Vec<_>>();
    for (name, pack) in &packers {
        for &(m, k, n) in &[(1, 1, 1), (3, 33, 17), (13, 200, 37), (40, 64, 70), (197, 768, 96)] {
            let (x, w, b, res) = (vals(m * k, 31), vals(n * k, 32), vals(n, 33), vals(m * n, 34));
            let (nw, nb) = (vals(k, 35), vals(k, 36));
            let wb: Vec<half::bf16> = w.iter().map(|&a| half::bf16::from_f32(a)).collect();
            let p = pack(HalfSlice::Bf16(&wb), n, k);
            let norm = Some(Norm { w: &nw, b: &nb, eps: 1e-5 });
            let epi = Epilogue { bias: Some(&b), act: Some(crate::tensor::Activation::QuickGelu), res: Some(&res), norm };
            let got = p.matmul_new(&x, m, k, epi).unwrap();
            // By hand: LayerNorm, round, the product in f32, the epilogue.
            let mut xn = x.clone();
            for row in xn.chunks_mut(k) {
                let (mean, inv) = crate::tensor::cpu::row_ops::row_stats(row, 1e-5);
                for ((v, &w), &b) in row.iter_mut().zip(&nw).zip(&nb) {
                    *v = (*v - mean) * inv * w + b;
                }
            }
            let mut want = naive(&r(&xn), &r(&w), m, k, n, k, Epilogue { bias: Some(&b), ..Default::default() });
            apply_act(&mut want, crate::tensor::Activation::QuickGelu);
            want.iter_mut().zip(&res).for_each(|(v, r)| *v += r);
            let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
            let d = crate::num::max_abs_diff(&got, &want);
            assert!(d <= 2e-6 * scale * (k as f32).sqrt().max(1.0), "{name} m{m} k{k} n{n}: {d} (scale {scale})");
        }
    }
}

#[test]
fn bad_shapes_are_errors_that_say_what() {
    let p = PackedWeight::pack(&[1.0; 6], 2, 3, MicroKernel::Portable).unwrap();
    let mut y = vec![0f32; 4];
    let e = p.matmul(&[1.0; 5], 2, 3, Epilogue::default(), &mut y).unwrap_err();
    assert!(e.contains("2 rows of 3"), "{e}");
    let e = p.matmul(&[1.0; 6], 2, 3, Epilogue { bias: Some(&[1.0]), ..Default::default() }, &mut y).unwrap_err();
    assert!(e.contains("bias has 1 values for 2"), "{e}");
    assert!(PackedWeight::pack(&[1.0; 5], 2, 3, MicroKernel::Portable).unwrap_err().contains("[2, 3]"));
}
