//! Python bindings for dissect's online selection core: the module `dissect_select`.
//!
//! A thin layer over [`dissect_select::Selector`]: NumPy arrays in (read in place when their
//! dtype allows), kept batch positions out, every refusal of the core a Python exception that
//! names the argument at fault. The selection math lives in the core only, so the Python
//! package selects exactly the rows the Rust trainer would given the same inputs and RNG.

mod arrays;
mod errors;
mod records;

use std::path::PathBuf;

use dissect_select::{
    BatchScores, RecordWriter, ScoreState, Selection, SelectionConfig, Selector as Core, Strategy, WarmupRows,
};
use numpy::PyArray1;
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use errors::to_py;

/// Bytes of [`Selector::get_rng_state`]: ChaCha seed (32), stream (8), word position (16).
const RNG_STATE_LEN: usize = 56;

/// One strategy bound to its per-sample score state and its own seeded RNG.
#[pyclass(module = "dissect_select", name = "Selector")]
struct Selector {
    core: Core,
    /// The only source of random draws, so a given seed reproduces every selection.
    rng: ChaCha8Rng,
    seed: u64,
    last: Option<Selection>,
    records: Option<RecordWriter>,
}

#[pymethods]
impl Selector {
    #[new]
    #[pyo3(signature = (strategy, rate, dataset_len, warmup_epochs = 2, momentum = 0.9, seed = 0, warmup_rows = "random"))]
    fn new(
        strategy: &str,
        rate: f64,
        dataset_len: u64,
        warmup_epochs: u32,
        momentum: f64,
        seed: u64,
        warmup_rows: &str,
    ) -> PyResult<Self> {
        let strategy: Strategy = strategy.parse().map_err(to_py)?;
        let warmup_rows: WarmupRows = warmup_rows.parse().map_err(to_py)?;
        let config = SelectionConfig::new(strategy, rate)
            .and_then(|c| c.with_warmup_epochs(warmup_epochs).with_warmup_rows(warmup_rows).with_momentum(momentum))
            .map_err(to_py)?;
        let core = Core::with_dataset_len(config, dataset_len).map_err(to_py)?;
        Ok(Selector { core, rng: ChaCha8Rng::seed_from_u64(seed), seed, last: None, records: None })
    }

