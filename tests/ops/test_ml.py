import numpy as np
import onnx.helper as oh
import pytest
from onnx import TensorProto, numpy_helper
from onnx.reference import ReferenceEvaluator

import braze

from .harness import check_op, feeds_of, make_model, rand, run_braze

ML = "ai.onnx.ml"


def _raises(op_type, inputs, attrs, match, *, opset, error=braze.BrazeError, domain=ML):
    model = make_model(op_type, inputs, attrs, opset=opset, domain=domain)
    with pytest.raises(error, match=f"{op_type.lower()}_node.*{match}"):
        engine = braze.Builder("cpu").build(braze.parse_onnx(model, check=False), braze.BuilderConfig())
        engine.create_execution_context().infer(feeds_of(inputs))


def tensor(name, values, dtype):
    return numpy_helper.from_array(np.asarray(values, dtype), name)


# -- Binarizer, ArrayFeatureExtractor ----------------------------------------------------------

@pytest.mark.parametrize("threshold", [0.0, 0.5, -1.0])
def test_binarizer(threshold):
    check_op("Binarizer", {"x": rand(3, 4, 5, low=-3, high=3)}, {"threshold": threshold}, opset=1, domain=ML)


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32])
def test_binarizer_types(dtype):
    """onnxruntime takes float32 only."""
    x = rand(3, 4, dtype=dtype, low=-3, high=3)
    got = run_braze(make_model("Binarizer", {"x": x}, {"threshold": 0.5}, opset=1, domain=ML), {"x": x})[0]
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, (x > 0.5).astype(dtype))


@pytest.mark.parametrize("shape,indices", [((3, 4), [0, 1]), ((2, 3, 5), [4, 0, 4]), ((2, 4), [[3, 1]])])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.int32, np.float64])
def test_array_feature_extractor(shape, indices, dtype):
    check_op("ArrayFeatureExtractor", {"x": rand(*shape, dtype=dtype), "y": np.array(indices, np.int64)}, opset=1,
             domain=ML)


def test_array_feature_extractor_of_a_vector():
    """A vector gives one row, as onnxruntime does."""
    x, y = rand(6), np.array([5, 2], np.int64)
    model = make_model("ArrayFeatureExtractor", {"x": x, "y": y}, opset=1, domain=ML)
    model.graph.output[0].CopyFrom(oh.make_tensor_value_info("y0", TensorProto.FLOAT, [1, 2]))
    got = run_braze(model, {"x": x, "y": y})[0]
    assert got.shape == (1, 2)
    np.testing.assert_array_equal(got, x[[5, 2]][None])


def test_array_feature_extractor_errors():
    _raises("ArrayFeatureExtractor", {"x": rand(3, 4), "y": np.array([0], np.int32)}, {}, "int64", opset=1)


# -- LabelEncoder ------------------------------------------------------------------------------

def test_label_encoder_int_to_float():
    x = np.array([[1, 5, 7], [3, 3, 9]], np.int64)
    attrs = {"keys_int64s": [1, 3, 5, 7], "values_floats": [0.5, 1.5, 2.5, 3.5], "default_float": -2.0}
    check_op("LabelEncoder", {"x": x}, attrs, opset=2, domain=ML)


def test_label_encoder_float_to_int():
    x = np.array([0.5, 1.5, 2.0, -1.0, 0.5], np.float32)
    attrs = {"keys_floats": [0.5, 2.0, 3.0], "values_int64s": [10, 20, 30], "default_int64": 7}
    check_op("LabelEncoder", {"x": x}, attrs, opset=2, domain=ML)


@pytest.mark.parametrize("opset", [2, 4])
def test_label_encoder_nan_key_matches_nan(opset):
    """The specification's rule (onnxruntime and ONNX's reference never match a NaN)."""
    x = np.array([0.5, np.nan, 2.0, -np.nan], np.float32)
    attrs = {"keys_floats": [0.5, float("nan")], "values_int64s": [10, 20], "default_int64": 7}
    got = run_braze(make_model("LabelEncoder", {"x": x}, attrs, opset=opset, domain=ML), {"x": x})[0]
    np.testing.assert_array_equal(got, [10, 20, 7, 20])


def test_label_encoder_repeated_key_last_wins():
    x = np.array([1, 2, 3], np.int64)
    got = run_braze(make_model("LabelEncoder", {"x": x}, {"keys_int64s": [2, 1, 2], "values_int64s": [5, 6, 7]},
                               opset=2, domain=ML), {"x": x})[0]
    np.testing.assert_array_equal(got, [6, 7, -1])


