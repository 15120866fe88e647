//! Fixed costs of the GPU path, for a real GPU: the host time to record one small op, the
//! time of a read-back round trip, and the throughput of the linear kernel on a large matmul.
//! `cargo run --release --example gpu_overhead`.
use effarch::clock::now_ms;
use effarch::tensor::{Device, Tensor};

fn main() -> effarch::Result<()> {
    let dev = Device::gpu()?;
    println!("{}", dev.describe());
    let v = |n: usize| effarch::num::random_values(n, 3, 1.0);
    // 1. Host time per recorded op: 200 small linears (1×768 · 768×768), then one read-back.
    let x = Tensor::from_f32(v(768), &[1, 768], &dev)?;
    let w = Tensor::from_f32(v(768 * 768), &[768, 768], &dev)?;
    for round in 0..3 {
        let t0 = now_ms();
        let mut y = x.clone();
        for _ in 0..200 {
            y = y.linear(&w, None)?.scale(1e-3)?;
        }
        let t1 = now_ms();
        let _ = y.to_vec_f32()?;
        let t2 = now_ms();
        println!("round {round}: 400 ops recorded in {:.2} ms ({:.3} ms/op), then waited {:.2} ms", t1 - t0, (t1 - t0) / 400.0, t2 - t1);
    }
    // 2. Read-back round trip of one tiny tensor.
    for _ in 0..3 {
        let t0 = now_ms();
        let _ = x.scale(1.0)?.to_vec_f32()?;
        println!("one op + read-back: {:.3} ms", now_ms() - t0);
    }
    // 2b. The pieces of one op on the host: a uniform buffer, a bind group, a recorded
    // dispatch of a trivial kernel (submitted every 48), and the wait.
    let effarch::tensor::Device::Gpu(c) = &dev else { unreachable!() };
    let t0 = now_ms();
    for i in 0..1000u32 {
        let _u = c.uniform(&[i, 0, 0, 0]);
    }
    println!("uniform buffer: {:.4} ms each", (now_ms() - t0) / 1000.0);
    let t0 = now_ms();
    for i in 0..1000u32 {
        let _u = c.uniform(&[i % 10, 1, 0, 0]);
    }
    println!("uniform buffer, parameters seen before (kept by content): {:.4} ms each", (now_ms() - t0) / 1000.0);
    let wgsl = "@group(0) @binding(0) var<storage, read_write> a: array<f32>;\n@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { if (g.x < arrayLength(&a)) { a[g.x] = a[g.x] + 1.0; } }";
    let pipe = c.pipeline("probe_inc", wgsl);
    let buf = c.upload(&[0.0; 64], &[64])?;
    for round in 0..2 {
        let t0 = now_ms();
        for _ in 0..1000 {
            c.dispatch(&pipe, &[&buf.buf], (1, 1, 1))?;
        }
        let t1 = now_ms();
        let r = c.read_blocking(&buf)?;
        let t2 = now_ms();
        println!("round {round}: 1000 trivial dispatches recorded in {:.4} ms each, wait {:.2} ms (value {})", (t1 - t0) / 1000.0, t2 - t1, r[0]);
    }
    let t0 = now_ms();
    for _ in 0..1000 {
        let _g = c.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipe.get_bind_group_layout(0),
            entries: &[wgpu::BindGroupEntry { binding: 0, resource: buf.buf.as_entire_binding() }],
        });
    }
    println!("bind group: {:.4} ms each", (now_ms() - t0) / 1000.0);
    // 3. Linear kernel throughput: [6304, 768] · [2304, 768]ᵀ (ViT-B/16 QKV at batch 32).
    let (m, k, n) = (6304, 768, 2304);
    let a = Tensor::from_f32(v(m * k), &[m, k], &dev)?;
    let b = Tensor::from_f32(v(n * k), &[n, k], &dev)?;
    let _ = a.linear(&b, None)?.to_vec_f32()?;
    for reps in [1, 10] {
        let t0 = now_ms();
        let mut last = None;
        for _ in 0..reps {
            last = Some(a.linear(&b, None)?);
        }
        let _ = last.map(|t| t.narrow(0, 0, 1).and_then(|t| t.to_vec_f32())).transpose()?;
        let ms = (now_ms() - t0) / reps as f64;
        println!("linear {m}×{k}·{n}: {ms:.3} ms, {:.1} GFLOP/s", 2.0 * (m * k * n) as f64 / ms / 1e6);
    }
    // 4. The ops of one ViT-B/16 layer at batch 1 and 32: ms per op (20 in a row, one wait).
    for b in [1usize, 32] {
        let m = b * 197;
        let x = Tensor::from_f32(v(m * 768), &[b, 197, 768], &dev)?;
        let h = Tensor::from_f32(v(m * 3072), &[b, 197, 3072], &dev)?;
        let qkv = Tensor::from_f32(v(m * 2304), &[b, 197, 2304], &dev)?;
        let w_qkv = Tensor::from_f32(v(2304 * 768), &[2304, 768], &dev)?;
        let w_fc1 = Tensor::from_f32(v(3072 * 768), &[3072, 768], &dev)?;
        let w_fc2 = Tensor::from_f32(v(768 * 3072), &[768, 3072], &dev)?;
        let lnw = Tensor::from_f32(vec![1.0; 768], &[768], &dev)?;
        let lnb = Tensor::from_f32(vec![0.0; 768], &[768], &dev)?;
        let ops: Vec<(&str, Box<dyn Fn() -> effarch::Result<Tensor>>)> = vec![
            ("qkv linear", Box::new(|| x.linear(&w_qkv, None))),
            ("fc1 linear", Box::new(|| x.linear(&w_fc1, None))),
            ("fc2 linear", Box::new(|| h.linear(&w_fc2, None))),
            ("attention", Box::new(|| Tensor::attention_packed(&qkv, 12, false))),
            ("layer norm", Box::new(|| x.layer_norm(&lnw, &lnb, 1e-5))),
            ("quick_gelu", Box::new(|| h.act(effarch::tensor::Activation::QuickGelu))),
        ];
        for (name, op) in &ops {
            let _ = op()?.to_vec_f32()?;
            let t0 = now_ms();
            let mut last = None;
            for _ in 0..20 {
                last = Some(op()?);
            }
            let _ = last.map(|t| t.narrow(0, 0, 1).and_then(|t| t.to_vec_f32())).transpose()?;
            println!("b{b} {name}: {:.3} ms", (now_ms() - t0) / 20.0);
        }
    }
    Ok(())
}
