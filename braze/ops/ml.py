"""Classical ML ops of the ai.onnx.ml domain, on numeric tensors: Binarizer, ArrayFeatureExtractor,
LabelEncoder (numeric keys and values) and TreeEnsemble.

String tensors do not exist in braze: a model whose inputs are strings is refused by the
frontend, and a LabelEncoder whose keys or values are strings is refused here, naming the node.
TreeEnsemble walks every (sample, tree) pair down its tree at once, one level per step; the
number of steps depends on the data, so its output shape comes from an `infer` rule. Its
post_transform codes follow the ONNX specification (1 SOFTMAX, 2 LOGISTIC); onnxruntime reads
them the other way round (microsoft/onnxruntime#26596).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from ..errors import UnsupportedError
from ..ir import DType, Node
from .infer import Inferred, describe_node
from .opdef import op

ML = "ai.onnx.ml"
_FLOATS = (torch.float16, torch.float32, torch.float64)


@op("Binarizer", since=1, domain=ML)
def binarizer(x, *, threshold: float = 0.0):
    if x.dtype not in (torch.float32, torch.float64, torch.int64, torch.int32):
        raise TypeError(f"Binarizer takes float, double, int64 or int32, got {x.dtype}")
    above = x > threshold if x.dtype.is_floating_point else x.to(torch.float64) > threshold
    return above.to(x.dtype)


@op("ArrayFeatureExtractor", since=1, domain=ML)
def array_feature_extractor(x, y):
    """The elements of x's last axis at the indices y (flattened); a vector x gives one row."""
    if y.dtype != torch.int64:
        raise TypeError(f"the indices must be int64, got {y.dtype}")
    if x.dim() == 0:
        raise ValueError("X must have at least one axis")
    picked = torch.index_select(x, -1, y.reshape(-1))
    return picked.reshape(1, -1) if x.dim() == 1 else picked


# -- LabelEncoder ------------------------------------------------------------------------------

_KEYS = {"keys_floats": torch.float32, "keys_int64s": torch.int64, "keys_tensor": None}
_VALUES = {"values_floats": (torch.float32, "default_float"), "values_int64s": (torch.int64, "default_int64"),
           "values_tensor": (None, "default_tensor")}
_STRINGS = ("keys_strings", "values_strings", "classes_strings")


