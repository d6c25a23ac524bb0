"""Online sample selection for contrastive (CLIP-style) training: DISSect and baselines."""

from os import PathLike
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

__version__: str
#: Every strategy name `Selector` accepts.
STRATEGIES: tuple[str, ...]

_Path = Union[str, PathLike[str]]
_Array = npt.ArrayLike

class Selector:
    """One strategy bound to its per-sample score state and its own RNG, seeded by `seed`.

    The RNG is `ChaCha8Rng::seed_from_u64(seed)`; the dissect trainer uses
    `seed ^ 0x0D155EC7` for its selection RNG.
    """

    def __init__(
        self,
        strategy: str,
        rate: float,
        dataset_len: int,
        warmup_epochs: int = 2,
        momentum: float = 0.9,
        seed: int = 0,
        warmup_rows: str = "random",
    ) -> None: ...
    def select(
        self,
        indices: _Array,
        clip_scores: Optional[_Array] = None,
        losses: Optional[_Array] = None,
        *,
        epoch: int,
        step: int,
        reference_scores: Optional[_Array] = None,
    ) -> npt.NDArray[np.int64]:
        """Kept batch positions, ascending. `indices`: integer dataset indices; scores: floats
        (float32 and uint64 indices are read in place, other dtypes converted)."""
    def keep_count(self, batch_size: int) -> int: ...
    def save(self, path: _Path) -> None:
        """Write the score state as a `.dss` snapshot (flushes an open record file first)."""
    def load(self, path: _Path) -> None:
        """Replace the score state with a `.dss` snapshot of the same `dataset_len`."""
    def get_rng_state(self) -> bytes: ...
    def set_rng_state(self, state: bytes) -> None: ...
    def open_records(self, path: _Path, append: bool = True) -> None:
        """Stream every later visit record to a `.csv` or `.dsv` file."""
    def close_records(self) -> None: ...
    def sample_state(self, index: int) -> dict[str, Any]: ...
    @property
    def last_records(self) -> Optional[dict[str, np.ndarray]]: ...
    @property
    def last_drew_at_random(self) -> Optional[bool]: ...
    @property
    def seen_count(self) -> int: ...
    @property
    def needs(self) -> tuple[str, ...]: ...
    @property
    def strategy(self) -> str: ...
    @property
    def rate(self) -> float: ...
    @property
    def dataset_len(self) -> int: ...
    @property
    def warmup_epochs(self) -> int: ...
    @property
    def momentum(self) -> float: ...
    @property
    def warmup_rows(self) -> str: ...
    @property
    def seed(self) -> int: ...

def read_records(path: _Path) -> dict[str, np.ndarray]:
    """Every record of a `.csv` or `.dsv` visit-record file, as NumPy columns."""
