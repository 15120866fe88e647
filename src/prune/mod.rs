//! Training-free token pruning: scorers, selection, and the index math every backend shares.
//!
//! A pruning step happens inside one encoder layer, between its attention and its MLP (as in
//! EViT): the layer's attention runs on all tokens and yields the scores; the MLP of that
//! layer and every later layer run on the kept tokens only. Token 0 (CLS) is never scored and
//! never dropped. Kept tokens stay in their original order.

pub mod dart;
pub mod divprune;
pub mod tome;
pub mod visionzip;

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::fmt;
use std::str::FromStr;

/// Which projection's L2 norm scores a token in `kq-norm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KqWhich {
    Key,
    Query,
    /// ‖k‖₂ + ‖q‖₂
    Both,
}

/// How patch tokens are scored; the highest scores are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scorer {
    /// The seed method: L2 norm of each token's Key and/or Query vector at the pruning layer,
    /// all heads together (the norm of the concatenated heads).
    KqNorm(KqWhich),
    /// EViT-style: attention from CLS to each patch, averaged over heads.
    ClsAttn,
    /// Control: uniform random scores from a seeded splitmix64 stream.
    Random { seed: u64 },
    /// Token Merging ([`tome`]), the reference method beside the scorers: it merges tokens
    /// instead of dropping them, in every layer, `r` tokens each, or (`None`) as many as leave
    /// the patches `keep` would.
    Tome { r: Option<usize> },
    /// DivPrune ([`divprune`]): the most diverse subset, greedy max–min selection on the
    /// cosine distance of the token features. Selects rather than scores.
    DivPrune,
    /// VisionZip ([`visionzip`]): dominant tokens by CLS attention plus a few contextual tokens
    /// merged from the rest by key similarity; at one layer.
    VisionZip,
    /// FastV (Chen et al., ECCV 2024), inside a vision-language model's language model: after
    /// layer K the visual tokens that receive the least attention (averaged over heads and
    /// query positions) are dropped; Qwen2.5-VL only.
    FastV,
    /// DART ([`dart`]), inside a vision-language model's language model: at layer K the
    /// visual tokens least duplicated with a few pivot tokens stay; Qwen2.5-VL only.
    Dart,
}

impl Scorer {
    /// True for the methods that choose their tokens on the host from features read back in
    /// the middle of the pass (the others select on the device).
    pub fn selects_on_host(&self) -> bool {
        matches!(self, Scorer::DivPrune | Scorer::VisionZip)
    }

    /// True for the methods that act inside a language model (not on a vision tower).
    pub fn in_language_model(&self) -> bool {
        self.method().tower == Tower::Language
    }

    /// Its entry in [`METHODS`] (every variant has one: `methods_list_every_scorer_once`).
    pub fn method(&self) -> &'static Method {
        let name = match self {
            Scorer::KqNorm(KqWhich::Key) => "kq-norm",
            Scorer::KqNorm(KqWhich::Query) => "kq-norm:query",
            Scorer::KqNorm(KqWhich::Both) => "kq-norm:both",
            Scorer::ClsAttn => "cls-attn",
            Scorer::Random { .. } => "random",
            Scorer::Tome { .. } => "tome",
            Scorer::DivPrune => "divprune",
            Scorer::VisionZip => "visionzip",
            Scorer::FastV => "fastv",
            Scorer::Dart => "dart",
        };
        METHODS.iter().find(|m| m.name == name).unwrap_or(&METHODS[0])
    }

    /// True when the method reads the attention from CLS (a tower without CLS cannot run it).
    pub fn needs_cls(&self) -> bool {
        matches!(self, Scorer::ClsAttn | Scorer::VisionZip)
    }
}

impl FromStr for Scorer {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "kq-norm" | "kq-norm:key" | "k-norm" => Scorer::KqNorm(KqWhich::Key),
            "kq-norm:query" | "q-norm" => Scorer::KqNorm(KqWhich::Query),
            "kq-norm:both" => Scorer::KqNorm(KqWhich::Both),
            "cls-attn" => Scorer::ClsAttn,
            "random" => Scorer::Random { seed: 0 },
            "tome" => Scorer::Tome { r: None },
            "divprune" => Scorer::DivPrune,
            "visionzip" => Scorer::VisionZip,
            "fastv" => Scorer::FastV,
            "dart" => Scorer::Dart,
            other => match other.strip_prefix("tome:").map(str::parse::<usize>) {
                Some(Ok(r)) => Scorer::Tome { r: Some(r) },
                _ => {
                    let names: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
                    return Err(Error::arg(format!("unknown scorer `{other}` (expected {}, kq-norm:key, tome:R)", names.join(", "))));
                }
            },
        })
    }
}

