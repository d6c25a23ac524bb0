//! Held-out evaluation of a model: retrieval, zero-shot, CLIPScore of matched vs random pairs.

use std::path::Path;
use std::sync::Arc;

use dissect_data::{
    DatasetManifest, DuplicateGroups, PreprocessConfig, SampleMeta, TextTokenizer, content_key, load_all,
};
use dissect_eval::{
    EvalReport, Features, RetrievalTargets, clip_score_matched_vs_random, default_threads, retrieval_metrics,
    zero_shot_accuracy_any,
};
use dissect_model::burn::tensor::{Device, Int, Tensor, TensorData};
use dissect_model::{Clip, ClipConfig};

use crate::error::{Result, TrainError};

const ENCODE_BATCH: usize = 256;

/// A held-out split loaded once and tokenized, ready to be encoded after every epoch.
pub struct EvalSet {
    images: Vec<f32>,
    captions: Vec<String>,
    /// Each sample's scene, when the data describes it (noisy-shapes' `objects`).
    scenes: Option<Vec<String>>,
    tokens: Vec<u32>,
    eot: Vec<usize>,
    context_len: usize,
    /// Every correct class of each image: its class, or the shape of each of its objects.
    labels: Option<Vec<Vec<usize>>>,
    prompt_tokens: Option<(Vec<u32>, Vec<usize>, usize)>,
    /// Held-out images identical after preprocessing.
    duplicate_images: DuplicateGroups,
    /// Held-out captions identical after tokenization though written differently (identical
    /// strings are one shared answer in the metric, so they are not ambiguous).
    duplicate_captions: DuplicateGroups,
}

impl EvalSet {
    /// Decodes and tokenizes the dataset's held-out split (and its zero-shot prompts, when it
    /// has classes and templates) with the run's tokenizer and preprocessing.
    pub fn load(
        data_dir: &Path,
        manifest: &DatasetManifest,
        tokenizer: &Arc<TextTokenizer>,
        model: &ClipConfig,
        preprocess: &PreprocessConfig,
        threads: usize,
    ) -> Result<Self> {
        let set = manifest.test_set(data_dir)?;
        let (samples, _stats) = load_all(&set, preprocess, threads)?;
        if samples.is_empty() {
            return Err(TrainError::EmptyHeldOut(data_dir.to_path_buf()));
        }
        let image_len = samples[0].image.len();
        let images: Vec<f32> = samples.iter().flat_map(|s| s.image.iter().copied()).collect();
        let captions: Vec<String> = samples.iter().map(|s| s.caption.clone()).collect();
        let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
        let encoded = tokenizer.encode_batch(&refs, model.text.context_length)?;
        let objects: Vec<Option<Vec<&SceneObject>>> = samples.iter().map(|s| scene_objects(&s.meta)).collect();
        let scenes: Option<Vec<String>> = objects.iter().map(|o| o.as_deref().map(scene_key)).collect();
        let labels: Option<Vec<Vec<usize>>> =
            samples.iter().zip(&objects).map(|(s, o)| accepted_classes(s.meta.class, o.as_deref())).collect();
        let prompts = manifest.prompts();
        let templates = manifest.templates.len();
        let prompt_tokens = if labels.is_some() && !prompts.is_empty() && templates > 0 {
            let flat: Vec<&str> = prompts.iter().flatten().map(String::as_str).collect();
            let enc = tokenizer.encode_batch(&flat, model.text.context_length)?;
            Some((enc.ids, enc.eot_positions, templates))
        } else {
            None
        };
        let duplicate_images = DuplicateGroups::of(images.chunks_exact(image_len).map(content_key));
        let duplicate_captions = differently_written_twins(&captions, &encoded.ids, model.text.context_length);
        Ok(EvalSet {
            duplicate_images,
            duplicate_captions,
            images,
            captions,
            scenes,
            tokens: encoded.ids,
            eot: encoded.eot_positions,
            context_len: model.text.context_length,
            labels: labels.filter(|_| prompt_tokens.is_some()),
            prompt_tokens,
        })
    }

