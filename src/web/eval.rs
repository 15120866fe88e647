//! Evaluation over an image set in the page: the options and the summary (CSV, chart).

use super::{js_err, to_js};
use crate::prune::Scorer;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

/// Options of an evaluation (`evalBatch`, `evalSummary`): `{classes, templates, keeps, scorers,
/// layers, seed}`.
#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JsEvalOptions {
    pub(crate) classes: Vec<String>,
    #[serde(default = "default_templates")]
    pub(crate) templates: Vec<String>,
    pub(crate) keeps: Vec<f32>,
    pub(crate) scorers: Vec<String>,
    #[serde(default = "default_layers")]
    pub(crate) layers: Vec<usize>,
    #[serde(default)]
    pub(crate) seed: u64,
}

fn default_templates() -> Vec<String> {
    vec!["a photo of a {}.".into()]
}

fn default_layers() -> Vec<usize> {
    vec![1]
}

impl JsEvalOptions {
    pub(crate) fn parse(v: JsValue) -> Result<Self, JsError> {
        serde_wasm_bindgen::from_value(v).map_err(|e| JsError::new(&format!("evaluation options: {e}")))
    }
    pub(crate) fn methods(&self) -> crate::Result<Vec<crate::eval::Method>> {
        let scorers = self
            .scorers
            .iter()
            .map(|s| {
                let mut sc: Scorer = s.parse()?;
                if let Scorer::Random { seed } = &mut sc {
                    *seed = self.seed;
                }
                Ok(sc)
            })
            .collect::<crate::Result<Vec<_>>>()?;
        crate::eval::methods(&scorers, &self.keeps, &self.layers)
    }
}

/// The rows of an evaluation from its per-image results (`evalBatch`'s, gathered), with the
/// CSV and the latency-vs-accuracy chart (SVG): `{rows, csv, svg}`.
#[wasm_bindgen(js_name = evalSummary)]
pub fn eval_summary(results: JsValue, options: JsValue, title: String) -> Result<JsValue, JsError> {
    let opts = JsEvalOptions::parse(options)?;
    let methods = opts.methods().map_err(js_err)?;
    let results: Vec<crate::eval::ImageResult> = serde_wasm_bindgen::from_value(results).map_err(|e| JsError::new(&format!("evaluation results: {e}")))?;
    if let Some(r) = results.iter().find(|r| r.outcomes.len() != methods.len()) {
        return Err(JsError::new(&format!("{}: {} outcomes for {} methods", r.path, r.outcomes.len(), methods.len())));
    }
    let rows = crate::eval::summarize(&methods, &results);
    #[derive(Serialize)]
    struct Summary {
        rows: Vec<crate::eval::EvalRow>,
        csv: String,
        svg: String,
    }
    to_js(&Summary { csv: crate::eval::csv(&rows), svg: crate::eval::svg(&rows, &title), rows })
}