impl fmt::Display for Scorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scorer::KqNorm(KqWhich::Key) => write!(f, "kq-norm:key"),
            Scorer::KqNorm(KqWhich::Query) => write!(f, "kq-norm:query"),
            Scorer::KqNorm(KqWhich::Both) => write!(f, "kq-norm:both"),
            Scorer::ClsAttn => write!(f, "cls-attn"),
            Scorer::Random { .. } => write!(f, "random"),
            Scorer::Tome { r: None } => write!(f, "tome"),
            Scorer::Tome { r: Some(r) } => write!(f, "tome:{r}"),
            Scorer::DivPrune => write!(f, "divprune"),
            Scorer::VisionZip => write!(f, "visionzip"),
            Scorer::FastV => write!(f, "fastv"),
            Scorer::Dart => write!(f, "dart"),
        }
    }
}

/// Where a method acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tower {
    /// Inside a vision encoder (CLIP's, Qwen2.5-VL's), between a layer's attention and its MLP.
    Vision,
    /// Inside a vision-language model's language model (Qwen2.5-VL only).
    Language,
}

/// One pruning method as every front end lists it: the CLI's `--scorer` and `eval`, the page's
/// menu, compare view and evaluation, the npm package (`pruningMethods()`). A new method is
/// an entry here, its [`Scorer`] variant and its code; the lists follow.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Method {
    /// The name `--scorer`, the page's URL and the reports use (parsed by [`Scorer`]'s `FromStr`).
    pub name: &'static str,
    /// The menu's text.
    pub label: &'static str,
    /// The compare view's card title.
    pub short: &'static str,
    pub tower: Tower,
    /// In the default set of a comparison and an evaluation.
    pub compared: bool,
}

/// Every method, in the order the menus show them.
pub const METHODS: &[Method] = &[
    Method { name: "kq-norm", label: "kq-norm (‖key‖)", short: "kq-norm (‖key‖)", tower: Tower::Vision, compared: true },
    Method { name: "kq-norm:query", label: "kq-norm (‖query‖)", short: "kq-norm (‖query‖)", tower: Tower::Vision, compared: false },
    Method { name: "kq-norm:both", label: "kq-norm (‖key‖ + ‖query‖)", short: "kq-norm (‖k‖+‖q‖)", tower: Tower::Vision, compared: false },
    Method { name: "cls-attn", label: "cls-attn (EViT)", short: "cls-attn (EViT)", tower: Tower::Vision, compared: true },
    Method { name: "random", label: "random (control)", short: "random", tower: Tower::Vision, compared: true },
    Method { name: "tome", label: "tome (Token Merging: merges in every layer)", short: "ToMe", tower: Tower::Vision, compared: true },
    Method { name: "divprune", label: "divprune (DivPrune: most diverse tokens)", short: "DivPrune", tower: Tower::Vision, compared: true },
    Method { name: "visionzip", label: "visionzip (VisionZip: dominant + contextual)", short: "VisionZip", tower: Tower::Vision, compared: true },
    Method { name: "fastv", label: "fastv (FastV: least attended, in the LM)", short: "FastV", tower: Tower::Language, compared: false },
    Method { name: "dart", label: "dart (DART: least duplicated, in the LM)", short: "DART", tower: Tower::Language, compared: false },
];

/// The methods a comparison and an evaluation run by default (the page's compare view, `eval
/// clip`): every vision method of [`METHODS`] marked `compared` — each CLIP pruning method
/// once, and ToMe.
pub fn compared_methods() -> Vec<&'static str> {
    METHODS.iter().filter(|m| m.compared && m.tower == Tower::Vision).map(|m| m.name).collect()
}

/// What to prune, where, and how much. `keep` applies at every listed layer (a progressive
/// schedule such as layers 3, 6, 9 keeps p, p², p³ of the patches).
#[derive(Clone, Debug, PartialEq)]
pub struct PruneConfig {
    pub scorer: Scorer,
    pub keep: f32,
    pub layers: Vec<usize>,
}