    /// A warning when held-out images are identical after preprocessing or differently written
    /// captions identical after tokenization: retrieval cannot tell them apart, and every tie
    /// counts against the query.
    pub fn ambiguity_warning(&self) -> Option<String> {
        let (images, captions) = (self.duplicate_images, self.duplicate_captions);
        (images.any() || captions.any()).then(|| {
            format!(
                "the held-out split is ambiguous for retrieval: images identical after preprocessing: {images}; \
                 differently written captions identical after tokenization: {captions} (of {} pairs; a tie with a \
                 wrong answer counts as a miss)",
                self.len()
            )
        })
    }

    /// Held-out pairs.
    pub fn len(&self) -> usize {
        self.captions.len()
    }

    /// Whether the split is empty (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.captions.is_empty()
    }

    /// Encode everything with `model` (an inference model: call `.valid()` first) and score it.
    pub fn evaluate(&self, model: &Clip, config: &ClipConfig, device: &Device, seed: u64) -> Result<EvalReport> {
        let n = self.len();
        let image_features = encode_images(model, &self.images, config, device)?;
        let text_features = encode_texts(model, &self.tokens, &self.eot, self.context_len, device)?;
        let dim = config.embed_dim;
        let img = Features::new("image features", &image_features, dim)?;
        let txt = Features::new("text features", &text_features, dim)?;
        let text_image: Vec<usize> = (0..n).collect();
        let targets = RetrievalTargets::from_captions(n, &text_image, &self.captions)?;
        let retrieval = retrieval_metrics(img, txt, &targets, default_threads())?;
        let retrieval_scene = match &self.scenes {
            Some(scenes) => {
                let targets = RetrievalTargets::from_captions(n, &text_image, scenes)?;
                Some(retrieval_metrics(img, txt, &targets, default_threads())?)
            }
            None => None,
        };
        let clipscore = clip_score_matched_vs_random(img, txt, seed)?;
        let zero_shot = match (&self.labels, &self.prompt_tokens) {
            (Some(labels), Some((tokens, eot, templates))) => {
                let prompt_features = encode_texts(model, tokens, eot, self.context_len, device)?;
                let prompts = Features::new("prompt features", &prompt_features, dim)?;
                let accepted: Vec<&[usize]> = labels.iter().map(Vec::as_slice).collect();
                Some(zero_shot_accuracy_any(img, prompts, *templates, &accepted)?)
            }
            _ => None,
        };
        Ok(EvalReport { retrieval, retrieval_scene, zero_shot, zero_shot_folder: None, clipscore, images: n, texts: n })
    }
}

/// Captions whose token rows equal another caption's that is written differently: grouped by
/// token row, counting only the groups of two or more distinct strings.
fn differently_written_twins(captions: &[String], tokens: &[u32], context_len: usize) -> DuplicateGroups {
    let keys: Vec<u64> = tokens.chunks_exact(context_len).map(content_key).collect();
    let mut spellings: std::collections::HashMap<u64, std::collections::HashSet<&str>> = Default::default();
    for (key, caption) in keys.iter().zip(captions) {
        spellings.entry(*key).or_default().insert(caption.as_str());
    }
    DuplicateGroups::of(keys.into_iter().filter(|key| spellings[key].len() > 1))
}

/// A noisy-shapes object: its fields by name (`shape`, `color`, `size`, `position`).
type SceneObject = serde_json::Map<String, serde_json::Value>;

/// The `objects` a sample's metadata lists (noisy-shapes writes them).
fn scene_objects(meta: &SampleMeta) -> Option<Vec<&SceneObject>> {
    meta.extra.get("objects")?.as_array()?.iter().map(serde_json::Value::as_object).collect()
}

/// A scene as a string equal for equal scenes: its objects, each with its fields in name
/// order (serde_json's maps are sorted), in a canonical order.
fn scene_key(objects: &[&SceneObject]) -> String {
    let mut parts: Vec<String> = objects.iter().map(|&o| serde_json::Value::Object(o.clone()).to_string()).collect();
    parts.sort();
    parts.join(";")
}