def _given(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() > 0
    return value is not None and len(value) > 0


def _as_list(value: Any, dtype: torch.dtype | None) -> tuple[list, torch.dtype]:
    if isinstance(value, torch.Tensor):
        return value.reshape(-1).tolist(), value.dtype
    return list(value), dtype


def _mapping(attrs: dict[str, Any]) -> tuple[list, list, torch.dtype, torch.dtype, Any]:
    """(keys, values, key dtype, value dtype, default) of a LabelEncoder's attributes."""
    if any(_given(attrs.get(name)) for name in _STRINGS):
        raise UnsupportedError("string keys or values are not supported: braze tensors are numeric")
    keys = [name for name in _KEYS if _given(attrs.get(name))]
    values = [name for name in _VALUES if _given(attrs.get(name))]
    if len(keys) != 1 or len(values) != 1:
        raise ValueError("exactly one keys_* and one values_* attribute must be set")
    key_list, key_dtype = _as_list(attrs[keys[0]], _KEYS[keys[0]])
    value_dtype, default_name = _VALUES[values[0]]
    value_list, value_dtype = _as_list(attrs[values[0]], value_dtype)
    if len(key_list) != len(value_list):
        raise ValueError(f"{len(key_list)} keys but {len(value_list)} values")
    default = attrs.get(default_name)
    if isinstance(default, torch.Tensor):
        default = default.reshape(-1)[0].item()
    if default is None:
        default = -0.0 if value_dtype.is_floating_point else -1
    return key_list, value_list, key_dtype, value_dtype, default


def _infer_label_encoder(node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
    try:
        _, _, key_dtype, value_dtype, _ = _mapping(node.attrs)
    except UnsupportedError as e:
        raise UnsupportedError(f"{describe_node(node)}: {e}") from None
    x = node.inputs[0]
    if x.dtype.torch != key_dtype:
        raise TypeError(f"the input is {x.dtype} but the keys are {str(key_dtype).removeprefix('torch.')}")
    return [Inferred(DType.from_torch(value_dtype), x.shape)]


def _label_encode(x: torch.Tensor, attrs: dict[str, Any]) -> torch.Tensor:
    keys, values, key_dtype, value_dtype, default = _mapping(attrs)
    if x.dtype != key_dtype:
        raise TypeError(f"the input is {x.dtype} but the keys are {key_dtype}")
    table = dict(zip(keys, values))  # a repeated key: the last one wins; a NaN key matches any NaN
    nan_value = next((v for k, v in table.items() if isinstance(k, float) and math.isnan(k)), None)
    table = {k: v for k, v in table.items() if not (isinstance(k, float) and math.isnan(k))}
    ordered = sorted(table)
    sorted_keys = torch.tensor(ordered, dtype=key_dtype, device=x.device)
    mapped = torch.tensor([table[k] for k in ordered], dtype=value_dtype, device=x.device)
    y = torch.full(x.shape, default, dtype=value_dtype, device=x.device)
    if ordered:
        pos = torch.searchsorted(sorted_keys, x.contiguous()).clamp(max=len(ordered) - 1)
        y = torch.where(sorted_keys[pos] == x, mapped[pos], y)
    if nan_value is not None:
        y = torch.where(torch.isnan(x), torch.tensor(nan_value, dtype=value_dtype, device=x.device), y)
    return y


@op("LabelEncoder", since=1, domain=ML, infer=_infer_label_encoder)
def label_encoder_1(x, *, classes_strings: list[str] | None = None, default_int64: int = -1,
                    default_string: str = "_Unused"):
    return _label_encode(x, {"classes_strings": classes_strings})


@op("LabelEncoder", since=2, domain=ML, infer=_infer_label_encoder)
def label_encoder_2(x, *, default_float: float = -0.0, default_int64: int = -1, default_string: str = "_Unused",
                    keys_floats: list[float] | None = None, keys_int64s: list[int] | None = None,
                    keys_strings: list[str] | None = None, values_floats: list[float] | None = None,
                    values_int64s: list[int] | None = None, values_strings: list[str] | None = None):
    return _label_encode(x, {k: v for k, v in locals().items() if k != "x"})


@op("LabelEncoder", since=4, domain=ML, infer=_infer_label_encoder)
def label_encoder_4(x, *, default_float: float = -0.0, default_int64: int = -1, default_string: str = "_Unused",
                    default_tensor: torch.Tensor | None = None, keys_floats: list[float] | None = None,
                    keys_int64s: list[int] | None = None, keys_strings: list[str] | None = None,
                    keys_tensor: torch.Tensor | None = None, values_floats: list[float] | None = None,
                    values_int64s: list[int] | None = None, values_strings: list[str] | None = None,
                    values_tensor: torch.Tensor | None = None):
    return _label_encode(x, {k: v for k, v in locals().items() if k != "x"})


# -- TreeEnsemble ------------------------------------------------------------------------------

_AGGREGATES = ("AVERAGE", "SUM", "MIN", "MAX")
_TRANSFORMS = ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT")
_LEQ, _LT, _GTE, _GT, _EQ, _NEQ, _MEMBER = range(7)


def _infer_tree_ensemble(node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
    x = node.inputs[0]
    if x.dtype not in (DType.float16, DType.float32, DType.float64):
        raise TypeError(f"X must be float, double or float16, got {x.dtype}")
    if x.shape is not None and len(x.shape) != 2:
        raise ValueError(f"X must be N x F, got rank {len(x.shape)}")
    targets = _n_targets(node.attrs["n_targets"], node.attrs["leaf_targetids"])
    return [Inferred(x.dtype, None if x.shape is None else (x.shape[0], targets))]


def _n_targets(n_targets: int | None, leaf_targetids: list[int]) -> int:
    targets = n_targets if n_targets is not None else max(leaf_targetids, default=-1) + 1
    if targets < 1 or any(not 0 <= t < targets for t in leaf_targetids):
        raise ValueError(f"leaf_targetids {leaf_targetids} must lie in [0, n_targets={targets})")
    return targets


def _member_sets(modes: list[int], membership_values: torch.Tensor | None) -> torch.Tensor:
    """Per node, its set of members (NaN-padded rows; empty for nodes that test no membership)."""
    members = [] if membership_values is None else membership_values.reshape(-1).to(torch.float64).tolist()
    sets, current = [], []
    for v in members:
        if math.isnan(v):
            sets.append(current)
            current = []
        else:
            current.append(v)
    if current:
        sets.append(current)
    if len(sets) != modes.count(_MEMBER):
        raise ValueError(f"membership_values holds {len(sets)} sets for {modes.count(_MEMBER)} BRANCH_MEMBER nodes")
    width = max((len(s) for s in sets), default=0)
    table = torch.full((len(modes), max(width, 1)), math.nan, dtype=torch.float64)
    member_nodes = iter(sets)
    for i, mode in enumerate(modes):
        if mode == _MEMBER:
            row = next(member_nodes)
            table[i, :len(row)] = torch.tensor(row, dtype=torch.float64)
    return table


def _post_transform(scores: torch.Tensor, transform: int) -> torch.Tensor:
    name = _TRANSFORMS[transform]
    if name == "SOFTMAX":
        return torch.softmax(scores, -1)
    if name == "LOGISTIC":
        return torch.sigmoid(scores)
    if name == "SOFTMAX_ZERO":  # a softmax over the non-zero scores; zeros stay zero
        nonzero = scores != 0
        shifted = torch.where(nonzero, scores - scores.masked_fill(~nonzero, -math.inf).amax(-1, keepdim=True), 0.0)
        exp = torch.where(nonzero, torch.exp(shifted), 0.0)
        return exp / exp.sum(-1, keepdim=True).clamp(min=torch.finfo(scores.dtype).tiny)
    if name == "PROBIT":
        return math.sqrt(2) * torch.erfinv(2 * scores - 1)
    return scores


@op("TreeEnsemble", since=5, domain=ML, infer=_infer_tree_ensemble)
def tree_ensemble(x, *, aggregate_function: int = 1, leaf_targetids: list[int], leaf_weights: torch.Tensor,
                  membership_values: torch.Tensor | None = None, n_targets: int | None = None,
                  nodes_falseleafs: list[int], nodes_falsenodeids: list[int], nodes_featureids: list[int],
                  nodes_hitrates: torch.Tensor | None = None, nodes_missing_value_tracks_true: list[int] | None = None,
                  nodes_modes: torch.Tensor, nodes_splits: torch.Tensor, nodes_trueleafs: list[int],
                  nodes_truenodeids: list[int], post_transform: int = 0, tree_roots: list[int]):
    """Per sample and target, the leaf weights its trees end in, aggregated, then post-transformed."""
    if x.dtype not in _FLOATS or x.dim() != 2:
        raise ValueError(f"X must be a floating-point N x F tensor, got {x.dtype} of shape {list(x.shape)}")
    modes = nodes_modes.reshape(-1).to(torch.int64).tolist()
    count = len(modes)
    columns = [nodes_featureids, nodes_truenodeids, nodes_falsenodeids, nodes_trueleafs, nodes_falseleafs]
    missing = nodes_missing_value_tracks_true or [0] * count
    if any(len(c) != count for c in columns + [missing]) or nodes_splits.numel() != count:
        raise ValueError(f"the nodes_* attributes must all describe {count} nodes")
    if len(leaf_targetids) != leaf_weights.numel():
        raise ValueError("leaf_targetids and leaf_weights must describe the same leaves")
    if any(not 0 <= m <= _MEMBER for m in modes) or not 0 <= aggregate_function < 4 or not 0 <= post_transform < 5:
        raise ValueError(f"nodes_modes must lie in [0, 6], aggregate_function in [0, 3] and post_transform in "
                         f"[0, 4]; got {sorted(set(modes))}, {aggregate_function}, {post_transform}")
    if any(not 0 <= f < x.shape[1] for f in nodes_featureids):
        raise ValueError(f"nodes_featureids {sorted(set(nodes_featureids))} fall outside X's {x.shape[1]} features")
    for ids, leafs in ((nodes_truenodeids, nodes_trueleafs), (nodes_falsenodeids, nodes_falseleafs)):
        if any(not 0 <= i < (leaf_weights.numel() if leaf else count) for i, leaf in zip(ids, leafs)):
            raise ValueError("a branch points past the nodes or the leaves")
    if any(not 0 <= r < count for r in tree_roots):
        raise ValueError(f"tree_roots {tree_roots} fall outside the {count} nodes")
    targets = _n_targets(n_targets, leaf_targetids)
    device = x.device

    def table(values, dtype=torch.int64):
        return torch.tensor(values, dtype=dtype, device=device)

    feature, mode = table(nodes_featureids), table(modes)
    split = nodes_splits.reshape(-1).to(device, torch.float64)
    true_id, false_id = table(nodes_truenodeids), table(nodes_falsenodeids)
    true_leaf, false_leaf = table(nodes_trueleafs, torch.bool), table(nodes_falseleafs, torch.bool)
    nan_true = table(missing, torch.bool)
    members = _member_sets(modes, membership_values).to(device)
    data = x.to(torch.float64)
    rows = torch.arange(x.shape[0], device=device)[:, None]
    at = table(tree_roots).expand(x.shape[0], -1).clone()  # node (or, once done, leaf) per sample and tree
    done = torch.zeros_like(at, dtype=torch.bool)
    for _ in range(count + 1):
        if bool(done.all()):
            break
        node = torch.where(done, 0, at)
        v, s, m = data[rows, feature[node]], split[node], mode[node]
        outcomes = torch.stack([v <= s, v < s, v >= s, v > s, v == s, v != s,
                                (v[..., None] == members[node]).any(-1)], -1)
        go_true = outcomes.gather(-1, m[..., None])[..., 0] | (torch.isnan(v) & nan_true[node])
        at = torch.where(done, at, torch.where(go_true, true_id[node], false_id[node]))
        done = done | torch.where(go_true, true_leaf[node], false_leaf[node])
    else:
        raise ValueError("the trees contain a cycle")
    weights = leaf_weights.reshape(-1).to(device, torch.float64)[at]
    slots = table(leaf_targetids)[at]
    name = _AGGREGATES[aggregate_function]
    if name in ("SUM", "AVERAGE"):
        scores = torch.zeros(x.shape[0], targets, dtype=torch.float64, device=device).scatter_add(1, slots, weights)
        scores = scores / len(tree_roots) if name == "AVERAGE" else scores
    else:  # NOTE: a target no tree reaches scores 0, as in onnxruntime
        scores = torch.zeros(x.shape[0], targets, dtype=torch.float64, device=device)
        scores = scores.scatter_reduce(1, slots, weights, "amin" if name == "MIN" else "amax", include_self=False)
    return _post_transform(scores, post_transform).to(x.dtype)


OPS = [binarizer, array_feature_extractor, label_encoder_1, label_encoder_2, label_encoder_4, tree_ensemble]
