//! `effarch eval qwen`: visual question answering per pruning method (method × keep) over a
//! set of `{image, question, answers}` lines: exact-match and contains-answer accuracy,
//! agreement with the unpruned model's answer, prefill time (vision tower and language model)
//! and decode tokens/s, so accuracy can be plotted against prefill time.

use super::EvalRow;
use crate::error::Result;
use crate::models::lm::SampleOptions;
use crate::models::qwen::processor::ImagePatches;
use crate::models::qwen::{QwenPrune, QwenVL};
use crate::prune::Scorer;
use serde::{Deserialize, Serialize};

/// One question of the set (a line of the JSONL file).
#[derive(Clone, Debug, Deserialize)]
pub struct Question {
    /// Relative to the JSONL file.
    pub image: std::path::PathBuf,
    pub question: String,
    /// Accepted answers (any of them counts).
    pub answers: Vec<String>,
}

/// Questions a set may hold.
pub const MAX_QUESTIONS: usize = 100_000;

/// Reads `questions.jsonl` (one JSON object per line; blank lines skipped); image paths become
/// relative to the file's directory. A bad line is an error naming the file and line.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_questions(path: &std::path::Path) -> Result<Vec<Question>> {
    use crate::error::Error;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut q: Question = serde_json::from_str(line)
            .map_err(|e| Error::arg(format!("{}:{}: {e} (expected {{\"image\", \"question\", \"answers\"}})", path.display(), i + 1)))?;
        if q.answers.is_empty() || q.question.trim().is_empty() {
            return Err(Error::arg(format!("{}:{}: a question needs text and at least one answer", path.display(), i + 1)));
        }
        q.image = dir.join(&q.image);
        out.push(q);
        if out.len() > MAX_QUESTIONS {
            return Err(Error::arg(format!("{}: more than {MAX_QUESTIONS} questions", path.display())));
        }
    }
    if out.is_empty() {
        return Err(Error::arg(format!("{}: no questions", path.display())));
    }
    Ok(out)
}

/// Lower case, punctuation to spaces, articles dropped, whitespace collapsed (the usual VQA
/// answer normalisation, simplified).
pub fn normalize(s: &str) -> String {
    let lower: String = s.to_lowercase().chars().map(|c| if c.is_alphanumeric() || c.is_whitespace() { c } else { ' ' }).collect();
    lower.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).collect::<Vec<_>>().join(" ")
}

/// `(exact, contains)`: the normalised output equals an answer, or holds one as whole words.
pub fn score_answer(output: &str, answers: &[String]) -> (bool, bool) {
    let o = normalize(output);
    let padded = format!(" {o} ");
    let exact = answers.iter().any(|a| normalize(a) == o);
    let contains = answers.iter().map(|a| normalize(a)).any(|a| !a.is_empty() && padded.contains(&format!(" {a} ")));
    (exact, contains)
}

/// One evaluated setting: the unpruned model, or a method at a keep.
#[derive(Clone, Debug)]
pub struct QwenMethod {
    pub name: String,
    pub keep: f32,
    pub prune: Option<QwenPrune>,
}

/// The unpruned model first, then every method at every keep < 1.
pub fn methods(scorers: &[Scorer], keeps: &[f32], llm_layer: usize) -> Vec<QwenMethod> {
    let mut v = vec![QwenMethod { name: "unpruned".into(), keep: 1.0, prune: None }];
    for &s in scorers {
        for &k in keeps.iter().filter(|&&k| k < 1.0) {
            v.push(QwenMethod { name: s.to_string(), keep: k, prune: Some(QwenPrune { scorer: s, keep: k, block: None, llm_layer: Some(llm_layer) }) });
        }
    }
    v
}

/// One question under one method.
#[derive(Clone, Debug, Serialize)]
pub struct QwenOutcome {
    pub answer: String,
    pub exact: bool,
    pub contains: bool,
    /// Vision tower and language-model prefill, ms.
    pub prefill_ms: f64,
    pub tokens_per_s: f64,
    pub flops_ratio: f64,
}