/// Every class an image may be named by: the shape of each of its `objects` when it lists them
/// (a scene of a circle and a star is a circle and a star; nothing marks one as first), else
/// its `class`.
fn accepted_classes(class: Option<u32>, objects: Option<&[&SceneObject]>) -> Option<Vec<usize>> {
    let shapes: Option<Vec<usize>> = objects.and_then(|objects| {
        objects.iter().map(|o| o.get("shape").and_then(serde_json::Value::as_u64).map(|s| s as usize)).collect()
    });
    match shapes {
        Some(mut shapes) if !shapes.is_empty() => {
            shapes.sort_unstable();
            shapes.dedup();
            Some(shapes)
        }
        _ => class.map(|c| vec![c as usize]),
    }
}

/// The features of `images` (CHW rows of the model's input size), `ENCODE_BATCH` at a time.
pub(crate) fn encode_images(model: &Clip, images: &[f32], config: &ClipConfig, device: &Device) -> Result<Vec<f32>> {
    let side = config.image_size();
    let image_len = config.channels() * side * side;
    let mut features = Vec::new();
    for chunk in images.chunks(ENCODE_BATCH * image_len) {
        let data = TensorData::new(chunk.to_vec(), [chunk.len() / image_len, config.channels(), side, side]);
        features.extend(to_host(model.encode_image(Tensor::<4>::from_data(data, device)))?);
    }
    Ok(features)
}

/// The features of every token row (`eot` gives each row's end-of-text position),
/// `ENCODE_BATCH` rows at a time.
pub(crate) fn encode_texts(
    model: &Clip,
    tokens: &[u32],
    eot: &[usize],
    context_len: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    let mut features = Vec::new();
    for start in (0..eot.len()).step_by(ENCODE_BATCH) {
        let end = (start + ENCODE_BATCH).min(eot.len());
        features.extend(encode_text(model, tokens, eot, context_len, start, end, device)?);
    }
    Ok(features)
}

fn encode_text(
    model: &Clip,
    tokens: &[u32],
    eot: &[usize],
    context_len: usize,
    start: usize,
    end: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    let b = end - start;
    let ids: Vec<i64> = tokens[start * context_len..end * context_len].iter().map(|&t| i64::from(t)).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, context_len]), device);
    let eot: Vec<i64> = eot[start..end].iter().map(|&p| p as i64).collect();
    let eot = Tensor::<1, Int>::from_data(TensorData::new(eot, [b]), device);
    to_host(model.encode_text(tokens, eot))
}

fn to_host(t: Tensor<2>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| TrainError::Model(dissect_model::ModelError::Data(format!("reading features: {e:?}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(json: &str) -> SampleMeta {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn scenes_and_classes_from_noisy_shapes_metadata() {
        let a = meta(
            r#"{"class":3,"objects":[{"color":0,"position":2,"shape":3,"size":1},{"color":5,"position":0,"shape":1,"size":0}]}"#,
        );
        // The same scene with the objects listed the other way round and fields reordered.
        let b = meta(
            r#"{"class":1,"objects":[{"shape":1,"size":0,"color":5,"position":0},{"size":1,"shape":3,"color":0,"position":2}]}"#,
        );
        let c = meta(r#"{"class":3,"objects":[{"color":0,"position":2,"shape":3,"size":0}]}"#);
        let key = |m: &SampleMeta| scene_objects(m).as_deref().map(scene_key);
        let accepted_classes = |m: &SampleMeta| accepted_classes(m.class, scene_objects(m).as_deref());
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        assert_eq!(accepted_classes(&a), Some(vec![1, 3]));
        assert_eq!(accepted_classes(&c), Some(vec![3]));
        // Data without objects: its class alone, or nothing.
        assert_eq!(accepted_classes(&meta(r#"{"class":7}"#)), Some(vec![7]));
        assert_eq!((key(&meta("{}")), accepted_classes(&meta("{}"))), (None, None));
    }

    #[test]
    fn only_differently_written_captions_that_tokenize_alike_are_twins() {
        // Rows of two tokens: "a" and "a" are one answer; "A b" and "a b" tokenize alike but
        // are written differently; "c" is alone.
        let captions: Vec<String> = ["a", "a", "A b", "a b", "c"].map(String::from).to_vec();
        let tokens = [1u32, 0, 1, 0, 1, 2, 1, 2, 3, 0];
        let twins = differently_written_twins(&captions, &tokens, 2);
        assert_eq!(twins, DuplicateGroups { duplicated: 2, groups: 1, largest: 2 });
    }
}
