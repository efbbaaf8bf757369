"""Calibration data sources (folders of .npy/.npz, iterables of feeds, DataLoaders), the checks on every sample
(name, shape, dtype, NaN/inf, each error naming the sample and the input) and the held-out split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from braze.errors import BrazeError
from braze.ir import DType, Graph, Tensor
from braze.ir.graph import SEQUENCE
from braze.precision.data import iter_samples, load_samples, split

RNG = np.random.default_rng(0)


def one_input() -> Graph:
    return Graph(inputs=[Tensor("x", DType.float32, (1, 3, 4, 4))], name="one")


def two_inputs() -> Graph:
    return Graph(inputs=[Tensor("pixels", DType.float32, ("batch", 2, 3)),
                         Tensor("ids", DType.int32, ("batch", 5))], name="two")


def image(shape=(1, 3, 4, 4), dtype=np.float32) -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


def pair(batch: int = 2) -> dict[str, np.ndarray]:
    return {"pixels": image((batch, 2, 3)), "ids": RNG.integers(0, 100, (batch, 5)).astype(np.int32)}


def refused(source, graph, *fragments: str) -> str:
    with pytest.raises(BrazeError) as info:
        load_samples(source, graph)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# -- sources ------------------------------------------------------------------------------------------------

def test_a_folder_of_npy_files_is_read_in_name_order_and_other_files_are_left_alone(tmp_path):
    arrays = {name: image() for name in ["b.npy", "a.npy", "c.npy"]}
    for name, array in arrays.items():
        np.save(tmp_path / name, array)
    (tmp_path / "notes.txt").write_text("not data")
    np.save(tmp_path / ".hidden.npy", image((2, 2)))
    samples = load_samples(tmp_path, one_input())
    assert len(samples) == 3
    for feed, name in zip(samples, ["a.npy", "b.npy", "c.npy"]):
        assert list(feed) == ["x"] and feed["x"].dtype == torch.float32 and feed["x"].device.type == "cpu"
        np.testing.assert_array_equal(feed["x"].numpy(), arrays[name])


def test_npz_files_give_named_inputs_and_a_single_file_is_one_sample(tmp_path):
    first, second = pair(), pair(3)
    np.savez(tmp_path / "s0.npz", **first)
    np.savez(tmp_path / "s1.npz", **second)
    samples = load_samples(tmp_path, two_inputs())
    assert [list(s) for s in samples] == [["pixels", "ids"]] * 2
    assert samples[1]["ids"].dtype == torch.int32
    np.testing.assert_array_equal(samples[1]["pixels"].numpy(), second["pixels"])
    single = load_samples(tmp_path / "s0.npz", two_inputs())
    np.testing.assert_array_equal(single[0]["ids"].numpy(), first["ids"])


def test_an_iterable_of_feeds_takes_numpy_arrays_and_torch_tensors():
    feeds = [{"x": image()}, {"x": torch.from_numpy(image())}]
    samples = load_samples(feeds, one_input())
    assert len(samples) == 2 and all(s["x"].shape == (1, 3, 4, 4) for s in samples)
    assert list(iter_samples(iter(feeds), one_input()))[1]["x"].equal(feeds[1]["x"])


def test_a_dataloader_of_dicts_and_of_tuples_keeps_the_batch_dim():
    items = [pair(1) for _ in range(6)]
    dicts = DataLoader([{k: v[0] for k, v in item.items()} for item in items], batch_size=3)
    samples = load_samples(dicts, two_inputs())
    assert len(samples) == 2 and samples[0]["pixels"].shape == (3, 2, 3) and samples[0]["ids"].dtype == torch.int32
    np.testing.assert_array_equal(samples[1]["ids"][2].numpy(), items[5]["ids"][0])
    pixels = torch.from_numpy(np.concatenate([i["pixels"] for i in items]))
    ids = torch.from_numpy(np.concatenate([i["ids"] for i in items]))
    tuples = load_samples(DataLoader(TensorDataset(pixels, ids), batch_size=4), two_inputs())
    assert [s["pixels"].shape[0] for s in tuples] == [4, 2] and tuples[1]["ids"].equal(ids[4:])


def test_bare_tensors_feed_a_one_input_model_and_limit_stops_early():
    loader = DataLoader(torch.from_numpy(image((8, 3, 4, 4))), batch_size=1)
    assert len(load_samples(loader, one_input(), limit=3)) == 3


def test_samples_land_on_the_device_given_contiguous():
    transposed = torch.from_numpy(image((4, 4, 3, 1))).permute(3, 2, 0, 1)
    feed = load_samples([{"x": transposed}], one_input(), device=torch.device("cpu"))[0]
    assert feed["x"].device == torch.device("cpu") and feed["x"].is_contiguous() and feed["x"].equal(transposed)


@pytest.mark.parametrize("source, fragment", [
    ({"x": np.zeros((1, 3, 4, 4), np.float32)}, "is one dict"),
    (np.zeros((2, 1, 3, 4, 4), np.float32), "is one array"),
    (42, "not a int"),
    ([], "holds no samples"),
])
def test_sources_that_are_not_data_are_refused_with_what_to_pass(source, fragment):
    refused(source, one_input(), fragment)


def test_folder_problems_are_named(tmp_path):
    refused(tmp_path / "missing", one_input(), "does not exist")
    refused(tmp_path, one_input(), "holds no .npy or .npz files")
    (tmp_path / "bad.npy").write_bytes(b"not numpy at all")
    refused(tmp_path, one_input(), "'bad.npy'", "cannot be read")
    refused(tmp_path / "bad.npy", two_inputs(), "'bad.npy' holds one array", "2 inputs", "use .npz")
    np.savez(tmp_path / "objects.npz", pixels=np.array([object()], dtype=object))
    refused(tmp_path / "objects.npz", two_inputs(), "'objects.npz'", "cannot be read")


def test_a_failing_loader_is_a_braze_error_with_its_cause():
    def broken():
        yield {"x": image()}
        raise RuntimeError("disk on fire")

    with pytest.raises(BrazeError, match="reading calibration sample 1 failed: RuntimeError: disk on fire") as info:
        load_samples(broken(), one_input())
    assert isinstance(info.value.__cause__, RuntimeError)


def test_inputs_other_than_tensors_are_refused():
    graph = Graph(inputs=[Tensor("xs", DType.float32, (2,), kind=SEQUENCE)], name="seq")
    refused([{"xs": [image((2,))]}], graph, "'xs'", "not tensors")


# -- bad samples --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("feed, fragments", [
    ({"x": image(), "y": image()}, ["calibration sample 1", "unknown input(s) 'y'", "'x': float32[1,3,4,4]"]),
    ({}, ["calibration sample 1", "missing input(s) 'x'"]),
    ({"x": image((1, 3, 4, 5))}, ["calibration sample 1, input 'x'", "[1,3,4,5]", "dim 3 is 4"]),
    ({"x": image((3, 4, 4))}, ["calibration sample 1, input 'x'", "rank 3", "add it: x[None]"]),
    ({"x": image().astype(np.uint8)}, ["calibration sample 1, input 'x' is uint8", "expects float32", "normaliz"]),
    ({"x": [[1.0]]}, ["calibration sample 1, input 'x' is a list"]),
    ({"x": image().astype(np.complex64)}, ["input 'x' has numpy dtype complex64"]),
])
def test_a_bad_sample_names_the_sample_and_the_input(feed, fragments):
    refused([{"x": image()}, feed], one_input(), *fragments)


def test_a_bad_file_is_named_by_its_file_name(tmp_path):
    np.savez(tmp_path / "s0.npz", **pair())
    np.savez(tmp_path / "s1.npz", pixels=image((2, 2, 3)), tokens=np.zeros((2, 5), np.int32))
    refused(tmp_path, two_inputs(), "calibration file 's1.npz'", "unknown input(s) 'tokens'", "missing input(s) 'ids'")


def test_a_tuple_of_the_wrong_length_hints_at_labels():
    refused([(image(), np.int64(3))], one_input(), "calibration sample 0 has 2 values", "inputs and labels")
    refused([image()], two_inputs(), "calibration sample 0 is one array", "2 inputs")


def test_a_symbolic_dim_takes_any_size_but_the_same_in_every_input():
    assert load_samples([pair(7)], two_inputs())[0]["ids"].shape == (7, 5)
    refused([{"pixels": image((2, 2, 3)), "ids": np.zeros((3, 5), np.int32)}], two_inputs(),
            "input 'ids'", "'batch' is 3", "input 'pixels'", "'batch' = 2")


def test_float_data_is_converted_to_the_float_input_type():
    feed = load_samples([{"x": image(dtype=np.float64)}], one_input())[0]
    assert feed["x"].dtype == torch.float32
    half = load_samples([{"x": torch.ones(1, 3, 4, 4, dtype=torch.bfloat16)}], one_input())[0]
    assert half["x"].dtype == torch.float32 and bool((half["x"] == 1).all())


def test_integer_data_is_converted_when_it_fits_the_integer_input_type():
    feed = load_samples([{"pixels": image((1, 2, 3)), "ids": np.arange(5, dtype=np.int64)[None]}], two_inputs())[0]
    assert feed["ids"].dtype == torch.int32 and feed["ids"].tolist() == [[0, 1, 2, 3, 4]]
    too_big = np.full((1, 5), 2 ** 40, np.int64)
    refused([{"pixels": image((1, 2, 3)), "ids": too_big}], two_inputs(), "input 'ids'", "beyond int32's range")
    refused([{"pixels": image((1, 2, 3)), "ids": np.zeros((1, 5))}], two_inputs(),
            "input 'ids' is float64", "expects int32")


@pytest.mark.parametrize("bad, fragment", [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")])
def test_nan_and_infinity_are_named(bad, fragment):
    values = image()
    values[0, 1, 2, 3] = bad
    message = refused([{"x": image()}, {"x": values}], one_input(), "calibration sample 1, input 'x'", fragment,
                      "1 of 48 values")
    assert "finite" in message


def test_float64_beyond_the_float32_range_is_refused_after_conversion():
    values = image(dtype=np.float64)
    values[0, 0, 0, 0] = 1e300
    refused([{"x": values}], one_input(), "input 'x'", "infinity after conversion to float32")


# -- split --------------------------------------------------------------------------------------------------

def test_split_holds_out_evenly_spaced_samples_deterministically():
    kept, held = split(list(range(10)), held_out=0.2)
    assert held == [2, 7] and kept == [0, 1, 3, 4, 5, 6, 8, 9]
    assert split(list(range(10)), held_out=0.2) == (kept, held)
    kept, held = split(list(range(100)), held_out=0.25)
    assert len(held) == 25 and sorted(kept + held) == list(range(100))
    assert all(4 * k <= h < 4 * (k + 1) for k, h in enumerate(held))  # one from every block of four


def test_split_keeps_at_least_one_on_each_side():
    assert split([0, 1, 2], held_out=0.01) == ([0, 2], [1])
    assert split([0, 1], held_out=0.9) == ([0], [1])
    assert split([0], held_out=0) == ([0], [])


@pytest.mark.parametrize("held_out", [-0.1, 1.0, 2, True, "0.2"])
def test_split_refuses_a_fraction_outside_zero_to_one(held_out):
    with pytest.raises(BrazeError, match="held_out="):
        split([1, 2, 3], held_out=held_out)


def test_split_needs_two_samples_to_hold_one_out():
    with pytest.raises(BrazeError, match="at least 2 calibration samples, got 1"):
        split([1], held_out=0.2)
