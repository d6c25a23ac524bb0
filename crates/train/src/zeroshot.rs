//! Zero-shot classification on a labelled image folder (`zeroshot_data`, ImageNet's layout),
//! the signal fine-tuners watch: loaded once, then scored after every evaluation with the
//! run's model and tokenizer, next to the held-out retrieval.

use std::path::{Path, PathBuf};

use dissect_data::{OPENAI_IMAGENET_TEMPLATES, PreprocessConfig, TextTokenizer, load_labelled_folder, read_lines};
use dissect_eval::{Features, ZeroShotReport, zero_shot_accuracy};
use dissect_model::burn::tensor::Device;
use dissect_model::{Clip, ClipConfig};

use crate::error::{Result, TrainError};
use crate::evaluate::{encode_images, encode_texts};

/// Which prompt templates the class names go into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZeroShotTemplates {
    /// The folder's own `templates.txt`, else `a photo of a {}.`.
    Folder,
    /// open_clip's ImageNet templates (OpenAI's 80).
    OpenAiImageNet,
    /// A file of templates, one per line.
    File(PathBuf),
}

impl ZeroShotTemplates {
    /// `imagenet` or a file's path; `None` for the folder's own.
    pub fn from_setting(setting: Option<&str>) -> Self {
        match setting {
            None => ZeroShotTemplates::Folder,
            Some("imagenet") => ZeroShotTemplates::OpenAiImageNet,
            Some(path) => ZeroShotTemplates::File(PathBuf::from(path)),
        }
    }
}

/// A labelled folder ready to be scored: preprocessed images, labels, tokenized prompts.
pub struct ZeroShotFolder {
    images: Vec<f32>,
    labels: Vec<usize>,
    prompt_tokens: Vec<u32>,
    prompt_eot: Vec<usize>,
    templates: usize,
    context_len: usize,
}

impl ZeroShotFolder {
    /// Loads `dir` (class sub-folders) with the run's preprocessing and tokenizer.
    pub fn load(
        dir: &Path,
        templates: &ZeroShotTemplates,
        tokenizer: &TextTokenizer,
        model: &ClipConfig,
        preprocess: &PreprocessConfig,
        threads: usize,
    ) -> Result<Self> {
        let folder = load_labelled_folder(dir, preprocess, threads)?;
        let templates: Vec<String> = match templates {
            ZeroShotTemplates::Folder => folder.templates,
            ZeroShotTemplates::OpenAiImageNet => OPENAI_IMAGENET_TEMPLATES.lines().map(String::from).collect(),
            ZeroShotTemplates::File(path) => read_lines(path)?,
        };
        if templates.is_empty() {
            return Err(TrainError::Config("zeroshot_templates: no template".into()));
        }
        let prompts: Vec<String> =
            folder.class_names.iter().flat_map(|c| templates.iter().map(move |t| t.replace("{}", c))).collect();
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let encoded = tokenizer.encode_batch(&refs, model.text.context_length)?;
        Ok(ZeroShotFolder {
            images: folder.images,
            labels: folder.labels,
            prompt_tokens: encoded.ids,
            prompt_eot: encoded.eot_positions,
            templates: templates.len(),
            context_len: model.text.context_length,
        })
    }

    /// Top-1 and top-5 accuracy of `model` (an inference model) on the folder.
    pub fn evaluate(&self, model: &Clip, config: &ClipConfig, device: &Device) -> Result<ZeroShotReport> {
        let image_features = encode_images(model, &self.images, config, device)?;
        let prompt_features = encode_texts(model, &self.prompt_tokens, &self.prompt_eot, self.context_len, device)?;
        let images = Features::new("zero-shot image features", &image_features, config.embed_dim)?;
        let prompts = Features::new("zero-shot prompt features", &prompt_features, config.embed_dim)?;
        Ok(zero_shot_accuracy(images, prompts, self.templates, &self.labels)?)
    }
}
