"""Real exporter output through braze: export models with torch.onnx.export, build each with braze's
CPU backend, compare with onnxruntime, and write the table.

    python scripts/export_models.py                                  # every model, both exporters
    python scripts/export_models.py --models bert,gpt2 --exporters dynamo
    python scripts/export_models.py --markdown reports/exporters.md --json reports/exporters.json
    python scripts/export_models.py --tiny --save-dir tests/data     # the small test models checked in

Models come from transformers (BERT, GPT-2 and Llama, each without and with its key-value cache as
inputs and outputs, a T5 encoder, ViT, DETR) and torchvision (ResNet, MobileNetV3, EfficientNet,
DenseNet, ConvNeXt, Swin, ViT), built from configurations with seeded random weights (any parameter
initialized to one value gets noise, so no layer is trivial): nothing is downloaded. A model whose
library is not installed is reported as skipped. Each is exported by the TorchScript exporter
(`dynamo=False`, opset 17 unless `--opset`) and the dynamo-based one (`dynamo=True`, which needs
onnxscript), with the batch dim dynamic, and a text model's sequence and cache lengths, then built and
run at other sizes of those dims than the traced ones (RUN_SIZES). The configurations are the published
ones (bert-base, gpt2, t5-small's encoder, ViT-B/16, DETR with a ResNet-50, the torchvision models as
they are), except Llama, a small one (8 layers, hidden 512); `--tiny` makes the transformers 2-layer and
narrow (a few hundred kB), shrinks torchvision's Swin and ViT alike, and feeds 32x32 images to its CNNs.

Each row ends in one status: `pass` (every output within FP32's relative L2 bound of onnxruntime),
`fail` (an output beyond it), `export-failed` (torch.onnx.export raised: not braze's problem),
`unsupported` (braze's UnsupportedError), `error` (another BrazeError), `crash` (any other exception, a
braze bug), or `skipped`. The exit status is 1 when a row failed, was unsupported, errored or crashed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import inspect
import io
import json
import logging
import re
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from torch import nn

import braze
from braze.frontends.onnx.unsupported import all_nodes
from braze.testing import rel_l2, tolerance
from braze.zoo.common import seeded

EXPORTERS = ("torchscript", "dynamo")
EXPORTER_NEEDS = {"dynamo": "onnxscript"}
TORCHSCRIPT_OPSET = 17
METADATA_KEY = "braze.export"  # metadata_props entry: how to feed the model (see `sample_feeds`)


@dataclass
class Sample:
    """A module ready to export, its example inputs (by name), and what is dynamic."""

    module: nn.Module
    inputs: dict[str, torch.Tensor]
    outputs: list[str]
    dynamic: dict[str, dict[int, str]]  # input name -> {axis: dim name}
    high: dict[str, int] = field(default_factory=dict)  # integer inputs: exclusive upper bound of random values


@dataclass(frozen=True)
class Entry:
    name: str
    library: str  # the package it needs
    build: Callable[[bool], Sample]  # tiny -> Sample


@dataclass
class Row:
    model: str
    exporter: str
    status: str = "pass"
    opset: int | None = None
    onnx_nodes: int | None = None
    braze_layers: int | None = None
    rel_l2: float | None = None
    build_seconds: float | None = None
    error: str = ""


class Outputs(nn.Module):
    """A transformers model called with keyword inputs, returning the named fields of its output as a tuple."""

    def __init__(self, model: nn.Module, inputs: list[str], outputs: list[str], **call: object):
        super().__init__()
        self.model, self.input_names, self.output_names, self.call = model, inputs, outputs, call
        self.eval()

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = self.model(**dict(zip(self.input_names, args)), **self.call)
        return tuple(result[name] for name in self.output_names)


class WithPast(nn.Module):
    """A causal LM called with flat past keys and values (per layer: key, value), as deployed for generation:
    returns the logits and the present keys and values, flat in the same order."""

    def __init__(self, model: nn.Module, layers: int):
        super().__init__()
        self.model, self.layers = model, layers
        self.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past: torch.Tensor):
        from transformers import DynamicCache

        cache = DynamicCache()
        for i in range(self.layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, use_cache=True)
        if hasattr(out.past_key_values, "layers"):  # transformers >= 4.56
            present = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
        else:
            present = [t for kv in zip(out.past_key_values.key_cache, out.past_key_values.value_cache) for t in kv]
        return (out.logits, *present)


# -- the models ----------------------------------------------------------------------------------

# dynamic dims are built and run at these sizes, not the traced ones (NOTE: total = sequence + past)
RUN_SIZES = {"batch": 3, "sequence": 11, "past": 7, "total": 18}


def _text(model: nn.Module, vocab: int, outputs: list[str], **call: object) -> Sample:
    """A text model traced on token ids [2, 16] and an attention mask whose second row is padded."""
    inputs = {"input_ids": torch.randint(0, vocab, (2, 16)), "attention_mask": torch.ones(2, 16, dtype=torch.int64)}
    inputs["attention_mask"][1, 12:] = 0
    dynamic = {name: {0: "batch", 1: "sequence"} for name in inputs}
    module = Outputs(model, list(inputs), outputs, **call)
    return Sample(module, inputs, outputs, dynamic, {"input_ids": vocab, "attention_mask": 2})


def _with_past(model: nn.Module, config: object, kv_heads: int) -> Sample:
    """A causal LM traced on 4 new tokens after 6 cached ones: ids [2, 4], mask [2, 10] (the second row
    left-padded), and each layer's past key and value [2, kv_heads, 6, head_dim]."""
    layers, head_dim = config.num_hidden_layers, config.hidden_size // config.num_attention_heads
    inputs = {"input_ids": torch.randint(0, config.vocab_size, (2, 4)),
              "attention_mask": torch.ones(2, 10, dtype=torch.int64)}
    inputs["attention_mask"][1, :2] = 0
    dynamic = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "total"}}
    outputs = ["logits"]
    for i in range(layers):
        for kind in ("key", "value"):
            inputs[f"past_key_values.{i}.{kind}"] = torch.randn(2, kv_heads, 6, head_dim)
            dynamic[f"past_key_values.{i}.{kind}"] = {0: "batch", 2: "past"}
            outputs.append(f"present.{i}.{kind}")
    return Sample(WithPast(model, layers), inputs, outputs, dynamic, {"input_ids": config.vocab_size,
                                                                     "attention_mask": 2})


