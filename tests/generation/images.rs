//! Image preprocessing against PIL and torchvision byte for byte, and JPEG decoding against
//! libjpeg-turbo (PIL).

use super::*;

// ---- PIL's bicubic resize -----------------------------------------------------------------

#[test]
fn bicubic_resize_matches_pillow_byte_for_byte() {
    let fx = fixture("pil-resize");
    let img = effarch::image::decode(&std::fs::read(root().join(fx["image"].as_str().unwrap())).unwrap()).unwrap();
    for s in fx["sizes"].as_array().unwrap() {
        let (w, h) = (s["width"].as_u64().unwrap() as u32, s["height"].as_u64().unwrap() as u32);
        let out = effarch::image::resize_bicubic(&img, w, h);
        let hash = effarch::num::fnv1a64(out.as_raw());
        assert_eq!(format!("{hash:016x}"), s["fnv1a64"].as_str().unwrap(), "resize to {w}x{h} differs from Pillow's");
    }
}

/// torchvision's antialiased uint8 bicubic resize (transformers 5's default image processors)
/// byte for byte: the same nine sizes and the CLIP resize of a sample photo, where PIL's
/// differs in hundreds to tens of thousands of bytes (the fixture says how many).
#[test]
fn bicubic_resize_matches_torchvision_byte_for_byte() {
    use effarch::image::Resample;
    let fx = fixture("tv-resize");
    let sizes = fx["sizes"].as_array().unwrap();
    assert_eq!(sizes.len(), 10, "cases in tv-resize.json");
    for s in sizes {
        let path = s["image"].as_str().unwrap();
        let img = effarch::image::decode(&std::fs::read(root().join(path)).unwrap()).unwrap();
        let (w, h) = (s["width"].as_u64().unwrap() as u32, s["height"].as_u64().unwrap() as u32);
        let out = Resample::Torchvision.resize(&img, w, h);
        let hash = effarch::num::fnv1a64(out.as_raw());
        assert_eq!(format!("{hash:016x}"), s["fnv1a64"].as_str().unwrap(), "{path} resized to {w}x{h} differs from torchvision's");
        let pil = Resample::Pil.resize(&img, w, h);
        let differ = out.as_raw().iter().zip(pil.as_raw()).filter(|(a, b)| a != b).count();
        assert_eq!(differ as u64, s["bytes_differing_from_pil"].as_u64().unwrap(), "{path} {w}x{h}: bytes where PIL's resize differs");
    }
}

// ---- JPEG decoding: libjpeg-turbo's pixels ------------------------------------------------

/// The four sample photos and small JPEGs in the other layouts (4:2:2, 4:4:4, grey, restart
/// intervals, odd sizes, progressive) decode to Pillow's pixels (libjpeg-turbo: islow IDCT,
/// fancy upsampling) byte for byte, all through our decoder.
#[test]
fn jpeg_decoding_matches_pillow_byte_for_byte() {
    let fx = fixture("pil-jpeg");
    for f in fx["files"].as_array().unwrap() {
        let name = f["file"].as_str().unwrap();
        let bytes = std::fs::read(root().join(name)).unwrap();
        let img = effarch::image::decode(&bytes).unwrap();
        assert_eq!((img.width() as u64, img.height() as u64), (f["width"].as_u64().unwrap(), f["height"].as_u64().unwrap()), "{name}");
        assert!(effarch::image::jpeg::decode(&bytes).unwrap().is_some(), "{name}: our decoder covers it");
        let hash = effarch::num::fnv1a64(img.as_raw());
        assert_eq!(format!("{hash:016x}"), f["fnv1a64"].as_str().unwrap(), "{name}: pixels differ from Pillow's");
    }
}