impl PruneConfig {
    pub fn new(scorer: Scorer, keep: f32, layers: Vec<usize>) -> Result<Self> {
        if !keep.is_finite() || keep <= 0.0 || keep > 1.0 {
            return Err(Error::arg(format!("keep ratio {keep} must be in (0, 1]")));
        }
        if layers.is_empty() {
            return Err(Error::arg("at least one pruning layer is needed"));
        }
        if layers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::arg(format!("pruning layers {layers:?} must be strictly increasing")));
        }
        if scorer == Scorer::VisionZip && layers.len() > 1 {
            return Err(Error::arg(format!("visionzip compresses once, at one layer; got layers {layers:?}")));
        }
        Ok(PruneConfig { scorer, keep, layers })
    }

    /// A config for a comparison of methods under one setting (`eval clip`, the page's compare
    /// view): as [`PruneConfig::new`], except where several layers prune progressively: then
    /// VisionZip, which compresses once, does so at the first of them, and ToMe, which merges
    /// in every layer, merges in all; both to about the final count the others reach
    /// (keep^layers of the patches).
    pub fn for_comparison(scorer: Scorer, keep: f32, layers: &[usize]) -> Result<Self> {
        let fin = keep.powi(layers.len() as i32);
        match (scorer, layers) {
            (Scorer::VisionZip, [first, _, ..]) => Self::new(scorer, fin, vec![*first]),
            (Scorer::Tome { r: None }, [_, _, ..]) => Self::new(scorer, fin, layers.to_vec()),
            _ => Self::new(scorer, keep, layers.to_vec()),
        }
    }

    /// Checks the layers against a model's depth.
    pub fn validate(&self, num_layers: usize) -> Result<()> {
        match self.layers.iter().find(|&&l| l >= num_layers) {
            Some(l) => Err(Error::arg(format!("pruning layer {l} out of range: the encoder has layers 0..={}", num_layers.saturating_sub(1)))),
            None => Ok(()),
        }
    }

    /// True when this config keeps everything (the unpruned path, bit for bit).
    pub fn is_identity(&self) -> bool {
        match self.scorer {
            Scorer::Tome { r: Some(r) } => r == 0,
            _ => self.keep >= 1.0,
        }
    }

    /// ToMe's merges per layer for a tower of `layers` layers over `patches` patches; `None`
    /// for the pruning scorers.
    pub fn tome_schedule(&self, patches: usize, layers: usize) -> Result<Option<Vec<usize>>> {
        match self.scorer {
            Scorer::Tome { r } => tome::schedule(patches, layers, self.keep, r).map(Some),
            _ => Ok(None),
        }
    }
}

pub use crate::num::{n_keep, random_scores, splitmix64, top_k_ascending};

/// The projections of one attention layer that scorers read. `q`, `k`: `[B, N, D]` with CLS
/// at 0; `qh`, `kh`: the same split into heads, `[B, H, N, d]`.
pub struct AttnView<'a> {
    pub q: &'a Tensor,
    pub k: &'a Tensor,
    pub qh: &'a Tensor,
    pub kh: &'a Tensor,
}

impl Scorer {
    /// Scores of the patch tokens (1..N): `[B, N-1]`.
    pub fn score(&self, a: &AttnView, step: usize) -> Result<Tensor> {
        let s = a.q.shape();
        let (b, n) = (s[0], s[1]);
        let patches = |t: &Tensor| t.narrow(1, 1, n - 1);
        match self {
            Scorer::KqNorm(KqWhich::Key) => patches(a.k)?.row_norms(),
            Scorer::KqNorm(KqWhich::Query) => patches(a.q)?.row_norms(),
            Scorer::KqNorm(KqWhich::Both) => patches(a.k)?.row_norms()?.add(&patches(a.q)?.row_norms()?),
            Scorer::ClsAttn => Tensor::cls_attention(a.qh, a.kh),
            Scorer::Random { seed } => Tensor::from_f32(random_scores(*seed, step, b, n - 1), &[b, n - 1], &a.q.device()),
            Scorer::Tome { .. } => Err(Error::arg("tome merges tokens; it does not score them for pruning")),
            Scorer::DivPrune | Scorer::VisionZip => Err(Error::Backend(format!("{self} selects on the host; it has no device scores"))),
            Scorer::FastV | Scorer::Dart => Err(Error::arg(format!("{self} prunes inside a language model (Qwen2.5-VL's); a vision tower has none"))),
        }
    }
}

/// One pruning step as reported: the layer and, per image, the original patch indices kept
/// (row-major over the patch grid: index = row · grid + col).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PruneStep {
    pub layer: usize,
    pub kept: Vec<Vec<u32>>,
}