def _image(module: nn.Module, size: int, outputs: list[str], name: str = "pixel_values") -> Sample:
    return Sample(module.eval(), {name: torch.randn(2, 3, size, size)}, outputs, {name: {0: "batch"}})


def bert(tiny: bool) -> Sample:
    """bert-base-uncased's geometry, with the pooler."""
    import transformers as tf

    size = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=256,
                max_position_embeddings=64) if tiny else {}
    config = tf.BertConfig(num_hidden_layers=2 if tiny else 12, **size)
    return _text(tf.BertModel(config), config.vocab_size, ["last_hidden_state", "pooler_output"])


def _gpt2_config(tiny: bool):
    import transformers as tf

    size = dict(n_embd=32, n_head=2, vocab_size=256, n_positions=64) if tiny else {}
    return tf.GPT2Config(n_layer=2 if tiny else 12, bos_token_id=0, eos_token_id=0, **size)


def gpt2(tiny: bool) -> Sample:
    """gpt2 (124M) with its language-model head, no key-value cache."""
    import transformers as tf

    config = _gpt2_config(tiny)
    return _text(tf.GPT2LMHeadModel(config), config.vocab_size, ["logits"], use_cache=False)


def gpt2_past(tiny: bool) -> Sample:
    """gpt2 with its key-value cache as inputs and outputs, as for generation."""
    import transformers as tf

    config = _gpt2_config(tiny)
    return _with_past(tf.GPT2LMHeadModel(config), config, config.num_attention_heads)


def t5_encoder(tiny: bool) -> Sample:
    """t5-small's encoder (relative position buckets, RMS-style layer norm)."""
    import transformers as tf

    size = dict(d_model=32, d_kv=16, d_ff=64, num_heads=2, vocab_size=256) if tiny else {}
    # NOTE: eager attention: with T5's SDPA path the dynamo exporter views a transposed tensor, and fails
    config = tf.T5Config(num_layers=2 if tiny else 6, attn_implementation="eager", **size)
    return _text(tf.T5EncoderModel(config), config.vocab_size, ["last_hidden_state"])


def _llama_config(tiny: bool):
    import transformers as tf

    size = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2, vocab_size=256)
    if not tiny:
        size = dict(hidden_size=512, intermediate_size=1408, num_attention_heads=8, num_key_value_heads=2,
                    vocab_size=32000)
    return tf.LlamaConfig(num_hidden_layers=2 if tiny else 8, max_position_embeddings=256, **size)


