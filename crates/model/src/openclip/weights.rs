//! open_clip's CLIP state dict (ViT or ModifiedResNet image tower) in safetensors files, in
//! and out. Our layers follow open_clip's layer for layer (`vit.rs`, `resnet.rs`, `text.rs`);
//! what differs is only where each tensor lives and its layout: Burn stores a linear layer's
//! weight as `[in, out]` where PyTorch stores `[out, in]`, the ViT patch embedding is a
//! linear map over flattened `[c, p, p]` patches where open_clip has a `[w, c, p, p]`
//! convolution, and the temperature is `[1]` where open_clip's is a 0-d tensor. One table
//! ([`mapping`]) says all of it and serves both directions.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::ModelError;
use crate::layers::Block;
use crate::model::{Clip, VisionTower};
use crate::resnet::{BatchNorm2d, Conv, ModifiedResNet};
use crate::vit::VisionTransformer;

/// How an open_clip tensor is laid out relative to ours.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    /// The same shape and order.
    Same,
    /// A 2-D matrix transposed (PyTorch `[out, in]` vs Burn `[in, out]`).
    Transposed,
    /// open_clip's `[w, c, p, p]` patch convolution vs our `[c·p·p, w]` linear map.
    PatchConv { channels: usize, patch: usize },
    /// open_clip's 0-d scalar vs our `[1]`.
    Scalar,
}

/// One of our parameters, by rank; `Buffer` is a BatchNorm running statistic (no gradient).
enum Slot<'a> {
    D1(&'a mut Param<Tensor<1>>),
    D2(&'a mut Param<Tensor<2>>),
    D4(&'a mut Param<Tensor<4>>),
    Buffer(&'a mut Param<Tensor<1>>),
}

/// Our parameter under open_clip's name.
struct Mapped<'a> {
    name: String,
    slot: Slot<'a>,
    layout: Layout,
}

/// Adds one mapped parameter.
trait Put<'a>: FnMut(String, Slot<'a>, Layout) {}
impl<'a, F: FnMut(String, Slot<'a>, Layout)> Put<'a> for F {}

/// Every parameter of `model` with its open_clip name and layout, in state-dict order.
fn mapping<'a>(model: &'a mut Clip) -> Vec<Mapped<'a>> {
    let mut out = Vec::new();
    let mut put = |name: String, slot: Slot<'a>, layout: Layout| out.push(Mapped { name, slot, layout });
    match &mut model.visual {
        VisionTower::Vit(vit) => vision_transformer(&mut put, vit),
        VisionTower::ResNet(resnet) => modified_resnet(&mut put, resnet),
    }
    let text = &mut model.text;
    put("token_embedding.weight".into(), Slot::D2(&mut text.token_embedding.weight), Layout::Same);
    put("positional_embedding".into(), Slot::D2(&mut text.positional_embedding), Layout::Same);
    for (i, block) in text.blocks.iter_mut().enumerate() {
        transformer_block(&mut put, &format!("transformer.resblocks.{i}"), block);
    }
    layer_norm(&mut put, "ln_final", &mut text.ln_final);
    put("text_projection".into(), Slot::D2(&mut text.text_projection.weight), Layout::Same);
    put("logit_scale".into(), Slot::D1(&mut model.logit_scale), Layout::Scalar);
    out
}

fn vision_transformer<'a>(put: &mut impl Put<'a>, vit: &'a mut VisionTransformer) {
    let [patch_in, _] = vit.patch_embed.weight.val().dims();
    let patch = vit.patch_size;
    let layout = Layout::PatchConv { channels: patch_in / (patch * patch), patch };
    put("visual.class_embedding".into(), Slot::D1(&mut vit.class_embedding), Layout::Same);
    put("visual.positional_embedding".into(), Slot::D2(&mut vit.positional_embedding), Layout::Same);
    put("visual.conv1.weight".into(), Slot::D2(&mut vit.patch_embed.weight), layout);
    layer_norm(put, "visual.ln_pre", &mut vit.ln_pre);
    for (i, block) in vit.blocks.iter_mut().enumerate() {
        transformer_block(put, &format!("visual.transformer.resblocks.{i}"), block);
    }
    layer_norm(put, "visual.ln_post", &mut vit.ln_post);
    put("visual.proj".into(), Slot::D2(&mut vit.proj.weight), Layout::Same);
}