@pytest.mark.parametrize("key_dtype,value_dtype", [(np.int32, np.int16), (np.float64, np.int32),
                                                   (np.int16, np.float64), (np.int64, np.float32)])
def test_label_encoder_tensors(key_dtype, value_dtype):
    x = np.array([[4, 1, 2], [9, 2, 4]], key_dtype)
    attrs = {"keys_tensor": tensor("keys", [1, 2, 4], key_dtype), "values_tensor": tensor("values", [3, 5, 8],
                                                                                               value_dtype),
             "default_tensor": tensor("default", [42], value_dtype)}
    model = make_model("LabelEncoder", {"x": x}, attrs, opset=4, domain=ML)
    got = run_braze(model, {"x": x})[0]  # onnxruntime lacks most of these type pairs
    assert got.dtype == value_dtype
    np.testing.assert_array_equal(got, ReferenceEvaluator(model).run(None, {"x": x})[0])


def test_label_encoder_tensor_default_default():
    x = np.array([1, 5], np.int32)
    attrs = {"keys_tensor": tensor("keys", [1], np.int32), "values_tensor": tensor("values", [2.5], np.float64)}
    got = run_braze(make_model("LabelEncoder", {"x": x}, attrs, opset=4, domain=ML), {"x": x})[0]
    np.testing.assert_array_equal(got, [2.5, -0.0])


def test_label_encoder_errors():
    x = np.array([1, 2], np.int64)
    _raises("LabelEncoder", {"x": x}, {"keys_int64s": [1, 2], "values_strings": ["a", "b"]}, "string",
            opset=2, error=braze.errors.UnsupportedError)
    _raises("LabelEncoder", {"x": x}, {"keys_int64s": [1, 2], "values_int64s": [1]}, "keys but", opset=2)
    _raises("LabelEncoder", {"x": x}, {"keys_floats": [1.0], "values_int64s": [1]}, "keys are", opset=2)
    _raises("LabelEncoder", {"x": x}, {"keys_int64s": [1], "keys_floats": [1.0], "values_int64s": [1]},
            "exactly one", opset=2)


def test_string_inputs_are_unsupported():
    node = oh.make_node("LabelEncoder", ["x"], ["y"], domain=ML, keys_strings=["a"], values_int64s=[1])
    graph = oh.make_graph([node], "g", [oh.make_tensor_value_info("x", TensorProto.STRING, [2])],
                          [oh.make_tensor_value_info("y", TensorProto.INT64, [2])])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid(ML, 2)])
    with pytest.raises(braze.errors.UnsupportedError, match="STRING"):
        braze.parse_onnx(model)


# -- TreeEnsemble ------------------------------------------------------------------------------

def tree_attrs(n_features, n_targets, dtype, *, seed=0, depth=3, trees=3, member=False):
    """TreeEnsemble attributes of complete random trees, numbered breadth first (children of i: 2i+1, 2i+2)."""
    rng = np.random.default_rng(seed)
    a = {k: [] for k in ("nodes_featureids", "nodes_truenodeids", "nodes_falsenodeids", "nodes_trueleafs",
                         "nodes_falseleafs", "leaf_targetids", "tree_roots", "nodes_missing_value_tracks_true")}
    splits, modes, weights, members = [], [], [], []
    per_tree = 2**depth - 1
    for t in range(trees):
        root = t * per_tree
        a["tree_roots"].append(root)
        for i in range(per_tree):
            mode = 6 if member and rng.random() < 0.4 else int(rng.integers(0, 6))  # LEQ ... NEQ, or MEMBER
            modes.append(mode)
            splits.append(float("nan") if mode == 6 else float(np.round(rng.uniform(-1, 1), 1)))
            if mode == 6:
                members += [float(v) for v in rng.integers(-2, 3, size=2)] + [float("nan")]
            a["nodes_featureids"].append(int(rng.integers(n_features)))
            a["nodes_missing_value_tracks_true"].append(int(rng.integers(2)))
            for side, child in (("true", 2 * i + 1), ("false", 2 * i + 2)):
                if child >= per_tree:
                    a[f"nodes_{side}leafs"].append(1)
                    a[f"nodes_{side}nodeids"].append(len(weights))
                    weights.append(float(rng.uniform(-2, 2)))
                    a["leaf_targetids"].append(int(rng.integers(n_targets)))
                else:
                    a[f"nodes_{side}leafs"].append(0)
                    a[f"nodes_{side}nodeids"].append(root + child)
    a.update(n_targets=n_targets, nodes_splits=tensor("splits", splits, dtype),
             nodes_modes=tensor("modes", modes, np.uint8), leaf_weights=tensor("weights", weights, dtype))
    if members:
        a["membership_values"] = tensor("members", members, dtype)
    return a


