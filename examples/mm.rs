use candle_core::{Device, Tensor};
fn main() -> candle_core::Result<()> {
    let d = Device::Cpu;
    for (m, k, n) in [(197usize, 768usize, 2304usize), (197, 768, 3072), (197, 3072, 768), (1576, 768, 3072)] {
        let a = Tensor::randn(0f32, 1., (m, k), &d)?;
        let w = Tensor::randn(0f32, 1., (n, k), &d)?;
        let wt = w.t()?.contiguous()?;
        for (name, rhs) in [("w.t()", w.t()?), ("wt contig", wt.clone())] {
            let _ = a.matmul(&rhs)?;
            let t = std::time::Instant::now();
            let it = 10;
            for _ in 0..it { let _ = a.matmul(&rhs)?; }
            let s = t.elapsed().as_secs_f64() / it as f64;
            println!("{m}x{k}x{n} {name}: {:.2} ms, {:.1} GFLOP/s", s * 1e3, 2.0 * (m * k * n) as f64 / s / 1e9);
        }
    }
    Ok(())
}
