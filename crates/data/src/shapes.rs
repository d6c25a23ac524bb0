//! The `noisy-shapes` benchmark: procedurally drawn shapes with compositional captions.

use image::RgbImage;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Class names: the shapes (a scene's `class` is its first object's; zero-shot accepts any of
/// its objects' shapes, since nothing in the image marks one object as first).
pub const SHAPES: [&str; 7] = ["circle", "square", "triangle", "diamond", "cross", "star", "ring"];
const SHAPE_WORDS: [&[&str]; 7] = [
    &["circle", "disc", "round dot"],
    &["square", "box"],
    &["triangle"],
    &["diamond", "rhombus"],
    &["cross", "plus sign"],
    &["star"],
    &["ring", "hollow circle"],
];
/// Colour names, indexed by [`Object::color`].
pub const COLORS: [&str; 8] = ["red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink"];
const COLOR_WORDS: [&[&str]; 8] = [
    &["red"],
    &["green"],
    &["blue"],
    &["yellow"],
    &["purple", "violet"],
    &["orange"],
    &["cyan", "turquoise"],
    &["pink"],
];
const RGB: [[u8; 3]; 8] = [
    [220, 30, 30],
    [30, 170, 50],
    [35, 70, 225],
    [240, 220, 30],
    [140, 40, 190],
    [250, 135, 20],
    [30, 210, 215],
    [250, 115, 190],
];
/// Words for each size (the first is its name), indexed by [`Object::size`].
const SIZE_WORDS: [&[&str]; 2] = [&["small", "little", "tiny"], &["big", "large"]];
/// Words for each position (the first is its name), indexed by [`Object::position`].
const POSITION_WORDS: [&[&str]; 5] = [
    &["top left", "upper left"],
    &["top right", "upper right"],
    &["bottom left", "lower left"],
    &["bottom right", "lower right"],
    &["center", "middle"],
];
/// (column, row) of each position on a 0..1 grid, for relations.
const GRID: [(f32, f32); 5] = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.5, 0.5)];

/// Zero-shot prompt templates (`{}` is the class name), in the captions' own words (they
/// never say "photo"). A test image is named correctly by any of its objects' shapes.
pub const ZERO_SHOT_TEMPLATES: [&str; 6] =
    ["a {}", "there is a {}", "a picture of a {}", "a {} on a plain background", "a small {}", "a big {}"];

/// Caption templates, documented in the README. `{A}`/`{B}` are noun phrases
/// ("a [size] colour shape"), `{pos}` a position phrase ("at the top left"), `{rel}` a relation.
pub const SINGLE_TEMPLATES: [&str; 6] = [
    "{A} {pos}",
    "{A}",
    "there is {A} {pos}",
    "{pos} there is {A}",
    "{A} {pos} on a plain background",
    "a picture of {A} {pos}",
];
/// Caption templates for two-object scenes, with the placeholders of [`SINGLE_TEMPLATES`];
/// `{posA}`/`{posB}` are the position phrases of the first and second object.
pub const PAIR_TEMPLATES: [&str; 5] =
    ["{A} {rel} {B}", "{A} and {B}", "{A} {posA} and {B} {posB}", "there is {A} {rel} {B}", "{B} with {A} {rel} it"];

/// One drawn object.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Object {
    /// Index into [`SHAPES`].
    pub shape: usize,
    /// Index into [`COLORS`].
    pub color: usize,
    /// Index into `SIZE_WORDS` (small, big).
    pub size: usize,
    /// Index into `POSITION_WORDS` (top left, top right, bottom left, bottom right, center).
    pub position: usize,
}

/// A generated scene: image, caption and its objects (first object = class).
#[derive(Debug, Clone)]
pub struct Scene {
    /// The drawn image (square).
    pub image: RgbImage,
    /// The caption; it describes the image truthfully (noise is injected later).
    pub caption: String,
    /// The drawn objects.
    pub objects: Vec<Object>,
}