fn modified_resnet<'a>(put: &mut impl Put<'a>, resnet: &'a mut ModifiedResNet) {
    conv(put, "visual.conv1", &mut resnet.conv1);
    batch_norm(put, "visual.bn1", &mut resnet.bn1);
    conv(put, "visual.conv2", &mut resnet.conv2);
    batch_norm(put, "visual.bn2", &mut resnet.bn2);
    conv(put, "visual.conv3", &mut resnet.conv3);
    batch_norm(put, "visual.bn3", &mut resnet.bn3);
    for (stage, blocks) in resnet.stages.iter_mut().enumerate() {
        for (i, block) in blocks.iter_mut().enumerate() {
            let prefix = format!("visual.layer{}.{i}", stage + 1);
            conv(put, &format!("{prefix}.conv1"), &mut block.conv1);
            batch_norm(put, &format!("{prefix}.bn1"), &mut block.bn1);
            conv(put, &format!("{prefix}.conv2"), &mut block.conv2);
            batch_norm(put, &format!("{prefix}.bn2"), &mut block.bn2);
            conv(put, &format!("{prefix}.conv3"), &mut block.conv3);
            batch_norm(put, &format!("{prefix}.bn3"), &mut block.bn3);
            if let Some(down) = block.downsample.as_mut() {
                conv(put, &format!("{prefix}.downsample.0"), &mut down.conv);
                batch_norm(put, &format!("{prefix}.downsample.1"), &mut down.bn);
            }
        }
    }
    let pool = &mut resnet.attnpool;
    put("visual.attnpool.positional_embedding".into(), Slot::D2(&mut pool.positional_embedding), Layout::Same);
    linear(put, "visual.attnpool.q_proj", &mut pool.q_proj);
    linear(put, "visual.attnpool.k_proj", &mut pool.k_proj);
    linear(put, "visual.attnpool.v_proj", &mut pool.v_proj);
    linear(put, "visual.attnpool.c_proj", &mut pool.c_proj);
}

fn conv<'a>(put: &mut impl Put<'a>, prefix: &str, conv: &'a mut Conv) {
    put(format!("{prefix}.weight"), Slot::D4(&mut conv.weight), Layout::Same);
}

fn batch_norm<'a>(put: &mut impl Put<'a>, prefix: &str, norm: &'a mut BatchNorm2d) {
    put(format!("{prefix}.weight"), Slot::D1(&mut norm.weight), Layout::Same);
    put(format!("{prefix}.bias"), Slot::D1(&mut norm.bias), Layout::Same);
    put(format!("{prefix}.running_mean"), Slot::Buffer(&mut norm.running_mean), Layout::Same);
    put(format!("{prefix}.running_var"), Slot::Buffer(&mut norm.running_var), Layout::Same);
}

fn transformer_block<'a>(put: &mut impl Put<'a>, prefix: &str, block: &'a mut Block) {
    layer_norm(put, &format!("{prefix}.ln_1"), &mut block.ln_1);
    let attn = &mut block.attn;
    put(format!("{prefix}.attn.in_proj_weight"), Slot::D2(&mut attn.qkv.weight), Layout::Transposed);
    if let Some(bias) = attn.qkv.bias.as_mut() {
        put(format!("{prefix}.attn.in_proj_bias"), Slot::D1(bias), Layout::Same);
    }
    linear(put, &format!("{prefix}.attn.out_proj"), &mut attn.out);
    layer_norm(put, &format!("{prefix}.ln_2"), &mut block.ln_2);
    linear(put, &format!("{prefix}.mlp.c_fc"), &mut block.mlp_fc);
    linear(put, &format!("{prefix}.mlp.c_proj"), &mut block.mlp_proj);
}

fn linear<'a>(put: &mut impl Put<'a>, prefix: &str, layer: &'a mut Linear) {
    put(format!("{prefix}.weight"), Slot::D2(&mut layer.weight), Layout::Transposed);
    if let Some(bias) = layer.bias.as_mut() {
        put(format!("{prefix}.bias"), Slot::D1(bias), Layout::Same);
    }
}

fn layer_norm<'a>(put: &mut impl Put<'a>, prefix: &str, norm: &'a mut LayerNorm) {
    put(format!("{prefix}.weight"), Slot::D1(&mut norm.gamma), Layout::Same);
    if let Some(beta) = norm.beta.as_mut() {
        put(format!("{prefix}.bias"), Slot::D1(beta), Layout::Same);
    }
}