/// Every method on one question (greedy, at most `max_new_tokens`).
pub fn run_question(m: &QwenVL, img: &ImagePatches, q: &Question, methods: &[QwenMethod], max_new_tokens: usize) -> Result<Vec<QwenOutcome>> {
    let o = SampleOptions { max_new_tokens, ..SampleOptions::default() };
    methods
        .iter()
        .map(|me| {
            let r = m.generate(img, &q.question, me.prune.as_ref(), &o, |_| {})?;
            let (exact, contains) = score_answer(&r.text, &q.answers);
            Ok(QwenOutcome {
                exact,
                contains,
                prefill_ms: r.prefill.vision_ms + r.prefill.prefill_ms,
                tokens_per_s: r.tokens_per_s,
                flops_ratio: r.prefill.flops_ratio,
                answer: r.text,
            })
        })
        .collect()
}

/// One method's figures over the set.
#[derive(Clone, Debug, Serialize)]
pub struct QwenEvalRow {
    pub method: String,
    pub keep: f64,
    pub questions: usize,
    pub exact: f64,
    pub contains: f64,
    /// Share of questions answered exactly as the unpruned model answered them.
    pub agree: f64,
    pub prefill_ms: f64,
    pub tokens_per_s: f64,
    pub flops_ratio: f64,
}

/// The rows: means over the questions, per method (in [`methods`] order).
pub fn summarize(methods: &[QwenMethod], outcomes: &[Vec<QwenOutcome>]) -> Vec<QwenEvalRow> {
    let n = outcomes.len().max(1) as f64;
    let mean = |mi: usize, f: &dyn Fn(&QwenOutcome, &QwenOutcome) -> f64| outcomes.iter().map(|o| f(&o[mi], &o[0])).sum::<f64>() / n;
    methods
        .iter()
        .enumerate()
        .map(|(mi, m)| QwenEvalRow {
            method: m.name.clone(),
            keep: (m.keep as f64 * 1e6).round() / 1e6,
            questions: outcomes.len(),
            exact: mean(mi, &|o, _| o.exact as u8 as f64),
            contains: mean(mi, &|o, _| o.contains as u8 as f64),
            agree: mean(mi, &|o, b| (o.answer == b.answer) as u8 as f64),
            prefill_ms: mean(mi, &|o, _| o.prefill_ms),
            tokens_per_s: mean(mi, &|o, _| o.tokens_per_s),
            flops_ratio: mean(mi, &|o, _| o.flops_ratio),
        })
        .collect()
}

/// `results.csv`: a header and one line per row.
pub fn csv(rows: &[QwenEvalRow]) -> String {
    let mut s = String::from("method,keep,questions,exact,contains,agree,prefill_ms,tokens_per_s,flops_ratio\n");
    for r in rows {
        s += &format!(
            "{},{},{},{:.6},{:.6},{:.6},{:.3},{:.3},{:.6}\n",
            r.method, r.keep, r.questions, r.exact, r.contains, r.agree, r.prefill_ms, r.tokens_per_s, r.flops_ratio
        );
    }
    s
}

/// `accuracy_vs_prefill.svg`: contains-answer accuracy against prefill ms and against keep,
/// a line per method (the chart of `eval clip`).
pub fn svg(rows: &[QwenEvalRow], title: &str) -> String {
    let as_rows: Vec<EvalRow> = rows
        .iter()
        .map(|r| EvalRow {
            scorer: r.method.clone(),
            keep: r.keep,
            images: r.questions,
            top1: r.contains,
            top5: r.contains,
            agree_top1: r.agree,
            cos_to_unpruned: 1.0,
            ms_per_img: r.prefill_ms,
            images_per_s: 0.0,
            flops_ratio: r.flops_ratio,
            ..Default::default()
        })
        .collect();
    super::svg_labeled(&as_rows, title, "contains-answer accuracy", "prefill ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_normalise_and_match() {
        assert_eq!(normalize("  The Cat, sat!  "), "cat sat");
        let a = vec!["a cat".to_string(), "kitten".to_string()];
        assert_eq!(score_answer("Cat.", &a), (true, true));
        assert_eq!(score_answer("It is a cat on a mat", &a), (false, true));
        assert_eq!(score_answer("category", &a), (false, false), "whole words only");
        assert_eq!(score_answer("", &a), (false, false));
    }

    #[test]
    fn methods_put_the_unpruned_model_first() {
        let m = methods(&[Scorer::FastV, Scorer::DivPrune], &[1.0, 0.5, 0.25], 2);
        let names: Vec<(String, f32)> = m.iter().map(|m| (m.name.clone(), m.keep)).collect();
        assert_eq!(names[0], ("unpruned".into(), 1.0));
        assert_eq!(names.len(), 5);
        assert_eq!(m[1].prune.as_ref().unwrap().llm_layer, Some(2));
    }
}
