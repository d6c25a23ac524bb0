//! Caller arrays to slices: anything `numpy.asarray` accepts, read in place when it already
//! has the dtype the core works in (`float32` scores, `uint64` indices, contiguous), converted
//! otherwise.

use numpy::{
    PyArray1, PyArrayDescr, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray1, PyUntypedArray,
    PyUntypedArrayMethods, dtype,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// Dataset indices of a batch: the caller's own `uint64` buffer, or a converted copy.
pub(crate) enum Indices<'py> {
    Borrowed(PyReadonlyArray1<'py, u64>),
    Owned(Vec<u64>),
}

impl Indices<'_> {
    pub(crate) fn as_slice(&self) -> PyResult<&[u64]> {
        match self {
            Indices::Borrowed(array) => array.as_slice().map_err(|e| PyValueError::new_err(format!("indices: {e}"))),
            Indices::Owned(values) => Ok(values),
        }
    }
}

/// Read `indices`: any integer dtype; negative values are refused here because the core
/// takes `u64`. An empty array of any dtype (`[]` is float64 to NumPy) is an empty batch.
pub(crate) fn indices<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Indices<'py>> {
    let array = one_dimensional(obj, "indices")?;
    if array.is_empty() {
        return Ok(Indices::Owned(Vec::new()));
    }
    let descr = array.dtype();
    match descr.kind() {
        b'u' => Ok(Indices::Borrowed(readonly::<u64>(&converted::<u64>(&array, &descr)?, "indices")?)),
        b'i' => {
            let signed = readonly::<i64>(&converted::<i64>(&array, &descr)?, "indices")?;
            let values = signed.as_slice().map_err(|e| PyValueError::new_err(format!("indices: {e}")))?;
            non_negative(values).map(Indices::Owned)
        }
        _ => Err(PyTypeError::new_err(format!(
            "indices must be an integer array of dataset indices, got dtype {}",
            dtype_name(&descr)
        ))),
    }
}

/// Read an optional score array (`clip_scores`, `losses`, `reference_scores`): any floating
/// dtype, converted to `float32` unless it already is.
pub(crate) fn scores<'py>(obj: Option<&Bound<'py, PyAny>>, arg: &str) -> PyResult<Option<PyReadonlyArray1<'py, f32>>> {
    let Some(obj) = obj else { return Ok(None) };
    let array = one_dimensional(obj, arg)?;
    let descr = array.dtype();
    if descr.kind() != b'f' {
        return Err(PyTypeError::new_err(format!(
            "{arg} must be a floating-point array (float32; other float dtypes are converted), got dtype {}",
            dtype_name(&descr)
        )));
    }
    readonly::<f32>(&converted::<f32>(&array, &descr)?, arg).map(Some)
}

/// `numpy.asarray(obj)`, checked to be 1-D and made C-contiguous (a copy only if it was not).
fn one_dimensional<'py>(obj: &Bound<'py, PyAny>, arg: &str) -> PyResult<Bound<'py, PyUntypedArray>> {
    let numpy = obj.py().import("numpy")?;
    let array = numpy.call_method1("asarray", (obj,))?.cast_into::<PyUntypedArray>()?;
    if array.ndim() != 1 {
        let shape: Vec<String> = array.shape().iter().map(usize::to_string).collect();
        return Err(PyValueError::new_err(format!("{arg} must be a 1-D array, got shape ({})", shape.join(", "))));
    }
    if array.is_c_contiguous() {
        return Ok(array);
    }
    Ok(numpy.call_method1("ascontiguousarray", (array,))?.cast_into::<PyUntypedArray>()?)
}

/// The array as `T`: itself when its dtype is already `T` in native byte order, else `astype`.
fn converted<'py, T: numpy::Element>(
    array: &Bound<'py, PyUntypedArray>,
    descr: &Bound<'py, PyArrayDescr>,
) -> PyResult<Bound<'py, PyArray1<T>>> {
    let py = array.py();
    let target = dtype::<T>(py);
    let same =
        if descr.is_equiv_to(&target) { array.clone().into_any() } else { array.call_method1("astype", (target,))? };
    Ok(same.cast_into::<PyArray1<T>>()?)
}

fn readonly<'py, T: numpy::Element>(array: &Bound<'py, PyArray1<T>>, arg: &str) -> PyResult<PyReadonlyArray1<'py, T>> {
    array.try_readonly().map_err(|e| PyValueError::new_err(format!("{arg}: {e}")))
}

fn non_negative(values: &[i64]) -> PyResult<Vec<u64>> {
    values
        .iter()
        .enumerate()
        .map(|(position, &value)| {
            u64::try_from(value).map_err(|_| {
                PyValueError::new_err(format!(
                    "indices: dataset index {value} at batch position {position} is negative"
                ))
            })
        })
        .collect()
}

fn dtype_name(descr: &Bound<'_, PyArrayDescr>) -> String {
    // `str(dtype)` ("float64") does not fail for NumPy's own dtypes; the type code is a fallback.
    descr.str().map(|s| s.to_string()).unwrap_or_else(|_| format!("'{}'", char::from(descr.char())))
}
