//! Seam-level checks of the ops against plain loops. The GPU backend's kernels are checked
//! against these same CPU results.

use super::*;

fn t(v: Vec<f32>, s: &[usize]) -> Tensor {
    Tensor::from_f32(v, s, &Device::cpu()).unwrap()
}

fn seq(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect()
}

#[test]
fn linear_matches_loops_over_leading_dims() {
    let (b, n, k, m) = (2, 3, 5, 4);
    let x = seq(b * n * k);
    let w = seq(m * k);
    let bias: Vec<f32> = (0..m).map(|i| i as f32).collect();
    let y = t(x.clone(), &[b, n, k]).linear(&t(w.clone(), &[m, k]), Some(&t(bias.clone(), &[m]))).unwrap();
    assert_eq!(y.shape(), vec![b, n, m]);
    let got = y.to_vec_f32().unwrap();
    for r in 0..b * n {
        for o in 0..m {
            let want: f32 = (0..k).map(|i| x[r * k + i] * w[o * k + i]).sum::<f32>() + bias[o];
            assert!((got[r * m + o] - want).abs() < 1e-5);
        }
    }
}

#[test]
fn causal_attention_ignores_the_future() {
    let (n, d) = (4, 2);
    let q = t(seq(n * d), &[1, 1, n, d]);
    let k = t(seq(n * d).into_iter().rev().collect(), &[1, 1, n, d]);
    let mut v = seq(n * d);
    let a = Tensor::attention(&q, &k, &t(v.clone(), &[1, 1, n, d]), true).unwrap().to_vec_f32().unwrap();
    v[(n - 1) * d] += 100.0; // changing the last value row may only change the last output row
    let b = Tensor::attention(&q, &k, &t(v, &[1, 1, n, d]), true).unwrap().to_vec_f32().unwrap();
    assert_eq!(a[..(n - 1) * d], b[..(n - 1) * d]);
    assert_ne!(a[(n - 1) * d..], b[(n - 1) * d..]);
    // the first query sees only the first value
    assert!((a[0] - seq(n * d)[0]).abs() < 1e-6);
}

#[test]
fn topk_gather_and_patchify() {
    let scores = t(vec![0.1, 0.9, 0.5, 0.7, 3.0, 1.0, 2.0, 0.0], &[2, 4]);
    let idx = scores.topk_indices(2).unwrap();
    assert_eq!(idx.to_vec_u32().unwrap(), vec![1, 3, 0, 2]);
    let x = t((0..24).map(|i| i as f32).collect(), &[2, 4, 3]);
    let g = x.gather_rows(&idx).unwrap();
    assert_eq!(g.to_vec_f32().unwrap(), vec![3., 4., 5., 9., 10., 11., 12., 13., 14., 18., 19., 20.]);
    let bad = Tensor::from_u32(vec![0, 9], &[1, 2], &Device::cpu()).unwrap();
    assert!(t(vec![0.0; 6], &[1, 2, 3]).gather_rows(&bad).is_err());

    // 1 image, 1 channel, 4x4, patch 2: patch 1 (top right) holds pixels 2, 3, 6, 7
    let img = t((0..16).map(|i| i as f32).collect(), &[1, 1, 4, 4]);
    let p = img.patchify(2).unwrap();
    assert_eq!(p.shape(), vec![1, 4, 4]);
    assert_eq!(p.to_vec_f32().unwrap()[4..8], [2., 3., 6., 7.]);
    assert!(img.patchify(3).is_err());
}

#[test]
fn shapes_that_do_not_fit_are_errors() {
    assert!(Tensor::from_f32(vec![1.0; 5], &[2, 3], &Device::cpu()).is_err());
    let x = t(vec![1.0; 6], &[2, 3]);
    assert!(x.linear(&t(vec![1.0; 8], &[2, 4]), None).is_err());
    assert!(t(vec![0.0; 4], &[4, 1]).embedding(&Tensor::from_u32(vec![4], &[1], &Device::cpu()).unwrap()).is_err());
}

#[test]
fn an_axis_the_tensor_lacks_is_an_error() {
    let x = t(vec![1.0; 6], &[2, 3]);
    assert_eq!(x.dim(1).unwrap(), 3);
    let e = x.dim(2).unwrap_err().to_string();
    assert!(e.contains("axis 2") && e.contains("[2, 3]"), "{e}");
}