def llama(tiny: bool) -> Sample:
    """A small Llama (rotary embeddings, RMSNorm, SwiGLU, grouped-query attention), no key-value cache."""
    import transformers as tf

    config = _llama_config(tiny)
    return _text(tf.LlamaForCausalLM(config), config.vocab_size, ["logits"], use_cache=False)


def llama_past(tiny: bool) -> Sample:
    """The Llama with its key-value cache (grouped: fewer key-value heads) as inputs and outputs."""
    import transformers as tf

    config = _llama_config(tiny)
    return _with_past(tf.LlamaForCausalLM(config), config, config.num_key_value_heads)


def vit_hf(tiny: bool) -> Sample:
    """google/vit-base-patch16-224's geometry, with a 10-class head."""
    import transformers as tf

    size = {}
    if tiny:
        size = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)
    config = tf.ViTConfig(num_hidden_layers=2 if tiny else 12, num_labels=10, **size)
    model = Outputs(tf.ViTForImageClassification(config), ["pixel_values"], ["logits"])
    return _image(model, config.image_size, ["logits"])


def detr(tiny: bool) -> Sample:
    """DETR (ResNet-50 backbone of transformers' own, not timm's; 6+6 transformer layers, 100 queries) on
    320x320 images: CNN, encoder-decoder with positional embeddings, class and box heads."""
    import transformers as tf

    backbone = tf.ResNetConfig(out_features=["stage4"])
    size = {}
    if tiny:
        backbone = tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                                   layer_type="basic", out_features=["stage4"])
        size = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                    decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=10)
    config = tf.DetrConfig(use_timm_backbone=False, backbone_config=backbone, use_pretrained_backbone=False,
                           num_labels=10, **size)
    outputs = ["logits", "pred_boxes"]
    model = Outputs(tf.DetrForObjectDetection(config), ["pixel_values"], outputs)
    return _image(model, 64 if tiny else 320, outputs)


def _torchvision(factory: str, tiny_factory: Callable[[], nn.Module] | None = None, size: int = 224) -> Callable:
    def build(tiny: bool) -> Sample:
        import torchvision

        module = tiny_factory() if tiny and tiny_factory else getattr(torchvision.models, factory)(weights=None)
        return _image(module, 32 if tiny else size, ["logits"], name="input")

    build.__name__ = factory
    return build


def _tiny_vit() -> nn.Module:
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                             num_classes=10)


def _tiny_swin() -> nn.Module:
    from torchvision.models.swin_transformer import SwinTransformer

    return SwinTransformer(patch_size=[2, 2], embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=[4, 4],
                           num_classes=10)


MODELS = [
    Entry("bert", "transformers", bert),
    Entry("gpt2", "transformers", gpt2),
    Entry("gpt2-past", "transformers", gpt2_past),
    Entry("t5-encoder", "transformers", t5_encoder),
    Entry("llama", "transformers", llama),
    Entry("llama-past", "transformers", llama_past),
    Entry("vit-hf", "transformers", vit_hf),
    Entry("detr", "transformers", detr),
    Entry("resnet50", "torchvision", _torchvision("resnet50")),
    Entry("mobilenet_v3_large", "torchvision", _torchvision("mobilenet_v3_large")),
    Entry("efficientnet_b0", "torchvision", _torchvision("efficientnet_b0")),
    Entry("densenet121", "torchvision", _torchvision("densenet121")),
    Entry("convnext_tiny", "torchvision", _torchvision("convnext_tiny")),
    Entry("swin_t", "torchvision", _torchvision("swin_t", _tiny_swin)),
    Entry("vit_b_16", "torchvision", _torchvision("vit_b_16", _tiny_vit)),
]


# -- export --------------------------------------------------------------------------------------

