//! The optimiser side of a step: AdamW with open_clip's decay groups, global gradient-norm
//! clipping and the temperature clamp.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Bytes, Tensor};

use crate::error::ModelError;
use crate::loss::scalar_f32;
use crate::model::Clip;

/// One parameter of the model as the optimiser sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    /// Module path, e.g. `visual.Vit.blocks.0.attn.qkv.weight` (the path Burn's optimiser uses;
    /// it names the image tower's variant).
    pub path: String,
    /// The parameter's id (keys its gradient and optimiser state).
    pub id: ParamId,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Whether AdamW's decoupled weight decay applies (open_clip's rule: two or more
    /// dimensions, not a norm, bias or the temperature).
    pub decay: bool,
}

/// Lists every trainable parameter (not the BatchNorm running statistics) with its path,
/// shape and decay group.
pub fn param_infos(model: &Clip) -> Vec<ParamInfo> {
    let mut visitor = ParamCollector::default();
    model.visit(&mut visitor);
    visitor.out
}

#[derive(Default)]
struct ParamCollector {
    // (field name, type of the struct holding the field)
    stack: Vec<(String, String)>,
    out: Vec<ParamInfo>,
}

impl ModuleVisitor for ParamCollector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self.stack.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(".");
        // BatchNorm running statistics are buffers: no gradient, no optimiser state.
        if path.ends_with("running_mean") || path.ends_with("running_var") {
            return;
        }
        // open_clip_train's rule, applied to our paths: decay every tensor of two or more
        // dimensions unless its name marks a norm, a bias or the temperature. So linear
        // weights, the token embedding and both positional embeddings are decayed, and a new
        // layer is grouped by the rule, not by its type.
        let exempt = ["ln", "bn", "bias", "logit_scale"].iter().any(|word| path.contains(word));
        let decay = D >= 2 && !exempt;
        self.out.push(ParamInfo { path, id: param.id, shape: param.val().dims().to_vec(), decay });
    }
}

/// AdamW hyper-parameters (PyTorch/open_clip conventions, set explicitly because Burn's
/// defaults differ: epsilon 1e-5, weight decay 1e-4, beta2 0.999).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    /// First-moment decay.
    pub beta_1: f32,
    /// Second-moment decay.
    pub beta_2: f32,
    /// Added to the denominator.
    pub epsilon: f32,
    /// Decoupled weight decay of the decayed group.
    pub weight_decay: f32,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        Self { beta_1: 0.9, beta_2: 0.98, epsilon: 1e-6, weight_decay: 0.2 }
    }
}

/// AdamW with decoupled weight decay by open_clip_train's rule ([`ParamInfo::decay`]): linear
/// and convolution weights, embeddings and positions are decayed; norm gains, biases, the
/// class token and the temperature are not.
///
/// Built on Burn's `ModuleOptimizer` with a second parameter group matched by exact module
/// path, so the routing survives a model reload (paths are stable, `ParamId`s are restored
/// from the model record either way).
#[derive(Clone)]
pub struct ClipOptimizer {
    inner: ModuleOptimizer,
    params: Vec<ParamInfo>,
    settings: AdamWSettings,
}

impl ClipOptimizer {
    /// The optimiser for `model`'s parameters, grouped by decay.
    pub fn new(model: &Clip, settings: AdamWSettings) -> Self {
        let params = param_infos(model);
        let adamw = |wd: f32| {
            AdamWConfig::new()
                .with_beta_1(settings.beta_1)
                .with_beta_2(settings.beta_2)
                .with_epsilon(settings.epsilon)
                .with_weight_decay(wd)
        };
        let decay_paths: Vec<String> = params.iter().filter(|p| p.decay).map(|p| p.path.clone()).collect();
        // Group 0 (fallback, all params): no decay. Later groups win, so decay paths use group 1.
        let inner = adamw(0.0).init().with_group(
            ParamGroup::from_paths(decay_paths),
            adamw(settings.weight_decay).build(),
            None,
        );
        Self { inner, params, settings }
    }

    /// The hyper-parameters it was built with.
    pub fn settings(&self) -> AdamWSettings {
        self.settings
    }

    /// Parameters with their decay flag, in module order.
    pub fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    /// One AdamW update; parameters without a gradient are left untouched.
    pub fn step(&mut self, lr: f64, model: Clip, grads: GradientsParams) -> Clip {
        self.inner.step(lr, model, grads)
    }

