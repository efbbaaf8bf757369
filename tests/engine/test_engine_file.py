"""Engine round trips (bytes and file) and every way an engine file can be bad."""

import json
import struct

import numpy as np
import pytest

import braze
from braze.engine.format import FORMAT_VERSION, MAGIC
from braze.errors import DeviceMismatchError, EngineFormatError


def run(engine, x):
    return engine.create_execution_context().infer({"x": x})["y"]


def test_round_trip_bytes_and_file_give_identical_outputs(act_engine, act_input, tmp_path):
    expected = run(act_engine, act_input)
    from_bytes = braze.Runtime().load(act_engine.serialize())
    path = tmp_path / "m.engine"
    act_engine.save(path)
    from_file = braze.Runtime().load(str(path))
    np.testing.assert_array_equal(run(from_bytes, act_input), expected)
    np.testing.assert_array_equal(run(from_file, act_input), expected)
    assert from_file.serialize() == act_engine.serialize()


def test_serialization_is_deterministic(act_engine):
    assert act_engine.serialize() == braze.Runtime().load(act_engine.serialize()).serialize()


@pytest.mark.parametrize("keep", [0, 5, 20, 60, -1])
def test_truncated_engine_is_refused(act_engine, keep):
    data = act_engine.serialize()
    cut = data[:keep] if keep >= 0 else data[:-1]
    with pytest.raises(EngineFormatError, match="truncated|not a braze engine|shorter"):
        braze.Runtime().load(cut)


@pytest.mark.parametrize("where", [12, 50, 200, "plan", "weights", -1])
def test_bit_flip_is_detected(act_engine, where):
    data = bytearray(act_engine.serialize())
    if where == "plan":
        where = data.index(b'"nodes"') + 3
    elif where == "weights":
        where = len(data) - 10
    data[where] ^= 0x10
    with pytest.raises(EngineFormatError, match="corrupted|malformed|truncated"):
        braze.Runtime().load(bytes(data))


def test_other_format_version_is_refused(act_engine):
    data = bytearray(act_engine.serialize())
    struct.pack_into("<I", data, len(MAGIC), FORMAT_VERSION + 1)
    with pytest.raises(EngineFormatError, match=f"format version {FORMAT_VERSION + 1}.*rebuild"):
        braze.Runtime().load(bytes(data))


def test_wrong_magic_is_refused(tmp_path, cnn_model):
    path = tmp_path / "model.onnx"
    path.write_bytes(cnn_model.SerializeToString())
    with pytest.raises(EngineFormatError, match="not a braze engine"):
        braze.Runtime().load(path)


def _with_device(engine, **device) -> bytes:
    from braze.engine.format import serialize

    plan = engine.plan
    original = plan.device
    plan.device = {**original, **device}
    try:
        return serialize(plan)
    finally:
        plan.device = original


def test_engine_of_another_device_kind_is_refused(act_engine):
    data = _with_device(act_engine, kind="cuda", name="NVIDIA H100 80GB HBM3", compute_capability="9.0", sm_count=132)
    with pytest.raises(DeviceMismatchError, match="built for a (cuda|CUDA).*H100"):
        braze.Runtime(device="cpu").load(data)


def test_engine_of_another_cpu_architecture_is_refused(act_engine):
    data = _with_device(act_engine, arch="riscv64")
    with pytest.raises(DeviceMismatchError, match="riscv64"):
        braze.Runtime().load(data)


def test_missing_file_is_a_braze_error(tmp_path):
    with pytest.raises(braze.BrazeError, match="no such engine file"):
        braze.Runtime().load(tmp_path / "nope.engine")


def test_plan_is_json_and_weights_are_safetensors(act_engine):
    data = act_engine.serialize()
    header_len = struct.unpack_from("<I", data, 44)[0]
    header = json.loads(data[48:48 + header_len])
    plan = json.loads(data[48 + header_len: 48 + header_len + header["plan_size"]])
    assert plan["device"]["kind"] == "cpu"
    assert [n["op"] for n in plan["graph"]["nodes"]] == ["Pointwise"]
    body = plan["graph"]["nodes"][0]["attrs"]["body"]["$graph"]
    assert [n["op"] for n in body["nodes"]] == ["PRelu", "Sigmoid", "Clip", "Tanh"]
    from safetensors.torch import load

    weights = load(data[48 + header_len + header["plan_size"]:])
    assert set(weights) == {"slope", "lo", "hi"}
