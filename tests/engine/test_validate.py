"""Forged engines (plan edits with the checksum recomputed) are refused on load, each naming the field at fault."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any, Callable

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import pytest

import braze
from braze.device import Target, available_memory, check_memory, human_bytes
from braze.engine.validate import arena_alignment
from braze.errors import BrazeError, EngineFormatError

from ..conftest import tiny_cnn


def forge(data: bytes, plan_edit: Callable[[dict[str, Any]], Any] | None = None,
          header_edit: Callable[[dict[str, Any]], Any] | None = None) -> bytes:
    """`data` with its plan and header edited, re-summed: a forgery the checksum cannot catch."""
    header_len = struct.unpack_from("<I", data, 44)[0]
    header = json.loads(data[48:48 + header_len])
    start = 48 + header_len
    plan = json.loads(data[start:start + header["plan_size"]])
    weights = data[start + header["plan_size"]:]
    if plan_edit:
        plan_edit(plan)
    plan_bytes = json.dumps(plan).encode()
    header["plan_size"], header["weights_size"] = len(plan_bytes), len(weights)
    if header_edit:
        header_edit(header)
    head = json.dumps(header).encode()
    body = struct.pack("<I", len(head)) + head + plan_bytes + weights
    return data[:12] + hashlib.sha256(body).digest() + body


@pytest.fixture(scope="module")
def cnn() -> bytes:
    """conv1_1 (FusedConv) -> r1, conv2_1 (FusedConv, residual r1) -> s, gap -> g, flatten_1 (view) -> f, fc_1 -> y."""
    return braze.Builder("cpu").build(braze.parse_onnx(tiny_cnn())).serialize()


@pytest.fixture(scope="module")
def concat() -> bytes:
    """conv_a -> a, conv_b -> b, both written in place into c by concat_1 (ConcatInPlace), relu -> y."""
    rng = np.random.default_rng(0)
    inits = [onh.from_array(rng.standard_normal((2, 3, 1, 1)).astype(np.float32), "wa"),
             onh.from_array(rng.standard_normal((4, 3, 1, 1)).astype(np.float32), "wb")]
    nodes = [oh.make_node("Conv", ["x", "wa"], ["a"], name="conv_a"),
             oh.make_node("Conv", ["x", "wb"], ["b"], name="conv_b"),
             oh.make_node("Concat", ["a", "b"], ["c"], name="concat", axis=1),
             oh.make_node("Relu", ["c"], ["y"], name="relu")]
    graph = oh.make_graph(nodes, "concat", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 5, 5])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 6, 5, 5])], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    engine = braze.Builder("cpu").build(braze.parse_onnx(model))
    assert engine.plan.memory.offsets["b"] == engine.plan.memory.offsets["c"] + 2 * 25 * 4  # b placed in c
    return engine.serialize()


def refused(data: bytes, match: str) -> EngineFormatError:
    with pytest.raises(EngineFormatError, match=match) as info:
        braze.Runtime().load(data)
    return info.value


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return plan["graph"]["nodes"]


def node(plan: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in nodes(plan) if n["name"] == name)


def test_the_unedited_engines_load_and_run(cnn, concat):
    for data in (cnn, concat, forge(cnn, lambda p: None)):
        engine = braze.Runtime().load(data)
        feeds = {b.name: np.ones(b.shape, np.float32) for b in engine.inputs}
        assert np.isfinite(engine.create_execution_context().infer(feeds)["y"]).all()


# -- the header ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["absent", "cpu", None, [], {"arch": "x86_64"}])
def test_header_without_a_device_signature_is_refused(cnn, device):
    def edit(h):
        if device == "absent":
            del h["device"]
        else:
            h["device"] = device
    refused(forge(cnn, header_edit=edit), r"engine header field 'device' is .*not a device signature")


@pytest.mark.parametrize("value", ["100", -5, 1.5, None])
def test_header_sizes_must_be_byte_counts(cnn, value):
    refused(forge(cnn, header_edit=lambda h: h.update(weights_size=value)), r"header field 'weights_size' is")


def test_header_sizes_that_do_not_add_up_are_refused(cnn):
    def edit(h):
        h["plan_size"], h["weights_size"] = h["plan_size"] - 16, h["weights_size"] + 8
    refused(forge(cnn, header_edit=edit), r"header describes \d+ bytes, the file has \d+")


# -- the plan's JSON -------------------------------------------------------------------------------------

def test_node_output_of_null_is_refused(cnn):
    refused(forge(cnn, lambda p: node(p, "gap")["outputs"].__setitem__(0, None)),
            r"plan\.graph\.nodes\[2\]\.outputs\[0\] is None, not a tensor name")


def test_string_where_a_list_is_expected_is_refused(cnn):
    refused(forge(cnn, lambda p: node(p, "gap").update(inputs="s")),
            r"plan\.graph\.nodes\[2\]\.inputs is a JSON string, not a list of tensor names")


def test_missing_field_is_named(cnn):
    refused(forge(cnn, lambda p: p["memory"].pop("offsets")), r"plan\.memory lacks field\(s\) 'offsets'")
    refused(forge(cnn, lambda p: p.pop("layers")), r"plan lacks field\(s\) 'layers'")


def test_unknown_tensor_name_is_refused(cnn):
    refused(forge(cnn, lambda p: node(p, "gap")["inputs"].__setitem__(0, "ghost")),
            r"plan\.graph\.nodes\[2\]\.inputs\[0\] names tensor 'ghost', which plan\.graph\.tensors lacks")


@pytest.mark.parametrize("dtype, match", [("float128", "not a dtype braze knows"), (3, "not a dtype"),
                                          ({"a": 1}, "not a dtype"), ([], "not a dtype")])
def test_unknown_dtype_is_refused(cnn, dtype, match):
    refused(forge(cnn, lambda p: p["graph"]["tensors"]["s"].update(dtype=dtype)),
            rf"plan\.graph\.tensors\['s'\]\.dtype is .*{match}")


def test_negative_dim_is_refused(cnn):
    refused(forge(cnn, lambda p: p["graph"]["tensors"]["x"].update(shape=[1, -3, 16, 16])),
            r"plan\.graph\.tensors\['x'\]\.shape\[1\] is -3, not a dim")


@pytest.mark.parametrize("size", [-1, "16384", 1.5, None])
def test_arena_size_must_be_a_byte_count(cnn, size):
    refused(forge(cnn, lambda p: p["memory"].update(arena_size=size)), r"plan\.memory\.arena_size is .*not a non-neg")


def test_outer_name_must_be_in_the_enclosing_graph(cnn):
    def edit(p):
        body = {"name": "body", "opset": 17, "inputs": [], "outer": ["nowhere"], "nodes": [], "outputs": [],
                "tensors": {"nowhere": {"dtype": "float32", "shape": [1]}}}
        node(p, "gap")["attrs"]["body"] = {"$graph": body}
    refused(forge(cnn, edit),
            r"plan\.graph\.nodes\[2\]\.attrs\.body\.\$graph\.outer names 'nowhere', which no enclosing")


# -- the schedule ----------------------------------------------------------------------------------------

def test_swapped_layers_are_refused(cnn):
    def edit(p):
        n = nodes(p)
        n[2], n[3] = n[3], n[2]
    refused(forge(cnn, edit), r"plan\.graph\.nodes\[2\] 'flatten_1' \(Reshape\) input 'g': produced by layer 3, "
                              r"after its use")


def test_input_no_layer_produces_is_refused(cnn):
    def edit(p):
        p["graph"]["tensors"]["orphan"] = {"dtype": "float32", "shape": [1, 8, 16, 16]}
        node(p, "gap")["inputs"] = ["orphan"]
    refused(forge(cnn, edit), r"nodes\[2\] 'gap' \(GlobalAveragePool\) input 'orphan': no layer produces it")


def test_tensor_produced_twice_is_refused(cnn):
    refused(forge(cnn, lambda p: node(p, "gap")["outputs"].__setitem__(0, "s")),
            r"nodes\[2\] 'gap' \(GlobalAveragePool\) output 's': it is already .*produced by an earlier layer")


def test_duplicate_layer_names_are_refused(cnn):
    refused(forge(cnn, lambda p: node(p, "gap").update(name="conv1_1")),
            r"nodes\[2\] 'conv1_1' \(GlobalAveragePool\): layer names must be unique")


def test_graph_output_never_produced_is_refused(cnn):
    def edit(p):
        p["graph"]["tensors"]["z"] = {"dtype": "float32", "shape": [1, 10]}
        p["graph"]["outputs"] = ["z"]
    refused(forge(cnn, edit), r"graph output 'z' is never produced")


# -- weights and types -----------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, shown", [("shape", [8, 3, 3, 2], r"float32\[8,3,3,2\]"),
                                                 ("dtype", "float16", r"float16\[8,3,3,3\]")])
def test_weight_declared_unlike_the_safetensors_is_refused(cnn, field, value, shown):
    refused(forge(cnn, lambda p: p["graph"]["tensors"]["w1"].update({field: value})),
            rf"weight 'w1' is declared {shown} in the plan, but the weights hold float32\[8,3,3,3\]")


def test_activation_unlike_its_op_is_refused(cnn):
    refused(forge(cnn, lambda p: p["graph"]["tensors"]["g"].update(shape=[1, 8, 2, 2])),
            r"nodes\[2\] 'gap' \(GlobalAveragePool\) output 'g' is declared float32\[1,8,2,2\], but the op gives "
            r"float32\[1,8,1,1\]")


def test_unknown_op_is_refused(cnn):
    refused(forge(cnn, lambda p: node(p, "gap").update(op="NoSuchOp")), r"does not type-check.*gap.*NoSuchOp")


# -- tactics ---------------------------------------------------------------------------------------------

def test_unknown_tactic_is_refused(cnn):
    refused(forge(cnn, lambda p: p["layers"]["gap"].update(tactic="nonsense")),
            r"plan\.layers\['gap'\]\.tactic 'nonsense': this braze has no such tactic for cpu")


def test_tactic_that_does_not_support_its_layer_is_refused(cnn):
    refused(forge(cnn, lambda p: p["layers"]["gap"].update(tactic="onednn_conv")),
            r"plan\.layers\['gap'\]\.tactic 'onednn_conv' does not run plan\.graph\.nodes\[2\] 'gap'")


def test_op_changed_under_its_tactic_is_refused(cnn):
    refused(forge(cnn, lambda p: node(p, "flatten_1").update(op="Relu")), r"flatten_1")


def test_layer_without_tactic_is_refused(cnn):
    refused(forge(cnn, lambda p: p["layers"].pop("gap")), r"nodes\[2\] 'gap' .*: plan\.layers has no tactic for it")


# -- the memory plan -------------------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [-64, -16384])
def test_negative_offset_is_refused(cnn, offset):
    refused(forge(cnn, lambda p: p["memory"]["offsets"].update(g=offset)),
            rf"plan\.memory\.offsets\['g'\] is {offset}: 'g' \(32 bytes\) must lie inside the arena of 16384 bytes")


@pytest.mark.parametrize("offset", [16384, 16384 - 16, 1 << 70])
def test_offset_past_the_arena_is_refused(cnn, offset):
    refused(forge(cnn, lambda p: p["memory"]["offsets"].update(g=offset)),
            r"offsets\['g'\] is \d+: .* inside the arena")


def test_misaligned_offset_is_refused(cnn):
    refused(forge(cnn, lambda p: p["memory"]["offsets"].update(g=4)),
            r"plan\.memory\.offsets\['g'\] is 4, not a multiple of the arena's 64-byte alignment")


def test_overlapping_live_tensors_are_refused(cnn):
    refused(forge(cnn, lambda p: p["memory"]["offsets"].update(g=8192)),
            r"offsets\['(g|s)'\] puts .* on bytes of .* while both are live \(layers 2 to 2\)")


def test_memory_reused_after_its_last_reader_is_accepted(cnn):
    assert json.loads(json.dumps(braze.Runtime().load(cnn).plan.memory.offsets))["g"] == 0  # r1's bytes, r1 dead


@pytest.mark.parametrize("strides, match", [([2048, 1, 128], "needs 4 non-negative strides"),
                                            ([2048, -1, 128, 8], "needs 4 non-negative strides"),
                                            ([0, 0, 0, 0], "would share memory"),
                                            ([1, 1, 1, 1], "would share memory")])
def test_bad_strides_are_refused(cnn, strides, match):
    refused(forge(cnn, lambda p: p["memory"]["strides"].update(s=strides)),
            rf"plan\.memory\.strides\['s'\] .*{match}")


def test_strides_past_the_arena_are_refused(cnn):
    refused(forge(cnn, lambda p: p["memory"]["strides"].update(s=[2048 * 1000, 1000, 128000, 8000])),
            r"offsets\['s'\] is 8192: .* inside the arena")


def test_offset_for_a_view_output_is_refused(cnn):
    refused(forge(cnn, lambda p: p["memory"]["offsets"].update(f=64 * 3)),
            r"offsets\['f'\]: 'f' is returned by tactic 'view' of .*'flatten_1'.*does not write into the arena")


@pytest.mark.parametrize("name", ["x", "w1", "ghost"])
def test_offset_for_what_no_layer_writes_is_refused(cnn, name):
    refused(forge(cnn, lambda p: p["memory"]["offsets"].update({name: 0})), rf"offsets\['{name}'\]: no layer writes")


def test_other_alignment_is_refused(cnn):
    refused(forge(cnn, lambda p: p["memory"].update(alignment=32)),
            r"plan\.memory\.alignment is 32; braze aligns cpu arenas to 64")


def test_arena_size_off_its_alignment_is_refused(cnn):
    refused(forge(cnn, lambda p: p["memory"].update(arena_size=16383)), r"arena_size is 16383, not a multiple")


def test_concat_with_only_some_inputs_in_place_is_refused(concat):
    refused(forge(concat, lambda p: p["memory"]["offsets"].update(b=p["memory"]["offsets"]["b"] + 64)),
            r"'concat_1' \(ConcatInPlace\): inputs \['b'\] are not at their slices of 'c'")


def test_concat_input_moved_onto_a_live_tensor_is_refused(concat):
    def edit(p):
        p["memory"]["offsets"]["a"] = p["memory"]["offsets"]["y"]
    refused(forge(concat, edit), r"not at their slices|while both are live")


# -- sizes against the device ----------------------------------------------------------------------------

def test_arena_larger_than_the_memory_is_refused_on_load(cnn):
    huge = 1 << 50
    with pytest.raises(BrazeError, match=r"this engine needs 1048576\.00 GiB of cpu memory .* and only .* available"):
        braze.Runtime().load(forge(cnn, lambda p: p["memory"].update(arena_size=huge)))


def test_context_larger_than_the_memory_left_is_refused(cnn, monkeypatch):
    engine = braze.Runtime().load(cnn)
    monkeypatch.setattr("braze.device.available_memory", lambda target: 1000)
    with pytest.raises(BrazeError, match=r"an execution context of this engine needs 16\.00 KiB of cpu memory .*"
                                         r"only 1000 bytes is available"):
        engine.create_execution_context()


def test_check_memory_says_what_is_needed_and_what_there_is(monkeypatch):
    cpu = Target.parse("cpu")
    assert available_memory(cpu) > 0
    monkeypatch.setattr("braze.device.available_memory", lambda t: 2 << 20)
    check_memory(1 << 20, 1 << 30, cpu)  # CPU weights are in memory already
    with pytest.raises(BrazeError, match=r"the model needs 3\.00 MiB of cpu memory \(3\.00 MiB of activations\), "
                                         r"and only 2\.00 MiB is available"):
        check_memory(3 << 20, 0, cpu, what="the model")
    assert [human_bytes(n) for n in (1000, 1 << 14, 3 << 20, 3 << 29)] == ["1000 bytes", "16.00 KiB", "3.00 MiB",
                                                                           "1.50 GiB"]
    assert arena_alignment(cpu) == 64