def export(sample: Sample, exporter: str, opset: int | None = None) -> onnx.ModelProto:
    """The sample's module exported by one exporter, with its dynamic dims, as a ModelProto."""
    args = tuple(sample.inputs.values())
    names = list(sample.inputs)
    with _quiet():
        if exporter == "torchscript":
            buffer = io.BytesIO()
            torch.onnx.export(sample.module, args, buffer, dynamo=False, opset_version=opset or TORCHSCRIPT_OPSET,
                              input_names=names, output_names=sample.outputs, dynamic_axes=sample.dynamic)
            return onnx.load_from_string(buffer.getvalue())
        dims: dict[str, torch.export.Dim] = {}
        shapes = tuple({axis: dims.setdefault(dim, torch.export.Dim(dim)) for axis, dim in sample.dynamic[n].items()}
                       for n in names)
        varargs = [p for p in inspect.signature(sample.module.forward).parameters.values()
                   if p.kind is p.VAR_POSITIONAL]
        if varargs:  # forward(a, b, *rest): the inputs past the named ones are one argument, a tuple
            named = len(inspect.signature(sample.module.forward).parameters) - 1
            shapes = (*shapes[:named], shapes[named:])
        program = torch.onnx.export(sample.module, args, dynamo=True, opset_version=opset, input_names=names,
                                    output_names=sample.outputs, dynamic_shapes=shapes, verbose=False)
        return program.model_proto


