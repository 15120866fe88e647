//! Token embeddings.

use crate::error::{Error, Result};
use crate::tensor::{Device, Tensor};

/// A token-embedding table `[rows, dim]`. On the CPU it is a tensor; on the GPU it stays on
/// the host and only the looked-up rows are uploaded, so a real vocabulary (mamba-130m's
/// 50280 × 768 is 154 MB, Qwen2.5's 151936 × 2048 is 1.2 GB in f32) never has to fit in one
/// storage binding (WebGPU's default limit is 128 MiB).
pub struct Embedding {
    table: Table,
    rows: usize,
    dim: usize,
    device: Device,
}

enum Table {
    Device(Tensor),
    Host(Vec<f32>),
}

impl Embedding {
    pub fn new(table: Vec<f32>, rows: usize, dim: usize, device: &Device) -> Result<Embedding> {
        if table.len() != rows * dim {
            return Err(Error::arg(format!("embedding: {} values for [{rows}, {dim}]", table.len())));
        }
        let table = match device {
            Device::Cpu(_) => Table::Device(Tensor::from_f32(table, &[rows, dim], device)?),
            Device::Gpu(_) => Table::Host(table),
        };
        Ok(Embedding { table, rows, dim, device: device.clone() })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The rows of `ids`, `[n, dim]`; an id outside the table is an error naming it.
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= self.rows) {
            return Err(Error::arg(format!("token id {bad} is outside the vocabulary of {}", self.rows)));
        }
        match &self.table {
            Table::Device(t) => t.embedding(&Tensor::from_u32(ids.to_vec(), &[ids.len()], &self.device)?),
            Table::Host(t) => {
                let rows: Vec<f32> = ids.iter().flat_map(|&i| t[i as usize * self.dim..(i as usize + 1) * self.dim].iter().copied()).collect();
                Tensor::from_f32(rows, &[ids.len(), self.dim], &self.device)
            }
        }
    }
}
