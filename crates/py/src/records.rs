//! Visit records as columns: one NumPy array per field, the shape pandas and NumPy users want.

use dissect_select::VisitRecord;
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// `{"epoch": uint32, "step": uint64, "index": uint64, "curr": float32, "hist": float32,
/// "rank_key": float32, "selected": bool}`, NaN where the record has no value.
pub(crate) fn to_dict<'py>(py: Python<'py>, records: &[VisitRecord]) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("epoch", column(py, records, |r| r.epoch))?;
    dict.set_item("step", column(py, records, |r| r.step))?;
    dict.set_item("index", column(py, records, |r| r.index))?;
    dict.set_item("curr", column(py, records, |r| r.curr))?;
    dict.set_item("hist", column(py, records, |r| r.hist))?;
    dict.set_item("rank_key", column(py, records, |r| r.rank_key))?;
    dict.set_item("selected", column(py, records, |r| r.selected))?;
    Ok(dict)
}

fn column<'py, T: numpy::Element>(
    py: Python<'py>,
    records: &[VisitRecord],
    field: impl Fn(&VisitRecord) -> T,
) -> Bound<'py, PyArray1<T>> {
    PyArray1::from_vec(py, records.iter().map(field).collect())
}