impl Scene {
    /// The class label: the first object's shape index (0 for a scene without objects).
    pub fn class(&self) -> u32 {
        self.objects.first().map_or(0, |o| o.shape as u32)
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, words: &[&'a str]) -> &'a str {
    words[rng.random_range(0..words.len())]
}

fn with_article(np: &str) -> String {
    let vowel = np.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {np}", if vowel { "an" } else { "a" })
}

fn noun_phrase(rng: &mut ChaCha8Rng, o: &Object, size_prob: f64) -> String {
    let color = pick(rng, COLOR_WORDS[o.color]);
    let shape = pick(rng, SHAPE_WORDS[o.shape]);
    if rng.random_bool(size_prob) {
        with_article(&format!("{} {color} {shape}", pick(rng, SIZE_WORDS[o.size])))
    } else {
        with_article(&format!("{color} {shape}"))
    }
}

fn position_phrase(rng: &mut ChaCha8Rng, p: usize) -> String {
    let prep = if rng.random_bool(0.5) { "at" } else { "in" };
    format!("{prep} the {}", pick(rng, POSITION_WORDS[p]))
}

/// A relation word that is true for `a` relative to `b`.
fn relation(rng: &mut ChaCha8Rng, a: &Object, b: &Object) -> &'static str {
    let (ac, ar) = GRID[a.position];
    let (bc, br) = GRID[b.position];
    let mut options: Vec<&[&str]> = Vec::new();
    if ac < bc {
        options.push(&["to the left of", "left of"]);
    }
    if ac > bc {
        options.push(&["to the right of", "right of"]);
    }
    if ar < br {
        options.push(&["above", "over"]);
    }
    if ar > br {
        options.push(&["below", "under"]);
    }
    // Positions of a pair always differ, so at least one relation holds.
    let words = options[rng.random_range(0..options.len())];
    pick(rng, words)
}

fn caption(rng: &mut ChaCha8Rng, objs: &[Object]) -> String {
    match objs {
        [a] => {
            let t = SINGLE_TEMPLATES[rng.random_range(0..SINGLE_TEMPLATES.len())];
            t.replace("{A}", &noun_phrase(rng, a, 0.8)).replace("{pos}", &position_phrase(rng, a.position))
        }
        [a, b, ..] => {
            let t = PAIR_TEMPLATES[rng.random_range(0..PAIR_TEMPLATES.len())];
            t.replace("{A}", &noun_phrase(rng, a, 0.5))
                .replace("{B}", &noun_phrase(rng, b, 0.5))
                .replace("{rel}", relation(rng, a, b))
                .replace("{posA}", &position_phrase(rng, a.position))
                .replace("{posB}", &position_phrase(rng, b.position))
        }
        [] => String::new(),
    }
}

/// Whether pixel offset (u, v), in units of the radius, is inside the shape.
fn inside(shape: usize, u: f32, v: f32) -> bool {
    match shape {
        0 => u * u + v * v <= 1.0,
        1 => u.abs() <= 0.8 && v.abs() <= 0.8,
        2 => (-0.85..=0.8).contains(&v) && u.abs() <= (v + 0.85) / 1.65 * 0.95,
        3 => u.abs() + v.abs() <= 1.0,
        4 => (u.abs() <= 0.32 && v.abs() <= 0.95) || (v.abs() <= 0.32 && u.abs() <= 0.95),
        5 => {
            let r = (u * u + v * v).sqrt();
            let sector = std::f32::consts::TAU / 5.0;
            let a = (v.atan2(u) + std::f32::consts::FRAC_PI_2).rem_euclid(sector) / sector;
            r <= 0.42 + 0.58 * (1.0 - (a - 0.5).abs() * 2.0)
        }
        _ => {
            let r2 = u * u + v * v;
            (0.3..=1.0).contains(&r2)
        }
    }
}

fn draw(img: &mut RgbImage, o: &Object, rng: &mut ChaCha8Rng) {
    let s = img.width() as f32;
    let (gc, gr) = GRID[o.position];
    let jitter = s * 0.04;
    let cx = s * (0.27 + 0.46 * gc) + rng.random_range(-jitter..=jitter);
    let cy = s * (0.27 + 0.46 * gr) + rng.random_range(-jitter..=jitter);
    let r = s * if o.size == 0 { 0.11 } else { 0.19 };
    let col = RGB[o.color];
    let (x0, x1) = ((cx - r).floor().max(0.0) as u32, ((cx + r).ceil() as u32).min(img.width() - 1));
    let (y0, y1) = ((cy - r).floor().max(0.0) as u32, ((cy + r).ceil() as u32).min(img.height() - 1));
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (u, v) = ((x as f32 + 0.5 - cx) / r, (y as f32 + 0.5 - cy) / r);
            if inside(o.shape, u, v) {
                let n: u32 = rng.random();
                let px = std::array::from_fn(|c| {
                    let d = ((n >> (8 * c)) & 15) as i16 - 8; // mild texture, ±8
                    (col[c] as i16 + d).clamp(0, 255) as u8
                });
                img.put_pixel(x, y, image::Rgb(px));
            }
        }
    }
}

