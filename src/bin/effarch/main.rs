//! The native CLI: `effarch clip|mamba|qwen|typeseg|bench …`, one file per command. Every
//! command takes `--json` for one machine-readable object on stdout. Not built for wasm (the
//! page uses `effarch::web` instead).

#[cfg(not(target_arch = "wasm32"))]
mod bench;
#[cfg(not(target_arch = "wasm32"))]
mod clip;
#[cfg(not(target_arch = "wasm32"))]
mod common;
#[cfg(not(target_arch = "wasm32"))]
mod eval;
#[cfg(not(target_arch = "wasm32"))]
mod mamba;
#[cfg(not(target_arch = "wasm32"))]
mod quantize;
#[cfg(not(target_arch = "wasm32"))]
mod qwen;
#[cfg(not(target_arch = "wasm32"))]
mod typeseg;

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use clap::{Parser, Subcommand};
    use std::process::ExitCode;

    #[derive(Parser)]
    #[command(name = "effarch", version, about = "Efficient neural architectures: CLIP token pruning and friends")]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
        /// Show what the GPU drivers print while adapters are probed (hidden otherwise; also shown
        /// when RUST_LOG is set).
        #[arg(long, global = true)]
        verbose: bool,
    }

    #[derive(Subcommand)]
    enum Cmd {
        /// Embed an image with CLIP, pruning vision tokens on the way.
        Clip(super::clip::ClipArgs),
        /// Generate text with a Mamba LM (HF MambaForCausalLM layout), optionally with the MRSS proxy.
        Mamba(super::mamba::MambaArgs),
        /// Describe an image with Qwen2.5-VL, pruning visual tokens before the language model.
        Qwen(super::qwen::QwenArgs),
        /// The trained typeseg Mamba: our scan against its reference outputs, and MRSS's cost on real text
        /// (scripts/typeseg_check.py prepares the files).
        Typeseg(super::typeseg::TypesegArgs),
        /// Evaluations over an image set: accuracy against latency per pruning method.
        Eval {
            #[command(subcommand)]
            which: super::eval::EvalCmd,
        },
        /// Write a checkpoint in the hub layout with int8 linear weights (same names, plus
        /// `<name>_scale`), loadable by every command and the page.
        Quantize(super::quantize::QuantizeArgs),
        /// Benchmarks with full-size random-weight models (no download).
        Bench {
            #[command(subcommand)]
            which: super::bench::BenchCmd,
        },
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        super::common::set_verbose(cli.verbose);
        let res = match cli.cmd {
            Cmd::Clip(a) => super::clip::run(a),
            Cmd::Mamba(a) => super::mamba::run(a),
            Cmd::Qwen(a) => super::qwen::run(a),
            Cmd::Typeseg(a) => super::typeseg::run(a),
            Cmd::Eval { which } => super::eval::run(which),
            Cmd::Quantize(a) => super::quantize::run(a),
            Cmd::Bench { which } => super::bench::run(which),
        };
        match res {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
