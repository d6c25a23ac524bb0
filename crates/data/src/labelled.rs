//! A labelled image folder for zero-shot evaluation, laid out as torchvision's `ImageFolder`
//! (ImageNet's validation set, for one): one sub-folder per class, sorted by name, holding the
//! class's images. Optional `classnames.txt` (one readable name per class, in sub-folder order)
//! and `templates.txt` (prompts, `{}` for the class name) beside the sub-folders.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::lines::{map_in_chunks, read_lines};
use crate::preprocess::{PreprocessConfig, decode_and_preprocess};
use crate::shard::IMAGE_EXTS;

/// open_clip's ImageNet prompt templates (OpenAI's 80, `{}` for the class name).
pub const OPENAI_IMAGENET_TEMPLATES: &str = include_str!("../assets/openai_imagenet_templates.txt");

/// The file of class names a labelled folder may hold.
pub const CLASSNAMES_FILE: &str = "classnames.txt";
/// The file of prompt templates a labelled folder may hold.
pub const TEMPLATES_FILE: &str = "templates.txt";

/// A labelled folder's images, preprocessed (centre crop), with their classes.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledImages {
    /// Readable class names, in class-index order.
    pub class_names: Vec<String>,
    /// Prompt templates: the folder's `templates.txt`, else `a photo of a {}.`.
    pub templates: Vec<String>,
    /// `len · 3 · image_size²` floats, CHW per image.
    pub images: Vec<f32>,
    /// The class index of every image.
    pub labels: Vec<usize>,
    /// Images that could not be read or decoded (skipped).
    pub skipped: u64,
}

/// Reads every image of `dir`'s class sub-folders (sorted, as `ImageFolder`) and preprocesses
/// it with `preprocess`'s centre crop, on `threads` threads.
pub fn load_labelled_folder(dir: &Path, preprocess: &PreprocessConfig, threads: usize) -> Result<LabelledImages> {
    let classes = class_folders(dir)?;
    let class_names = match read_lines_if_there(&dir.join(CLASSNAMES_FILE))? {
        Some(names) if names.len() == classes.len() => names,
        Some(names) => {
            return Err(DataError::Input {
                path: dir.join(CLASSNAMES_FILE),
                reason: format!("{} names for {} class folders", names.len(), classes.len()),
            });
        }
        None => classes.iter().map(|c| folder_name(c).replace('_', " ")).collect(),
    };
    let templates = read_lines_if_there(&dir.join(TEMPLATES_FILE))?.unwrap_or_else(|| vec!["a photo of a {}.".into()]);
    let files: Vec<(PathBuf, usize)> = classes
        .iter()
        .enumerate()
        .flat_map(|(label, class)| images_in(class).into_iter().map(move |file| (file, label)))
        .collect();
    let centre = PreprocessConfig { random_resized_crop: None, ..preprocess.clone() };
    let decoded = map_in_chunks(&files, threads, |(file, _)| {
        let bytes = std::fs::read(file).ok()?;
        decode_and_preprocess(&bytes, &centre, 0).ok()
    })?;
    let mut out = LabelledImages { class_names, templates, images: Vec::new(), labels: Vec::new(), skipped: 0 };
    for (pixels, (_, label)) in decoded.into_iter().zip(&files) {
        match pixels {
            Some(pixels) => {
                out.images.extend_from_slice(&pixels);
                out.labels.push(*label);
            }
            None => out.skipped += 1,
        }
    }
    if out.labels.is_empty() {
        return Err(DataError::Input { path: dir.to_path_buf(), reason: "holds no readable image".into() });
    }
    Ok(out)
}

/// The class sub-folders, sorted by name.
fn class_folders(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut classes: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    classes.sort();
    if classes.is_empty() {
        return Err(DataError::Input { path: dir.to_path_buf(), reason: "has no class sub-folders".into() });
    }
    Ok(classes)
}

fn folder_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The image files of a class folder, sorted by name.
fn images_in(class: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(class)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|f| {
        f.extension().is_some_and(|x| IMAGE_EXTS.contains(&x.to_string_lossy().to_ascii_lowercase().as_str()))
    });
    files.sort();
    files
}

/// [`read_lines`] of an optional file: `None` when it is not there.
fn read_lines_if_there(path: &Path) -> Result<Option<Vec<String>>> {
    path.exists().then(|| read_lines(path)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(colour: [u8; 3]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_pixel(8, 8, image::Rgb(colour)).write_to(&mut buf, image::ImageFormat::Png).unwrap();
        buf.into_inner()
    }

    #[test]
    fn classes_in_folder_order_names_and_templates() {
        let dir = tempfile::tempdir().unwrap();
        for (class, colour) in [("red_thing", [255, 0, 0]), ("blue_thing", [0, 0, 255])] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            for i in 0..3 {
                std::fs::write(dir.path().join(class).join(format!("{i}.png")), png(colour)).unwrap();
            }
        }
        std::fs::write(dir.path().join("blue_thing/broken.png"), b"not a png").unwrap();
        let cfg = PreprocessConfig::new(8);
        let got = load_labelled_folder(dir.path(), &cfg, 2).unwrap();
        assert_eq!(got.class_names, ["blue thing", "red thing"], "sorted folders, underscores as spaces");
        assert_eq!((got.labels.as_slice(), got.skipped), ([0, 0, 0, 1, 1, 1].as_slice(), 1));
        assert_eq!(got.templates, ["a photo of a {}."]);
        std::fs::write(dir.path().join(CLASSNAMES_FILE), "azure\ncrimson\n").unwrap();
        std::fs::write(dir.path().join(TEMPLATES_FILE), "a {}\n").unwrap();
        let named = load_labelled_folder(dir.path(), &cfg, 1).unwrap();
        assert_eq!((named.class_names, named.templates), (vec!["azure".into(), "crimson".into()], vec!["a {}".into()]));
        std::fs::write(dir.path().join(CLASSNAMES_FILE), "one\n").unwrap();
        assert!(load_labelled_folder(dir.path(), &cfg, 1).unwrap_err().to_string().contains("1 names for 2"));
        assert_eq!(OPENAI_IMAGENET_TEMPLATES.lines().count(), 80);
    }
}