/// Follows kept indices back to the original patch grid: `orig[b]` are the original indices
/// of the current tokens, `step[b]` the positions kept among them.
pub fn compose(orig: &[Vec<u32>], step: &[u32], k: usize) -> Result<Vec<Vec<u32>>> {
    orig.iter()
        .zip(step.chunks(k.max(1)))
        .map(|(o, s)| s.iter().map(|&i| o.get(i as usize).copied().ok_or_else(|| Error::Backend(format!("kept index {i} out of range")))).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_list_every_scorer_once() {
        for m in METHODS {
            let s: Scorer = m.name.parse().unwrap();
            assert_eq!(s.method().name, m.name, "{} parses to a scorer listed as {}", m.name, s.method().name);
            assert_eq!(METHODS.iter().filter(|o| o.name == m.name).count(), 1, "{} listed twice", m.name);
            assert_eq!(s.in_language_model(), matches!(s, Scorer::FastV | Scorer::Dart));
        }
        assert_eq!(compared_methods(), ["kq-norm", "cls-attn", "random", "tome", "divprune", "visionzip"]);
        let e = "nope".parse::<Scorer>().unwrap_err().to_string();
        assert!(e.contains("kq-norm, kq-norm:query") && e.contains("dart") && e.contains("tome:R"), "{e}");
    }

    #[test]
    fn n_keep_rounds_half_up_and_keeps_one() {
        assert_eq!(n_keep(0.5, 196), 98);
        assert_eq!(n_keep(0.7, 196), 137);
        assert_eq!(n_keep(1.0, 196), 196);
        assert_eq!(n_keep(0.001, 196), 1);
        assert_eq!(n_keep(0.5, 3), 2);
    }

    #[test]
    fn top_k_breaks_ties_by_index_and_returns_ascending() {
        assert_eq!(top_k_ascending(&[1.0, 3.0, 3.0, 2.0], 2), vec![1, 2]);
        assert_eq!(top_k_ascending(&[5.0, 1.0, 1.0, 1.0], 2), vec![0, 1]);
        assert_eq!(top_k_ascending(&[f32::NAN, 0.0, -1.0], 2), vec![1, 2]);
    }

    #[test]
    fn config_rejects_bad_ratios_and_layers() {
        let s = Scorer::KqNorm(KqWhich::Key);
        assert!(PruneConfig::new(s, 0.0, vec![1]).is_err());
        assert!(PruneConfig::new(s, -0.5, vec![1]).is_err());
        assert!(PruneConfig::new(s, 1.01, vec![1]).is_err());
        assert!(PruneConfig::new(s, f32::NAN, vec![1]).is_err());
        assert!(PruneConfig::new(s, 0.5, vec![]).is_err());
        assert!(PruneConfig::new(s, 0.5, vec![3, 3]).is_err());
        let c = PruneConfig::new(s, 0.5, vec![3, 6, 9]).unwrap();
        assert!(c.validate(12).is_ok());
        let e = c.validate(6).unwrap_err().to_string();
        assert!(e.contains("layer 6") && e.contains("0..=5"), "{e}");
        assert!("bogus".parse::<Scorer>().unwrap_err().to_string().contains("bogus"));
        assert_eq!("tome:8".parse::<Scorer>().unwrap(), Scorer::Tome { r: Some(8) });
        assert_eq!("tome".parse::<Scorer>().unwrap().to_string(), "tome");
        assert!("tome:x".parse::<Scorer>().is_err());
        let e = PruneConfig::new(Scorer::VisionZip, 0.5, vec![1, 2]).unwrap_err().to_string();
        assert!(e.contains("one layer"), "{e}");
        let z = PruneConfig::for_comparison(Scorer::VisionZip, 0.5, &[1, 2]).unwrap();
        assert_eq!((z.keep, z.layers), (0.25, vec![1]));
        assert_eq!(PruneConfig::for_comparison(Scorer::DivPrune, 0.5, &[1, 2]).unwrap().layers, vec![1, 2]);
    }

    #[test]
    fn compose_maps_back_to_original_indices() {
        let orig = vec![vec![0, 2, 5, 7], vec![1, 3, 4, 6]];
        assert_eq!(compose(&orig, &[1, 3, 0, 2], 2).unwrap(), vec![vec![2, 7], vec![1, 4]]);
    }

    #[test]
    fn random_scores_are_deterministic_and_in_range() {
        let a = random_scores(7, 0, 2, 50);
        assert_eq!(a, random_scores(7, 0, 2, 50));
        assert_ne!(a, random_scores(7, 1, 2, 50));
        assert!(a.iter().all(|&x| (0.0..1.0).contains(&x)));
    }
}
