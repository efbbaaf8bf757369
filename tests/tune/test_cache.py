"""The timing cache: what a layer's key depends on, which device's decisions are taken, and what a damaged or
forged file does (a clear BrazeError naming the file; never a raw exception, never a half-trusted read)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from braze.errors import BrazeError
from braze.ir import DType, Node, Tensor
from braze.tune import TimingCache, layer_key
from braze.tune.cache import CACHE_VERSION

DEVICE = {"kind": "cuda", "name": "Fake GPU", "compute_capability": "9.0", "cuda": "13.0", "cudnn": 91000,
          "torch": "2.11.0", "triton": "3.6.0"}


def conv(name="conv", x_shape=(1, 3, 8, 8), dtype=DType.float32, pads=(1, 1, 1, 1), weight_value=None,
         op="Conv", version=0, weight_constant=True) -> Node:
    w_value = torch.ones(4, 3, 3, 3) if weight_value is None else weight_value
    w = Tensor(f"{name}_w", dtype, (4, 3, 3, 3), w_value.to(dtype.torch) if weight_constant else None)
    y = Tensor(f"{name}_y", dtype, (x_shape[0], 4, x_shape[2], x_shape[3]))
    return Node(op, [Tensor(f"{name}_x", dtype, x_shape), w], [y], {"pads": list(pads)}, name=name, version=version)


def test_the_key_ignores_names_and_follows_op_attributes_shapes_dtypes_and_constness():
    base = layer_key(conv())
    assert layer_key(conv(name="other")) == base
    variants = {
        "op": conv(op="ConvTranspose"),
        "version": conv(version=11),
        "attribute": conv(pads=(0, 0, 0, 0)),
        "shape": conv(x_shape=(2, 3, 8, 8)),
        "dtype": conv(dtype=DType.float16),
        "constness": conv(weight_constant=False),
    }
    keys = {what: layer_key(node) for what, node in variants.items()}
    assert all(k != base for k in keys.values()), keys
    assert len(set(keys.values())) == len(keys)


def test_a_tensor_attribute_is_keyed_by_its_value():
    def constant_of_shape(value: float) -> Node:
        return Node("ConstantOfShape", [Tensor("s", DType.int64, (2,))], [Tensor("y", DType.float32, None)],
                    {"value": torch.tensor([value])}, name="c")

    assert layer_key(constant_of_shape(1.0)) == layer_key(constant_of_shape(1.0))
    assert layer_key(constant_of_shape(1.0)) != layer_key(constant_of_shape(2.0))


def saved(path, device=DEVICE, **entries) -> TimingCache:
    cache = TimingCache(device, path)
    for key, (tactic, config) in entries.items():
        cache.put(key, tactic, config, 0.25, {tactic: 0.25, "other": float("nan")})
    cache.save()
    return cache


def test_a_saved_cache_is_read_back_on_the_same_device(tmp_path):
    path = tmp_path / "timing.cache"
    saved(path, k1=("cublas", {"weight": "kn"}))
    cache = TimingCache(dict(DEVICE, sm_count=132, braze="9.9"), path)  # keys outside the signature do not matter
    assert cache.get("k1")["tactic"] == "cublas" and cache.get("k1")["config"] == {"weight": "kn"}
    assert cache.get("k2") is None and (cache.hits, cache.misses) == (2, 1)
    assert not os.path.exists(str(path) + ".tmp")


@pytest.mark.parametrize("field,value", [("name", "Other GPU"), ("compute_capability", "8.0"), ("cuda", "12.8"),
                                         ("cudnn", 90100), ("torch", "2.12.0"), ("triton", "3.7.0"), ("kind", "cpu")])
def test_a_cache_from_another_device_or_library_is_ignored_and_replaced(tmp_path, field, value):
    path = tmp_path / "timing.cache"
    saved(path, k1=("cublas", {}))
    other = TimingCache(dict(DEVICE, **{field: value}), path)
    assert other.entries == {} and other.get("k1") is None
    other.put("k2", "triton", {}, 0.1, {})
    other.save()
    doc = json.loads(path.read_text())
    assert doc["device"][field] == value and set(doc["entries"]) == {"k2"}


def test_a_cache_of_another_version_is_ignored(tmp_path):
    path = tmp_path / "timing.cache"
    path.write_text(json.dumps({"version": CACHE_VERSION + 1, "device": DEVICE, "entries": {"k1": "new layout"}}))
    assert TimingCache(DEVICE, path).entries == {}


def good_doc() -> dict:
    return {"version": CACHE_VERSION, "device": DEVICE,
            "entries": {"k1": {"tactic": "cublas", "config": {}, "ms": 0.1, "candidates": {}}}}


DAMAGED = {
    "truncated": lambda: json.dumps(good_doc())[:40],
    "not json": lambda: "\x00\x01garbage",
    "a list": lambda: "[1, 2, 3]",
    "a string": lambda: '"timing"',
    "no entries": lambda: json.dumps({"version": CACHE_VERSION, "device": DEVICE}),
    "entries a list": lambda: json.dumps(dict(good_doc(), entries=[1])),
    "entry a string": lambda: json.dumps(dict(good_doc(), entries={"k1": "cublas"})),
    "entry without tactic": lambda: json.dumps(dict(good_doc(), entries={"k1": {"config": {}}})),
    "tactic not a name": lambda: json.dumps(dict(good_doc(), entries={"k1": {"tactic": 3, "config": {}}})),
    "config not an object": lambda: json.dumps(dict(good_doc(), entries={"k1": {"tactic": "x", "config": [1]}})),
}


@pytest.mark.parametrize("damage", list(DAMAGED))
def test_a_damaged_or_forged_cache_is_a_clear_error_and_is_left_alone(tmp_path, damage):
    path = tmp_path / "timing.cache"
    text = DAMAGED[damage]()
    path.write_text(text)
    with pytest.raises(BrazeError, match="timing cache .*timing.cache.*(cannot be read|is not a braze timing cache)"):
        TimingCache(DEVICE, path)
    assert path.read_text() == text


def test_a_folder_given_as_the_cache_is_a_clear_error(tmp_path):
    with pytest.raises(BrazeError, match="cannot be read"):
        TimingCache(DEVICE, tmp_path)


def test_a_cache_that_cannot_be_written_is_a_clear_error(tmp_path):
    cache = TimingCache(DEVICE, tmp_path / "missing" / "timing.cache")
    cache.put("k", "cublas", {}, 0.1, {})
    with pytest.raises(BrazeError, match=r"timing cache .*missing.*cannot be written"):
        cache.save()