/// A host tensor: shape and row-major `f32` values.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions (empty for a scalar).
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

/// Named tensors as a safetensors file holds them (any float dtype is read as `f32`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorFile {
    /// Tensors by name.
    pub tensors: BTreeMap<String, HostTensor>,
    /// The file's string metadata.
    pub metadata: BTreeMap<String, String>,
}

impl TensorFile {
    /// Reads a safetensors file: `F32`, `F16` and `BF16` tensors as `f32`, integer tensors
    /// (`I64`, `I32`) converted to `f32` too (token ids in fixtures).
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::Record(format!("{}: {e}", path.display())))?;
        Self::from_bytes(&bytes).map_err(|e| ModelError::Record(format!("{}: {e}", path.display())))
    }

    /// Parses safetensors bytes (see [`TensorFile::read`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
        let metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
        let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
        let mut tensors = BTreeMap::new();
        for (name, view) in file.tensors() {
            let values = to_f32(view.dtype(), view.data()).map_err(|why| format!("tensor {name}: {why}"))?;
            tensors.insert(name, HostTensor { shape: view.shape().to_vec(), values });
        }
        Ok(TensorFile { tensors, metadata })
    }

    /// The tensors as safetensors bytes (`F32`, little-endian), with the metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let raw: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .tensors
            .iter()
            .map(|(name, t)| (name.clone(), t.values.iter().flat_map(|v| v.to_le_bytes()).collect(), t.shape.clone()))
            .collect();
        let views = raw
            .iter()
            .map(|(name, bytes, shape)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .map(|view| (name.clone(), view))
                    .map_err(|e| ModelError::Record(format!("tensor {name}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let metadata = (!self.metadata.is_empty()).then(|| self.metadata.clone().into_iter().collect());
        safetensors::serialize(views, metadata).map_err(|e| ModelError::Record(e.to_string()))
    }

    /// Removes and returns the tensors whose names start with `prefix` (the prefix dropped).
    pub fn take_prefix(&mut self, prefix: &str) -> BTreeMap<String, HostTensor> {
        let names: Vec<String> = self.tensors.keys().filter(|n| n.starts_with(prefix)).cloned().collect();
        names.into_iter().filter_map(|n| self.tensors.remove(&n).map(|t| (n[prefix.len()..].to_string(), t))).collect()
    }
}

fn to_f32(dtype: safetensors::Dtype, data: &[u8]) -> Result<Vec<f32>, String> {
    use safetensors::Dtype;
    let words = |n: usize| data.chunks_exact(n);
    Ok(match dtype {
        Dtype::F32 => words(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => words(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => words(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::I64 => words(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32).collect(),
        Dtype::I32 => words(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32).collect(),
        other => return Err(format!("dtype {other:?} is not supported (f32, f16, bf16, i64, i32)")),
    })
}

/// Loads open_clip's state dict into `model` (built with the matching config). Strict, like
/// `load_state_dict(strict=True)`: a missing, extra or mis-shaped tensor is an error that
/// names the tensor (and both shapes).
pub fn load_open_clip(mut model: Clip, weights: &TensorFile) -> Result<Clip, ModelError> {
    let mut unused: std::collections::BTreeSet<&str> = weights.tensors.keys().map(String::as_str).collect();
    for mapped in mapping(&mut model) {
        let tensor = weights
            .tensors
            .get(&mapped.name)
            .ok_or_else(|| ModelError::Record(format!("open_clip weights: tensor {} is missing", mapped.name)))?;
        unused.remove(mapped.name.as_str());
        mapped.slot.load(&mapped.name, tensor, mapped.layout)?;
    }
    // open_clip keeps the causal mask as a buffer in some versions, and PyTorch counts each
    // BatchNorm's batches; neither holds weights.
    unused.remove("attn_mask");
    unused.retain(|name| !name.ends_with(".num_batches_tracked"));
    match unused.into_iter().next() {
        Some(extra) => Err(ModelError::Record(format!("open_clip weights: tensor {extra} has no place in this model"))),
        None => Ok(model),
    }
}

impl Slot<'_> {
    /// Sets the parameter to open_clip's `tensor` (checked against its shape, in our layout).
    fn load(self, name: &str, tensor: &HostTensor, layout: Layout) -> Result<(), ModelError> {
        match self {
            Slot::D1(param) => load_param(param, name, tensor, layout, true),
            Slot::D2(param) => load_param(param, name, tensor, layout, true),
            Slot::D4(param) => load_param(param, name, tensor, layout, true),
            Slot::Buffer(param) => load_param(param, name, tensor, layout, false),
        }
    }

    /// The parameter's shape and values, on the host.
    fn host(self) -> Result<(Vec<usize>, Vec<f32>), ModelError> {
        match self {
            Slot::D1(param) | Slot::Buffer(param) => host_param(param),
            Slot::D2(param) => host_param(param),
            Slot::D4(param) => host_param(param),
        }
    }
}

/// `param` with open_clip's values, on its device; trainable where it was (and on an
/// autodiff device), unless it is a buffer, which never takes a gradient.
fn load_param<const D: usize>(
    param: &mut Param<Tensor<D>>,
    name: &str,
    tensor: &HostTensor,
    layout: Layout,
    trainable: bool,
) -> Result<(), ModelError> {
    let ours: [usize; D] = param.val().dims();
    let values = to_ours(name, tensor, &ours, layout)?;
    let loaded = param.clone().map(|old| {
        let device: Device = old.device();
        let fresh = Tensor::from_data(TensorData::new(values, ours), &device);
        let grad = trainable && (old.is_require_grad() || device.is_autodiff());
        if grad { fresh.require_grad() } else { fresh }
    });
    *param = if trainable { loaded } else { loaded.set_require_grad(false) };
    Ok(())
}

fn host_param<const D: usize>(param: &Param<Tensor<D>>) -> Result<(Vec<usize>, Vec<f32>), ModelError> {
    Ok((param.val().dims().to_vec(), host_values(param.val())?))
}

/// open_clip's tensor in our layout, after checking its shape.
fn to_ours(name: &str, tensor: &HostTensor, ours: &[usize], layout: Layout) -> Result<Vec<f32>, ModelError> {
    let expected = their_shape(ours, layout);
    if tensor.shape != expected {
        return Err(ModelError::Record(format!(
            "open_clip weights: tensor {name} has shape {:?}, this model needs {expected:?}",
            tensor.shape
        )));
    }
    Ok(match layout {
        Layout::Same | Layout::Scalar => tensor.values.clone(),
        // [w, c·p·p] (the convolution flattened) transposed to [c·p·p, w].
        Layout::Transposed | Layout::PatchConv { .. } => transpose(&tensor.values, ours[1], ours[0]),
    })
}

/// The shape open_clip stores a parameter of our shape `ours` in.
fn their_shape(ours: &[usize], layout: Layout) -> Vec<usize> {
    match layout {
        Layout::Same => ours.to_vec(),
        Layout::Transposed => vec![ours[1], ours[0]],
        Layout::PatchConv { channels, patch } => vec![ours[1], channels, patch, patch],
        Layout::Scalar => Vec::new(),
    }
}

/// A row-major `[rows, cols]` matrix transposed.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// The model's weights as open_clip's state dict (the inverse of [`load_open_clip`]).
/// BatchNorm's `num_batches_tracked` is left out: PyTorch fills it in when a state dict lacks
/// it, and it only matters with `momentum=None`, which CLIP does not use.
pub fn to_open_clip(model: &Clip) -> Result<TensorFile, ModelError> {
    let mut copy = model.clone();
    let mut tensors = BTreeMap::new();
    for mapped in mapping(&mut copy) {
        let (ours, values) = mapped.slot.host()?;
        let values = match mapped.layout {
            Layout::Same | Layout::Scalar => values,
            Layout::Transposed | Layout::PatchConv { .. } => transpose(&values, ours[0], ours[1]),
        };
        tensors.insert(mapped.name, HostTensor { shape: their_shape(&ours, mapped.layout), values });
    }
    Ok(TensorFile { tensors, metadata: BTreeMap::new() })
}

fn host_values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, ModelError> {
    t.try_into_vec_as::<f32>().map_err(|e| ModelError::Data(format!("reading weights: {e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_is_its_own_inverse_and_moves_rows_to_columns() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [2, 3]
        let t = transpose(&m, 2, 3);
        assert_eq!(t, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(transpose(&t, 3, 2), m);
    }
}