/// Draws one scene. The RNG is advanced deterministically, so a seeded generator reproduces
/// the same dataset exactly.
pub fn generate_scene(rng: &mut ChaCha8Rng, image_size: u32) -> Scene {
    let two = rng.random_bool(0.5);
    let first_pos = rng.random_range(0..5);
    let mut objects = vec![Object {
        shape: rng.random_range(0..SHAPES.len()),
        color: rng.random_range(0..COLORS.len()),
        size: rng.random_range(0..2),
        position: first_pos,
    }];
    if two {
        let mut pos = rng.random_range(0..4);
        if pos >= first_pos {
            pos += 1;
        }
        let mut b = Object {
            shape: rng.random_range(0..SHAPES.len()),
            color: rng.random_range(0..COLORS.len()),
            size: rng.random_range(0..2),
            position: pos,
        };
        if b.shape == objects[0].shape && b.color == objects[0].color {
            b.color = (b.color + 1 + rng.random_range(0..COLORS.len() - 1)) % COLORS.len();
        }
        // Only small objects fit next to the centre without overlapping.
        if first_pos == 4 || pos == 4 {
            objects[0].size = 0;
            b.size = 0;
        }
        objects.push(b);
    }
    // Muted background: a grey level with a slight tint, plus per-pixel noise.
    let g = rng.random_range(20i16..=235);
    let tint: [i16; 3] = std::array::from_fn(|_| rng.random_range(-18..=18));
    let noise_amp = rng.random_range(2u32..=14);
    let mut image = RgbImage::new(image_size, image_size);
    for px in image.pixels_mut() {
        let n: u32 = rng.random();
        *px = image::Rgb(std::array::from_fn(|c| {
            let d = ((n >> (8 * c)) & 0xff) % (2 * noise_amp + 1);
            (g + tint[c] + d as i16 - noise_amp as i16).clamp(0, 255) as u8
        }));
    }
    for o in &objects {
        draw(&mut image, o, rng);
    }
    let caption = caption(rng, &objects);
    Scene { image, caption, objects }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn deterministic_and_diverse() {
        let gen_all = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..2000).map(|_| generate_scene(&mut rng, 32)).collect::<Vec<_>>()
        };
        let a = gen_all(3);
        let b = gen_all(3);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.caption, y.caption);
            assert_eq!(x.image, y.image);
        }
        let distinct: std::collections::HashSet<_> = a.iter().map(|s| &s.caption).collect();
        assert!(distinct.len() > 1200, "only {} distinct captions", distinct.len());
        let classes: std::collections::HashSet<_> = a.iter().map(Scene::class).collect();
        assert_eq!(classes.len(), SHAPES.len());
        assert!(a.iter().all(|s| !s.caption.is_empty() && !s.caption.contains('{')));
        assert!(a.iter().any(|s| s.caption.contains("an orange")));
        assert_ne!(a[0].image, gen_all(4)[0].image);
    }

    #[test]
    fn shapes_are_drawn_in_object_colour() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let s = generate_scene(&mut rng, 64);
        let col = RGB[s.objects[0].color];
        let close = s.image.pixels().filter(|p| (0..3).all(|c| (p[c] as i16 - col[c] as i16).abs() <= 8)).count();
        assert!(close > 20, "{close}");
    }
}