    /// Kept batch positions (ascending, int64) for one batch. The state changes only when
    /// the whole input is valid.
    #[pyo3(signature = (indices, clip_scores = None, losses = None, *, epoch, step, reference_scores = None))]
    fn select<'py>(
        &mut self,
        indices: &Bound<'py, PyAny>,
        clip_scores: Option<&Bound<'py, PyAny>>,
        losses: Option<&Bound<'py, PyAny>>,
        epoch: u32,
        step: u64,
        reference_scores: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let py = indices.py();
        let indices = arrays::indices(indices)?;
        let clip_scores = arrays::scores(clip_scores, "clip_scores")?;
        let losses = arrays::scores(losses, "losses")?;
        let reference_scores = arrays::scores(reference_scores, "reference_scores")?;
        let batch = BatchScores {
            indices: indices.as_slice()?,
            clip_scores: optional_slice(&clip_scores, "clip_scores")?,
            losses: optional_slice(&losses, "losses")?,
            reference_scores: optional_slice(&reference_scores, "reference_scores")?,
        };
        let selection = self.core.select(&batch, epoch, step, &mut self.rng).map_err(to_py)?;
        if let Some(writer) = self.records.as_mut() {
            writer.write(&selection.records).map_err(to_py)?;
        }
        let positions = selection.positions.iter().map(|&p| p as i64).collect();
        self.last = Some(selection);
        Ok(PyArray1::from_vec(py, positions))
    }

    /// Rows kept from a batch of `batch_size`: `max(1, floor(B·rate))`, all for `full`.
    fn keep_count(&self, batch_size: usize) -> usize {
        self.core.config().keep_count(batch_size)
    }

    /// Write the score state as a `.dss` snapshot (the CLI's format), atomically. Flushes
    /// the visit-record file first, so a checkpoint's records are on disk with it.
    fn save(&mut self, path: PathBuf) -> PyResult<()> {
        if let Some(writer) = self.records.as_mut() {
            writer.flush().map_err(to_py)?;
        }
        self.core.state().save(&path).map_err(to_py)
    }

    /// Replace the score state with a `.dss` snapshot of the same dataset length.
    fn load(&mut self, path: PathBuf) -> PyResult<()> {
        let state = ScoreState::load(&path).map_err(to_py)?;
        let expected = self.core.state().len();
        if state.len() != expected {
            return Err(PyValueError::new_err(format!(
                "{}: the snapshot holds {} samples, this selector was built for dataset_len={expected}",
                path.display(),
                state.len()
            )));
        }
        self.core = Core::new(*self.core.config(), state).map_err(to_py)?;
        Ok(())
    }

    /// The RNG's position as bytes, to store with a checkpoint next to the `.dss` file.
    fn get_rng_state<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let mut bytes = Vec::with_capacity(RNG_STATE_LEN);
        bytes.extend_from_slice(&self.rng.get_seed());
        bytes.extend_from_slice(&self.rng.get_stream().to_le_bytes());
        bytes.extend_from_slice(&self.rng.get_word_pos().to_le_bytes());
        PyBytes::new(py, &bytes)
    }

    /// Continue the random draws from a state returned by `get_rng_state`.
    fn set_rng_state(&mut self, state: &[u8]) -> PyResult<()> {
        let (Ok(seed), Ok(stream), Ok(word_pos)) = (
            <[u8; 32]>::try_from(state.get(..32).unwrap_or_default()),
            <[u8; 8]>::try_from(state.get(32..40).unwrap_or_default()),
            <[u8; 16]>::try_from(state.get(40..).unwrap_or_default()),
        ) else {
            return Err(PyValueError::new_err(format!(
                "state: expected {RNG_STATE_LEN} bytes from get_rng_state(), got {}",
                state.len()
            )));
        };
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(u64::from_le_bytes(stream));
        rng.set_word_pos(u128::from_le_bytes(word_pos));
        self.rng = rng;
        Ok(())
    }

    /// Stream every visit record of later `select` calls to `path` (`.csv`, or `.dsv` for
    /// the compact binary format); `append` continues an existing file (a resumed run).
    #[pyo3(signature = (path, append = true))]
    fn open_records(&mut self, path: PathBuf, append: bool) -> PyResult<()> {
        let writer = if append { RecordWriter::append(&path) } else { RecordWriter::create(&path) };
        self.records = Some(writer.map_err(to_py)?);
        Ok(())
    }

    /// Flush and close the record file opened by `open_records` (no-op without one).
    fn close_records(&mut self) -> PyResult<()> {
        match self.records.take() {
            Some(mut writer) => writer.flush().map_err(to_py),
            None => Ok(()),
        }
    }

    /// The last selection's visit records, one per batch row, as a dict of NumPy columns
    /// (`epoch`, `step`, `index`, `curr`, `hist`, `rank_key`, `selected`); None before any.
    #[getter]
    fn last_records<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.last.as_ref().map(|s| records::to_dict(py, &s.records)).transpose()
    }

    /// Whether the last selection drew its rows at random (None before any).
    #[getter]
    fn last_drew_at_random(&self) -> Option<bool> {
        self.last.as_ref().map(|s| s.drew_at_random)
    }

    /// What one sample's history holds: `seen`, `warm` and `hist` (None until set), `last`
    /// score (NaN if none), `times_selected`, `last_epoch`.
    fn sample_state<'py>(&self, py: Python<'py>, index: u64) -> PyResult<Bound<'py, PyDict>> {
        let len = self.core.state().len();
        let slot = self.core.state().get(index).ok_or_else(|| {
            PyIndexError::new_err(format!(
                "index: dataset index {index} is out of range: the state holds {len} samples"
            ))
        })?;
        let dict = PyDict::new(py);
        dict.set_item("seen", slot.seen())?;
        dict.set_item("warm", slot.warm())?;
        dict.set_item("hist", slot.hist())?;
        dict.set_item("last", slot.last)?;
        dict.set_item("times_selected", slot.times_selected)?;
        dict.set_item("last_epoch", slot.last_epoch)?;
        Ok(dict)
    }

    /// Number of samples visited at least once.
    #[getter]
    fn seen_count(&self) -> u64 {
        self.core.state().seen_count()
    }

    /// The inputs `select` needs for this strategy, as its keyword names.
    #[getter]
    fn needs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let needs = self.core.config().strategy.needs();
        let names = [
            (needs.clip_scores, "clip_scores"),
            (needs.losses, "losses"),
            (needs.reference_scores, "reference_scores"),
        ];
        let needed: Vec<&str> = names.into_iter().filter(|(needed, _)| *needed).map(|(_, name)| name).collect();
        PyTuple::new(py, needed)
    }

    #[getter]
    fn strategy(&self) -> &'static str {
        self.core.config().strategy.name()
    }

    #[getter]
    fn rate(&self) -> f64 {
        self.core.config().rate
    }

    #[getter]
    fn dataset_len(&self) -> u64 {
        self.core.state().len()
    }

    #[getter]
    fn warmup_epochs(&self) -> Option<u32> {
        self.core.config().warmup_epochs.fixed()
    }

    #[getter]
    fn momentum(&self) -> f64 {
        self.core.config().momentum
    }

    #[getter]
    fn warmup_rows(&self) -> &'static str {
        match self.core.config().warmup_rows {
            WarmupRows::Random => "random",
            WarmupRows::All => "all",
        }
    }

    #[getter]
    fn seed(&self) -> u64 {
        self.seed
    }

    fn __repr__(&self) -> String {
        let c = self.core.config();
        format!(
            "Selector(strategy='{}', rate={}, dataset_len={}, warmup_epochs={}, momentum={}, seed={}, warmup_rows='{}')",
            c.strategy,
            c.rate,
            self.core.state().len(),
            c.warmup_epochs,
            c.momentum,
            self.seed,
            self.warmup_rows()
        )
    }
}

fn optional_slice<'a>(array: &'a Option<numpy::PyReadonlyArray1<'_, f32>>, arg: &str) -> PyResult<Option<&'a [f32]>> {
    array.as_ref().map(|a| a.as_slice().map_err(|e| PyValueError::new_err(format!("{arg}: {e}")))).transpose()
}

/// Every record of a `.csv` or `.dsv` visit-record file (written by the CLI, the trainer or
/// `Selector.open_records`) as a dict of NumPy columns.
#[pyfunction]
fn read_records(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyDict>> {
    let records = dissect_select::read_records(&path).map_err(to_py)?;
    records::to_dict(py, &records)
}

/// Online sample selection for contrastive (CLIP-style) training: DISSect and baselines.
#[pymodule]
#[pyo3(name = "dissect_select")]
fn dissect_select_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Selector>()?;
    m.add_function(wrap_pyfunction!(read_records, m)?)?;
    m.add("STRATEGIES", PyTuple::new(m.py(), Strategy::ALL.map(Strategy::name))?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
