use effarch::tensor::{Activation, Device, Tensor};
fn time<F: FnMut() -> effarch::Result<Tensor>>(name: &str, mut f: F) {
    f().unwrap();
    let t = std::time::Instant::now();
    for _ in 0..20 { f().unwrap(); }
    println!("{name:<28} {:.3} ms", t.elapsed().as_secs_f64() * 1e3 / 20.0);
}
fn main() {
    let d = Device::Cpu;
    let r = |s: &[usize]| Tensor::from_f32((0..s.iter().product::<usize>()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect(), s, &d).unwrap();
    let x = r(&[1, 197, 768]);
    let h = r(&[1, 197, 3072]);
    let qkv = r(&[1, 197, 2304]);
    let q = r(&[1, 12, 197, 64]);
    let w = r(&[768]); let b = r(&[768]);
    time("layer_norm", || x.layer_norm(&w, &b, 1e-5));
    time("quick_gelu 197x3072", || h.act(Activation::QuickGelu));
    time("add", || x.add(&x));
    time("qkv split permute", || qkv.reshape(&[1, 197, 3, 12, 64])?.permute(&[2, 0, 3, 1, 4]));
    let split = qkv.reshape(&[1, 197, 3, 12, 64]).unwrap().permute(&[2, 0, 3, 1, 4]).unwrap();
    time("narrow head", || split.narrow(0, 1, 1)?.reshape(&[1, 12, 197, 64]));
    time("attention", || Tensor::attention(&q, &q, &q, false));
    time("o permute", || q.permute(&[0, 2, 1, 3])?.reshape(&[1, 197, 768]));
    let s = r(&[1, 12, 197, 197]);
    time("softmax 12x197x197", || s.softmax_last());
    time("qk matmul", || q.matmul(&q.permute(&[0,1,3,2])?));
}
