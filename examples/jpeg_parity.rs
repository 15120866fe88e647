//! Pixel differences to Pillow (libjpeg-turbo) of effarch's JPEG decoder and of the `image`
//! crate's (zune-jpeg), per file:
//!   python3 tests/fixtures/make_jpeg_fixtures.py --dump /tmp/pil   (Pillow's RGB, NAME.rgb)
//!   cargo run --release --example jpeg_parity -- /tmp/pil www/samples/*.jpg
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((dump, files)) = args.split_first() else {
        eprintln!("usage: jpeg_parity PIL_DUMP_DIR FILE.jpg...");
        std::process::exit(2);
    };
    println!("{:<24} {:>9} {:>16} {:>16}", "file", "pixels", "effarch max|Δ| n", "image-rs max|Δ| n");
    for f in files {
        let bytes = std::fs::read(f).expect("readable file");
        let name = Path::new(f).file_name().unwrap().to_string_lossy().to_string();
        let pil = std::fs::read(Path::new(dump).join(format!("{name}.rgb"))).expect("Pillow dump (make_jpeg_fixtures.py --dump)");
        let ours = effarch::image::decode(&bytes).expect("decodes");
        let general = image::load_from_memory(&bytes).expect("decodes").to_rgb8();
        let diff = |a: &[u8]| {
            let d: Vec<u8> = a.iter().zip(&pil).map(|(x, y)| x.abs_diff(*y)).collect();
            (d.iter().copied().max().unwrap_or(0), d.iter().filter(|&&v| v > 0).count())
        };
        let (a, b) = (diff(ours.as_raw()), diff(general.as_raw()));
        println!("{name:<24} {:>9} {:>9} {:>6} {:>9} {:>6}", pil.len() / 3, a.0, a.1, b.0, b.1);
    }
}
