//! Token Merging (ToMe, Bolya et al., ICLR 2023) beside pruning, on the host: the merge
//! schedule, and the matching and merge are the backends' (`tensor/cpu/tome.rs`,
//! `tensor/gpu/tome.wgsl`), re-exported here.
//!
//! In a layer that merges, the attention sees every token (with proportional attention: the
//! log of the patches each token holds added to its logits once tokens have merged), the keys
//! averaged over heads are the similarity metric, `r` tokens merge into others, and the MLP
//! runs on what is left. CLS is never merged. Tokens after a merge: the unmerged tokens of set A
//! in index order (CLS first), then every token of set B — the reference implementation's order.

use crate::error::{Error, Result};

/// Tokens to merge in each of `layers` layers: `r` in every layer, or the merges that leave
/// `n_keep(keep, patches)` patches (as pruning at `keep` would) spread evenly, the earlier layers
/// taking the remainder. A layer merges at most half of its non-CLS tokens ([`max_merge`]).
pub fn schedule(patches: usize, layers: usize, keep: f32, r: Option<usize>) -> Result<Vec<usize>> {
    if layers == 0 {
        return Err(Error::arg("ToMe needs at least one encoder layer"));
    }
    if let Some(r) = r {
        let most = max_merge(patches + 1);
        if r > most {
            return Err(Error::arg(format!("--tome-r {r} is more than one layer can merge: {most} of {patches} patches (half, CLS kept)")));
        }
        return Ok(vec![r; layers]);
    }
    let total = patches - crate::num::n_keep(keep, patches);
    Ok((0..layers).map(|i| total / layers + usize::from(i < total % layers)).collect())
}

pub use crate::tensor::cpu::tome::{bipartite_match, key_metric, max_merge, merge_wavg, Matching};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_matches_the_pruned_token_count_or_a_fixed_r() {
        assert_eq!(schedule(196, 4, 0.5, None).unwrap(), vec![25, 25, 24, 24]);
        assert_eq!(schedule(196, 12, 0.5, None).unwrap().iter().sum::<usize>(), 98);
        assert_eq!(schedule(196, 12, 1.0, None).unwrap(), vec![0; 12]);
        assert_eq!(schedule(196, 3, 0.5, Some(8)).unwrap(), vec![8; 3]);
        let e = schedule(196, 3, 0.5, Some(99)).unwrap_err().to_string();
        assert!(e.contains("--tome-r 99") && e.contains("98"), "{e}");
    }
}
