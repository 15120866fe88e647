"""effarch's int8 linear layer (`--precision int8`), written in numpy from its definition (the
scheme in `src/tensor/cpu/gemm/int8/mod.rs`'s docs), not from the Rust: the goldens are made with it.

  weights      symmetric per output channel: s_w = max|W[j,:]| / 127,
               q_w = rint(W[j,:] * (127 / max|W[j,:]|)), ties to even, clipped to ±127;
  activations  the same per row (token), on the fly;
  product      exact integer dot products (int64 here: nothing to overflow);
  epilogue     y = f32(acc) * (s_x[i] * s_w[j]) + b[j], all in float32.

The relaxed-SIMD wasm build's variant (`act_u7=True`): each activation row to 7 unsigned
bits with a zero point (the unsigned operand of `i32x4.relaxed_dot_i8x16_i7x16_add_s`):
lo = min(x, 0), hi = max(x, 0), inv = 127 / (hi - lo), zp = rint(-lo * inv),
u = clip(rint(x * inv) + zp, 0, 127), x ~ (hi - lo) / 127 * (u - zp); weights and everything
else as above.

A zero row has scale 0 and values 0. Every step is float32, as in the engine.
"""
import numpy as np

F = np.float32


def quantize_rows(x):
    """int8 values (as int64) and float32 scales of each row of a 2-D float32 array."""
    x = np.asarray(x, dtype=F)
    amax = np.abs(x).max(axis=1)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, F(127) / amax, F(0)).astype(F)
    q = np.clip(np.rint(x * inv[:, None]), -127, 127).astype(np.int64)
    return q, (amax / F(127)).astype(F)


def quantize_rows_u7(x):
    """The relaxed-SIMD variant's activations: `u - zp` (as int64) and float32 scales."""
    x = np.asarray(x, dtype=F)
    lo = np.minimum(x.min(axis=1), F(0)).astype(F)
    hi = np.maximum(x.max(axis=1), F(0)).astype(F)
    rng = (hi - lo).astype(F)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(rng > 0, F(127) / rng, F(0)).astype(F)
    zp = np.clip(np.rint(-lo * inv), 0, 127).astype(F)
    u = np.clip(np.rint(x * inv[:, None]) + zp[:, None], 0, 127)
    return (u - zp[:, None]).astype(np.int64), (rng / F(127)).astype(F)


def linear(x, w, b=None, act_u7=False):
    """`x @ w.T + b` in effarch's int8 scheme; x is [..., k], w [n, k]; returns float32."""
    x = np.asarray(x, dtype=F)
    lead, k = x.shape[:-1], x.shape[-1]
    qx, sx = (quantize_rows_u7 if act_u7 else quantize_rows)(x.reshape(-1, k))
    qw, sw = quantize_rows(np.asarray(w, dtype=F))
    acc = (qx @ qw.T).astype(F)
    y = acc * (sx[:, None] * sw[None, :])
    if b is not None:
        y = y + np.asarray(b, dtype=F)[None, :]
    return y.astype(F).reshape(*lead, w.shape[0])


def patch_torch_linears(module):
    """Makes every `torch.nn.Linear` under `module` compute with `linear` above (convolutions
    and everything else stay as they are)."""
    import torch

    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            def fwd(x, m=m):
                b = None if m.bias is None else m.bias.detach().numpy()
                return torch.from_numpy(linear(x.detach().numpy(), m.weight.detach().numpy(), b))
            m.forward = fwd
    return module
