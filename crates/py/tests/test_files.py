"""Snapshots (.dss), RNG state, visit-record files, and the array types `select` accepts."""

import struct
import zlib

import numpy as np
import pytest

import dissect_select as ds

N = 64


def batches():
    """The batches of the Rust test `save_load_gives_identical_selections`."""
    out = []
    for step in range(12):
        indices = np.array([(step * 16 + j * 5) % N for j in range(16)], dtype=np.int64)
        clip = np.array([(i * 37 + step * 11) % 50 for i in indices], dtype=np.float32)
        out.append((indices, clip, step // 4, step))
    return out


def run(sel, steps):
    return [sel.select(i, c, epoch=e, step=s).tolist() for i, c, e, s in [batches()[k] for k in steps]]


@pytest.mark.parametrize("strategy", ["dissect-momentum", "dissect-warmup", "random"])
def test_save_load_gives_identical_selections(tmp_path, strategy):
    straight = ds.Selector(strategy, 0.3, N, seed=7)
    expected = run(straight, range(12))

    first = ds.Selector(strategy, 0.3, N, seed=7)
    got = run(first, range(6))
    path = tmp_path / "state.dss"
    first.save(path)
    rng = first.get_rng_state()
    del first
    # A resumed run: a new selector (any seed), its state and RNG position from the checkpoint.
    resumed = ds.Selector(strategy, 0.3, N, seed=12345)
    resumed.load(str(path))
    resumed.set_rng_state(rng)
    got += run(resumed, range(6, 12))
    assert got == expected
    assert [resumed.sample_state(i) for i in range(N)] == [straight.sample_state(i) for i in range(N)]

    # The same history gives the same file.
    again = tmp_path / "again.dss"
    straight.save(again)
    resumed.save(tmp_path / "resumed.dss")
    assert again.read_bytes() == (tmp_path / "resumed.dss").read_bytes()


def test_snapshot_is_the_documented_dss_format(tmp_path):
    sel = ds.Selector("dissect-momentum", 0.5, 3, momentum=0.5)
    sel.select(np.array([0, 2]), np.array([10.0, -4.0], dtype=np.float32), epoch=5, step=0)
    path = tmp_path / "s.dss"
    sel.save(path)
    data = path.read_bytes()
    # 64-byte header: magic, version 1, slot size 24, sample count, data CRC-32, header CRC-32.
    assert len(data) == 64 + 3 * 24
    magic, version, slot_len, count, data_crc, header_crc = struct.unpack_from("<8sIIQII", data)
    assert (magic, version, slot_len, count) == (b"DSSCORES", 1, 24, 3)
    assert data_crc == zlib.crc32(data[64:])
    assert header_crc == zlib.crc32(data[:28])
    # Slot of sample 0: warm, hist, last (f32), times_selected, last_epoch, flags (u32).
    warm, hist, last, times, last_epoch, flags = struct.unpack_from("<fffIII", data, 64)
    assert (hist, last, last_epoch) == (10.0, 10.0, 5), "first sight: hist = curr, then hist/2 + curr/2 = 10"
    assert flags == 1 | 4, "seen, has history"
    assert struct.unpack_from("<fffIII", data, 64 + 24)[5] == 0, "sample 1 never visited"
    assert struct.unpack_from("<fffIII", data, 64 + 48)[:3] == (0.0, 0.0, 0.0), "sample 2: clamped at 0"


def test_load_rejects_bad_files(tmp_path):
    sel = ds.Selector("dissect-momentum", 0.5, 8)
    with pytest.raises(FileNotFoundError) as missing:
        sel.load(tmp_path / "missing.dss")
    assert missing.value.filename.endswith("missing.dss")
    garbage = tmp_path / "garbage.dss"
    garbage.write_bytes(b"hello")
    with pytest.raises(ValueError, match=r"garbage.dss: not a dissect score-state file"):
        sel.load(garbage)
    good = tmp_path / "good.dss"
    sel.save(good)
    truncated = tmp_path / "truncated.dss"
    truncated.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"truncated or padded"):
        sel.load(truncated)
    with pytest.raises(ValueError, match=r"the snapshot holds 8 samples, this selector was built for dataset_len=9"):
        ds.Selector("dissect-momentum", 0.5, 9).load(good)


@pytest.mark.parametrize("name", ["visits.csv", "visits.dsv"])
def test_visit_records_stream_and_read_back(tmp_path, name):
    path = tmp_path / name
    sel = ds.Selector("dissect-momentum", 0.5, N, seed=3)
    sel.open_records(path, append=False)
    first = []
    for indices, clip, epoch, step in batches()[:3]:
        sel.select(indices, clip, epoch=epoch, step=step)
        first.append(sel.last_records)
    sel.save(tmp_path / "checkpoint.dss")  # flushes the records
    assert len(ds.read_records(path)["index"]) == 3 * 16
    sel.close_records()

    # A resumed run appends to the same file.
    sel.open_records(path)
    indices, clip, epoch, step = batches()[3]
    sel.select(indices, clip, epoch=epoch, step=step)
    first.append(sel.last_records)
    sel.close_records()

    records = ds.read_records(path)
    for column in ["epoch", "step", "index", "curr", "hist", "rank_key", "selected"]:
        expected = np.concatenate([r[column] for r in first])
        np.testing.assert_array_equal(records[column], expected, err_msg=column)
    assert records["step"].tolist() == [s for s in range(4) for _ in range(16)]


def test_record_file_errors(tmp_path):
    sel = ds.Selector("random", 0.5, 4)
    with pytest.raises(ValueError, match=r"record files must end in .csv, .dsv or .bin"):
        sel.open_records(tmp_path / "visits.parquet")
    with pytest.raises(FileNotFoundError):
        ds.read_records(tmp_path / "none.csv")


class ArrayInterface:
    """An object that is not an ndarray but exposes `__array_interface__` (like a torch tensor
    exposes `__array__`)."""

    def __init__(self, array):
        self.array = array
        self.__array_interface__ = array.__array_interface__


def test_accepted_array_forms():
    indices = np.array([3, 1, 4, 0], dtype=np.int64)
    clip = np.array([5.0, 9.0, 2.0, 6.0], dtype=np.float32)
    expected = [1, 3]

    def kept(i, c):
        return ds.Selector("clipscore", 0.5, 8).select(i, c, epoch=0, step=0).tolist()

    assert kept(indices, clip) == expected
    assert kept(indices.astype(np.uint64), clip.astype(np.float64)) == expected
    assert kept(indices.astype(np.int32), clip.astype(np.float16)) == expected
    assert kept(indices.astype(np.uint8), clip.astype(">f4")) == expected, "big-endian is converted"
    assert kept(indices.tolist(), clip.tolist()) == expected, "lists"
    assert kept(ArrayInterface(indices), ArrayInterface(clip)) == expected
    strided = np.zeros(8, dtype=np.float32)
    strided[::2] = clip
    assert kept(indices, strided[::2]) == expected, "a non-contiguous view"
    readonly = clip.copy()
    readonly.flags.writeable = False
    assert kept(indices, readonly) == expected


def test_inputs_are_not_modified():
    indices = np.array([3, 1, 4, 0], dtype=np.uint64)
    clip = np.array([-5.0, 9.0, 2.0, 6.0], dtype=np.float32)
    ds.Selector("dissect-momentum", 0.5, 8).select(indices, clip, epoch=0, step=0)
    assert clip.tolist() == [-5.0, 9.0, 2.0, 6.0], "the clamp at 0 is not written back"
    assert indices.tolist() == [3, 1, 4, 0]