@pytest.mark.parametrize("aggregate", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tree_ensemble_aggregates(aggregate, dtype):
    x = np.round(rand(20, 4, dtype=dtype, low=-1.5, high=1.5), 1)  # some values on the splits
    x[0, :] = np.nan
    attrs = {**tree_attrs(4, 3, dtype, seed=aggregate), "aggregate_function": aggregate}
    check_op("TreeEnsemble", {"x": x}, attrs, opset=5, domain=ML)


@pytest.mark.parametrize("transform", [3, 4])
def test_tree_ensemble_post_transforms(transform):
    x = rand(10, 3, low=-1, high=1)
    attrs = {**tree_attrs(3, 3, np.float32, seed=4), "post_transform": transform}
    if transform == 4:  # PROBIT wants scores in (0, 1): leaves averaged in [0.1, 0.9]; onnxruntime approximates
        attrs["leaf_weights"] = tensor("weights", np.linspace(0.1, 0.9, len(attrs["leaf_targetids"])), np.float32)
        attrs["aggregate_function"] = 0
    check_op("TreeEnsemble", {"x": x}, attrs, opset=5, domain=ML, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("transform", [1, 2])
def test_tree_ensemble_softmax_and_logistic(transform):
    """SOFTMAX (1) and LOGISTIC (2) of onnxruntime's raw scores (it swaps the two codes)."""
    x = rand(10, 3, low=-1, high=1)
    attrs = tree_attrs(3, 3, np.float32, seed=4)
    raw = check_op("TreeEnsemble", {"x": x}, attrs, opset=5, domain=ML)[0].astype(np.float64)
    got = run_braze(make_model("TreeEnsemble", {"x": x}, {**attrs, "post_transform": transform}, opset=5, domain=ML),
                    {"x": x})[0]
    if transform == 1:
        expected = np.exp(raw - raw.max(1, keepdims=True))
        expected /= expected.sum(1, keepdims=True)
    else:
        expected = 1 / (1 + np.exp(-raw))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_tree_ensemble_membership():
    x = rand(30, 2, dtype=np.int64, low=-3, high=4).astype(np.float32)
    attrs = tree_attrs(2, 2, np.float32, seed=7, member=True)
    assert 6 in numpy_helper.to_array(attrs["nodes_modes"])
    check_op("TreeEnsemble", {"x": x}, attrs, opset=5, domain=ML)


def test_tree_ensemble_single_leaf_tree():
    """A tree that is one leaf: both branches of its only node name the same leaf."""
    x = rand(4, 2)
    attrs = {"nodes_featureids": [0], "nodes_truenodeids": [0], "nodes_falsenodeids": [0], "nodes_trueleafs": [1],
             "nodes_falseleafs": [1], "leaf_targetids": [1], "tree_roots": [0], "n_targets": 2,
             "nodes_splits": tensor("s", [0.0], np.float32), "nodes_modes": tensor("m", [0], np.uint8),
             "leaf_weights": tensor("w", [2.5], np.float32)}
    got = check_op("TreeEnsemble", {"x": x}, attrs, opset=5, domain=ML)[0]
    np.testing.assert_array_equal(got, np.tile([[0.0, 2.5]], (4, 1)))


def test_tree_ensemble_errors():
    x = rand(3, 2)
    good = tree_attrs(2, 2, np.float32, depth=2, trees=1)
    _raises("TreeEnsemble", {"x": x}, {**good, "n_targets": 1}, "leaf_targetids", opset=5)
    _raises("TreeEnsemble", {"x": x}, {**good, "nodes_featureids": [5, 0, 0]}, "features", opset=5)
    _raises("TreeEnsemble", {"x": x}, {**good, "nodes_featureids": [0]}, "describe", opset=5)
    _raises("TreeEnsemble", {"x": x}, {**good, "tree_roots": [9]}, "tree_roots", opset=5)
    _raises("TreeEnsemble", {"x": x.astype(np.int64)}, good, "float", opset=5)