@contextlib.contextmanager
def _quiet():
    """Exporters warn and print at length about things that are not errors; keep the table readable."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@torch.no_grad()
def randomize_flat_weights(module: nn.Module) -> None:
    """Offset every parameter initialized to a single value (zero biases, unit norm scales, zero-initialized
    heads) by N(0, 0.02) noise, and give BatchNorm random running statistics, so that no layer is trivially
    zero or an identity and folding it changes real numbers."""
    for p in module.parameters():
        if p.is_floating_point() and p.numel() and bool((p == p.flatten()[0]).all()):
            p.add_(torch.randn_like(p) * 0.02)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)


def without_debug_info(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy without the nodes' doc strings and metadata (the exporters' stack traces and source paths,
    half of a small model's bytes); nothing braze or onnxruntime reads."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in all_nodes(copy.graph):
        node.doc_string = ""
        del node.metadata_props[:]
    return copy


def annotate(model: onnx.ModelProto, sample: Sample, name: str, exporter: str) -> None:
    """Record in the model how to feed it (shapes at RUN_SIZES, integer ranges), so that a test can."""
    def shape(name: str) -> list[int]:
        dims = list(sample.inputs[name].shape)
        for axis, dim in sample.dynamic.get(name, {}).items():
            dims[axis] = RUN_SIZES[dim]
        return dims

    spec = {"model": name, "exporter": exporter,
            "inputs": {n: {"shape": shape(n), "high": sample.high.get(n)} for n in sample.inputs}}
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(spec)


def sample_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for a model `annotate` marked: normal floats, integers below `high`, and for an
    attention mask (`high` 2) ones with the last row padded at its end."""
    spec = json.loads(next(p.value for p in model.metadata_props if p.key == METADATA_KEY))
    rng = np.random.default_rng(seed)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.input}
    feeds = {}
    for name, info in spec["inputs"].items():
        shape, high = tuple(info["shape"]), info["high"]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(types[name])
        if high is None:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        elif high == 2:
            mask = np.ones(shape, dtype)
            mask[-1, shape[-1] * 3 // 4:] = 0
            feeds[name] = mask
        else:
            feeds[name] = rng.integers(0, high, shape).astype(dtype)
    return feeds


# -- checking ------------------------------------------------------------------------------------

def onnxruntime_outputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime's outputs with its graph optimizations off: the model as written."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def compare(model: onnx.ModelProto, feeds: dict[str, np.ndarray], row: Row) -> None:
    """Build `model` with braze for the feeds' shapes, run it, and fill the row (worst rel L2 of any output)."""
    row.opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    row.onnx_nodes = len(model.graph.node)
    expected = onnxruntime_outputs(model, feeds)
    started = time.perf_counter()
    engine = braze.Builder("cpu").build(model, braze.BuilderConfig(shapes={n: v.shape for n, v in feeds.items()}))
    row.build_seconds = round(time.perf_counter() - started, 2)
    row.braze_layers = engine.num_layers
    actual = engine.create_execution_context().infer(feeds)
    row.rel_l2 = max(rel_l2(actual[name], value) for name, value in expected.items())
    bound = tolerance("float32").rel_l2
    if not row.rel_l2 <= bound:
        row.status, row.error = "fail", f"relative L2 {row.rel_l2:.3g} > {bound:g}"


def run_one(entry: Entry, exporter: str, tiny: bool, opset: int | None, save_dir: Path | None) -> Row:
    row = Row(entry.name, exporter)
    needed = (entry.library, EXPORTER_NEEDS.get(exporter))
    missing = [library for library in needed if library and importlib.util.find_spec(library) is None]
    if missing:
        row.status, row.error = "skipped", f"{missing[0]} is not installed"
        return row
    try:
        with seeded(0):
            sample = entry.build(tiny)
            randomize_flat_weights(sample.module)
            model = export(sample, exporter, opset)
    except Exception as e:
        row.status, row.error = "export-failed", _export_error(e)
        return row
    annotate(model, sample, entry.name, exporter)
    if save_dir is not None:
        onnx.save(without_debug_info(model), save_dir / f"{entry.name}_{exporter}.onnx")
    try:
        compare(model, sample_feeds(model), row)
    except braze.UnsupportedError as e:
        row.status, row.error = "unsupported", _one_line(e)
    except braze.BrazeError as e:
        row.status, row.error = "error", f"{type(e).__name__}: {_one_line(e)}"
    except Exception as e:
        frame = traceback.extract_tb(e.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        row.status, row.error = "crash", f"{type(e).__name__}: {_one_line(e)} [at {where}]"
    return row


def _export_error(e: BaseException) -> str:
    """The exporters' errors start with pages of advice; keep the exception summary they end in."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    _, found, summary = text.partition("## Exception summary")
    return _one_line(RuntimeError(summary if found else text))


def _one_line(e: BaseException, limit: int = 600) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the table -----------------------------------------------------------------------------------

def to_markdown(rows: list[Row], tiny: bool, command: str) -> str:
    versions = {"braze": braze.__version__, "torch": torch.__version__, "onnx": onnx.__version__}
    for lib in ("transformers", "torchvision", "onnxscript", "onnxruntime"):
        with contextlib.suppress(ImportError):
            versions[lib] = __import__(lib).__version__
    lines = [f"# Exported models through braze ({'tiny' if tiny else 'full'} configurations)", "",
             f"Generated by `{command}` on {datetime.date.today().isoformat()}, on the CPU: "
             + ", ".join(f"{k} {v}" for k, v in versions.items()) + ". Each model is exported, built by braze "
             "for other sizes of its dynamic dims than traced, run, and compared with onnxruntime (graph "
             "optimizations off); *rel L2* is the worst of its outputs, the bound is FP32's 1e-4.", "",
             "| Model | Exporter | Opset | ONNX nodes | braze layers | rel L2 vs onnxruntime | Build s | Status |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        cells = [r.model, r.exporter, _cell(r.opset), _cell(r.onnx_nodes), _cell(r.braze_layers),
                 "" if r.rel_l2 is None else f"{r.rel_l2:.2e}", _cell(r.build_seconds),
                 r.status + (f": {r.error}" if r.error else "")]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated names (default all): " + ", ".join(e.name for e in MODELS))
    parser.add_argument("--exporters", default=",".join(EXPORTERS), help="comma-separated, of " + ", ".join(EXPORTERS))
    parser.add_argument("--tiny", action="store_true", help="the tiny configurations (the checked-in test models)")
    parser.add_argument("--opset", type=int, help=f"export at this opset (default: {TORCHSCRIPT_OPSET} for "
                        "TorchScript, the dynamo exporter's own default)")
    parser.add_argument("--save-dir", type=Path, help="write each exported model here as MODEL_EXPORTER.onnx")
    parser.add_argument("--markdown", type=Path, help="write the table as Markdown")
    parser.add_argument("--json", type=Path, help="write the rows as JSON")
    args = parser.parse_args(argv)
    known = {e.name: e for e in MODELS}
    wanted = args.models.split(",") if args.models else list(known)
    exporters = args.exporters.split(",")
    unknown = [m for m in wanted if m not in known] + [e for e in exporters if e not in EXPORTERS]
    if unknown:
        parser.error(f"unknown model or exporter: {', '.join(unknown)}")
    if args.save_dir:
        args.save_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in wanted:
        for exporter in exporters:
            rows.append(run_one(known[name], exporter, args.tiny, args.opset, args.save_dir))
            r = rows[-1]
            print(f"{r.model:<20} {r.exporter:<12} {r.status:<13} rel_l2={_cell(r.rel_l2):<24} "
                  f"build={_cell(r.build_seconds)}s {r.error[:300]}", file=sys.stderr, flush=True)
    table = to_markdown(rows, args.tiny, "python scripts/export_models.py " + " ".join(argv or sys.argv[1:]))
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    return 1 if any(r.status in ("fail", "error", "crash", "unsupported") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