    /// The optimiser state (moments, step counts) as burnpack bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let bytes = self.inner.into_bytes().map_err(|e| ModelError::Record(e.to_string()))?;
        Ok(bytes.to_vec())
    }

    /// Restores the state written by [`ClipOptimizer::to_bytes`]. Load the model first: the
    /// state is keyed by the `ParamId`s that the model record restores.
    pub fn load_bytes(&mut self, bytes: &[u8]) -> Result<(), ModelError> {
        let inner = self
            .inner
            .clone()
            .from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
            .map_err(|e| ModelError::Record(e.to_string()))?;
        self.inner = inner;
        Ok(())
    }
}

/// Scales all gradients by `min(1, max_norm / (‖g‖ + 1e-6))` where `‖g‖` is the L2 norm over
/// every parameter together (as `torch.nn.utils.clip_grad_norm_`); returns the pre-clip norm.
/// `max_norm = None` only measures.
pub fn clip_grad_norm(
    params: &[ParamInfo],
    grads: &mut GradientsParams,
    max_norm: Option<f32>,
) -> Result<f32, ModelError> {
    let norm = match grad_norm_squared(params, grads)? {
        Some(t) => scalar_f32(t)?.sqrt(),
        None => 0.0,
    };
    scale_grads(params, grads, clip_coefficient(norm, max_norm));
    Ok(norm)
}

/// `‖g‖²` over every parameter's gradient, on the gradients' device (no host read); `None`
/// when no parameter has one.
pub(crate) fn grad_norm_squared(
    params: &[ParamInfo],
    grads: &GradientsParams,
) -> Result<Option<Tensor<1>>, ModelError> {
    let mut total: Option<Tensor<1>> = None;
    for p in params {
        let sq = match p.shape.len() {
            1 => grads.get::<1>(p.id).map(|g| g.square().sum()),
            2 => grads.get::<2>(p.id).map(|g| g.square().sum()),
            3 => grads.get::<3>(p.id).map(|g| g.square().sum()),
            4 => grads.get::<4>(p.id).map(|g| g.square().sum()),
            rank => {
                return Err(ModelError::Data(format!("parameter {} of unsupported rank {rank}", p.path)));
            }
        };
        if let Some(sq) = sq {
            total = Some(match total {
                Some(t) => t + sq,
                None => sq,
            });
        }
    }
    Ok(total)
}

/// The factor clipping multiplies the gradients by, `max_norm / (norm + 1e-6)`, or `None`
/// when they stay as they are (no clipping, a norm within the bound, or a non-finite norm).
pub(crate) fn clip_coefficient(norm: f32, max_norm: Option<f32>) -> Option<f32> {
    let coef = max_norm? / (norm + 1e-6);
    (norm.is_finite() && coef < 1.0).then_some(coef)
}

/// Multiplies every parameter's gradient by `coef` (nothing for `None`).
pub(crate) fn scale_grads(params: &[ParamInfo], grads: &mut GradientsParams, coef: Option<f32>) {
    let Some(coef) = coef else { return };
    for p in params {
        match p.shape.len() {
            1 => scale_grad::<1>(grads, p.id, coef),
            2 => scale_grad::<2>(grads, p.id, coef),
            3 => scale_grad::<3>(grads, p.id, coef),
            _ => scale_grad::<4>(grads, p.id, coef),
        }
    }
}

fn scale_grad<const D: usize>(grads: &mut GradientsParams, id: ParamId, coef: f32) {
    if let Some(g) = grads.remove::<D>(id) {
        grads.register(id, g.mul_scalar(coef));
    }
}

/// Upper bound of the log temperature: `ln 100`, so logits are at most `100 · cos`.
pub fn max_logit_scale() -> f32 {
    100f32.ln()
}

/// Clamps the log temperature to `[0, ln 100]` (open_clip does this after every step), on the
/// device: no host read, so the step's work can stay queued on a GPU.
pub fn clamp_logit_scale(mut model: Clip) -> Clip {
    let t = model.logit_scale.val();
    // The temperature is always trainable on an autodiff device, even if the value we replace
    // was a derived (non-leaf) tensor.
    let require_grad = t.is_require_grad() || t.device().is_autodiff();
    model.logit_scale = model.logit_scale.map(|t| {
        // Detached into a fresh leaf, so that the next backward reaches the param; a value
        // within the bounds comes back unchanged to the bit.
        let fresh = t.clamp(0.0, max_logit_scale()).detach();
        if require_grad { fresh.require_grad() } else { fresh }
    });
    model
}
