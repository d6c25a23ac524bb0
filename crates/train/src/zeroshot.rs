//! Zero-shot classification on a labelled image folder (`zeroshot_data`, ImageNet's layout),
//! the signal fine-tuners watch: loaded once, then scored after every evaluation with the
//! run's model and tokenizer, next to the held-out retrieval.

use std::path::{Path, PathBuf};

use dissect_data::{OPENAI_IMAGENET_TEMPLATES, PreprocessConfig, TextTokenizer, load_labelled_folder};
use dissect_eval::{Features, ZeroShotReport, zero_shot_accuracy};
use dissect_model::burn::tensor::{Device, Int, Tensor, TensorData};
use dissect_model::{Clip, ClipConfig};

use crate::error::{Result, TrainError};

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
            ZeroShotTemplates::File(path) => std::fs::read_to_string(path)
                .map_err(|e| TrainError::io(path, e))?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
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
        let side = config.image_size();
        let image_len = config.channels() * side * side;
        let mut image_features = Vec::new();
        for chunk in self.images.chunks(ENCODE_BATCH * image_len) {
            let b = chunk.len() / image_len;
            let data = TensorData::new(chunk.to_vec(), [b, config.channels(), side, side]);
            image_features.extend(host(model.encode_image(Tensor::<4>::from_data(data, device)))?);
        }
        let mut prompt_features = Vec::new();
        for (tokens, eot) in
            self.prompt_tokens.chunks(ENCODE_BATCH * self.context_len).zip(self.prompt_eot.chunks(ENCODE_BATCH))
        {
            let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
            let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [eot.len(), self.context_len]), device);
            let eot: Vec<i64> = eot.iter().map(|&p| p as i64).collect();
            let eot = Tensor::<1, Int>::from_data(TensorData::new(eot.clone(), [eot.len()]), device);
            prompt_features.extend(host(model.encode_text(tokens, eot))?);
        }
        let images = Features::new("zero-shot image features", &image_features, config.embed_dim)?;
        let prompts = Features::new("zero-shot prompt features", &prompt_features, config.embed_dim)?;
        Ok(zero_shot_accuracy(images, prompts, self.templates, &self.labels)?)
    }
}

const ENCODE_BATCH: usize = 256;

fn host(t: Tensor<2>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| TrainError::Model(dissect_model::ModelError::Data(format!("reading features: {e:?}"))))
}
