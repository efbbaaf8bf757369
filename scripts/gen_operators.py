"""Generate docs/operators.md: every op type braze supports, the opset versions it implements, and the
ONNX node suite's results for it, set against the op types TensorRT's ONNX parser supports.

    python scripts/gen_operators.py                       # runs the suite, writes docs/operators.md
    python scripts/gen_operators.py --output PATH --json PATH

The versions are the `since` values of braze's OpDefs (braze.ops.REGISTRY): a model of opset N runs the
newest definition not after N. The results come from running the whole node suite through braze's CPU
backend (braze.tools.conformance, as `braze conformance` does); an op type's cases include the
`_expanded` ones that contain it. Nothing in the page is written by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import onnx
import onnx.defs

from braze.ops import MODULES
from braze.tools import conformance

ROOT = Path(__file__).resolve().parents[1]
INTERNAL_DOMAIN = "braze"  # ops braze's optimizer makes (fused layers); no model is expected to contain them
DOMAIN_TITLES = {"": "ONNX (ai.onnx)", "ai.onnx.ml": "ai.onnx.ml", "ai.onnx.preview": "ai.onnx.preview"}

# The op types marked supported in TensorRT 10.15's ONNX parser documentation (onnx-tensorrt,
# docs/operators.md): 158, all of the ONNX domain.
TENSORRT_VERSION = "10.15"
TENSORRT_OPS = frozenset("""
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization
    BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
    CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike
    Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
    Greater GreaterOrEqual GridSample GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish
    Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less
    LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
    MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
    ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike
    Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd
    ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RMSNormalization RNN RoiAlign
    RotaryEmbedding Round STFT ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid
    Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
    TensorScatter ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())


def braze_ops() -> dict[str, dict[str, list[int]]]:
    """domain -> op type -> the opsets its definitions start at, ascending; braze's internal domain aside."""
    table: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for module in MODULES:
        for opdef in module.OPS:
            domain = "" if opdef.domain in ("", "ai.onnx") else opdef.domain
            if domain != INTERNAL_DOMAIN:
                table[domain][opdef.name].append(opdef.since)
    return {d: {name: sorted(v) for name, v in sorted(ops.items(), key=lambda kv: kv[0].lower())}
            for d, ops in sorted(table.items())}


def onnx_schemas() -> dict[str, bool]:
    """Every ONNX-domain op type the installed onnx knows, and whether it is deprecated."""
    return {s.name: s.deprecated for s in onnx.defs.get_all_schemas_with_history() if s.domain == ""}


def build(report: conformance.Report) -> dict:
    """Everything the page shows, as plain data (also the JSON output)."""
    ops = braze_ops()
    results = report.by_op()
    onnx_domain = set(ops.get("", {}))
    schemas = onnx_schemas()
    rows = {domain: [{"op": name, "since": since, "suite": results.get(name if not domain else f"{domain}.{name}"),
                      "tensorrt": name in TENSORRT_OPS if not domain else None}
                     for name, since in table.items()]
            for domain, table in ops.items()}
    return {
        "environment": report.environment,
        "suite": {"cases": len(report.cases), "seconds": round(report.seconds, 1), "totals": report.totals()},
        "counts": {DOMAIN_TITLES.get(d, d): len(t) for d, t in ops.items()},
        "tensorrt": {"version": TENSORRT_VERSION, "ops": len(TENSORRT_OPS),
                     "both": len(TENSORRT_OPS & onnx_domain),
                     "tensorrt_only": sorted(TENSORRT_OPS - onnx_domain, key=str.lower),
                     "braze_only": sorted(onnx_domain - TENSORRT_OPS, key=str.lower)},
        "onnx_not_in_braze": sorted({n for n, old in schemas.items() if not old} - onnx_domain, key=str.lower),
        "braze_not_in_onnx": sorted(onnx_domain - set(schemas), key=str.lower),
        "ops": rows,
    }


def to_markdown(data: dict) -> str:
    env, suite, trt = data["environment"], data["suite"], data["tensorrt"]
    onnx_count = data["counts"][DOMAIN_TITLES[""]]
    totals = suite["totals"]
    lines = [
        "# Operators", "",
        f"Generated by `python scripts/gen_operators.py` on {env.get('date')} (braze {env.get('braze')}, "
        f"onnx {env.get('onnx')}, torch {env.get('torch')}); do not edit by hand.", "",
        "Every op type braze supports, by domain, with the opsets at which its definitions start (a model "
        "of opset N runs the newest one not after N) and the results of the ONNX node test suite's cases "
        "that contain it, run through braze's CPU backend: parsed, built, serialized and reloaded, run, and "
        "compared with the case's own tolerance. *Suite* is **yes** when every case passes, **partial** when "
        "some do, **no** when none do, and empty when the suite has no case for it. The *TensorRT* column "
        f"says whether TensorRT {trt['version']}'s ONNX parser documents the op as supported. Each case, with "
        "the reason for any that does not pass, is in [conformance.md](conformance.md).", "",
        "## Summary", "",
        f"- braze supports **{onnx_count}** op types of the ONNX domain; TensorRT {trt['version']}'s ONNX "
        f"parser documents **{trt['ops']}**. Both: {trt['both']}.",
        f"- Of those, not in onnx {env.get('onnx')}'s schemas (ONNX's experimental ops, dropped at opset 10): "
        f"{', '.join(data['braze_not_in_onnx']) or 'none'}.",
        *[f"- {title}: {count} op type(s)." for title, count in data["counts"].items() if title != DOMAIN_TITLES[""]],
        f"- TensorRT only ({len(trt['tensorrt_only'])}): {', '.join(trt['tensorrt_only']) or 'none'}.",
        f"- braze only ({len(trt['braze_only'])}): {', '.join(trt['braze_only']) or 'none'}.",
        f"- ONNX ops (onnx {env.get('onnx')}, not deprecated) braze does not implement "
        f"({len(data['onnx_not_in_braze'])}): {', '.join(data['onnx_not_in_braze']) or 'none'}.",
        f"- The node suite: {suite['cases']} cases in {suite['seconds']} s: "
        + ", ".join(f"{totals[s]} {s}" for s in conformance.STATUSES) + ".",
    ]
    for domain, rows in data["ops"].items():
        trt_column = domain == ""
        lines += ["", f"## {DOMAIN_TITLES.get(domain, domain)}", "",
                  "| Op type | Opsets | Cases | Pass | Fail | Unsupported | Error | Crash | Suite |"
                  + (" TensorRT |" if trt_column else ""),
                  "|---|---|---:|---:|---:|---:|---:|---:|---|" + ("---|" if trt_column else "")]
        for row in rows:
            result = row["suite"] or {}
            counts = " | ".join(str(result.get(s) or "") for s in ("cases", *conformance.STATUSES))
            cells = f"| {row['op']} | {', '.join(map(str, row['since']))} | {counts} | {result.get('supported', '')} |"
            lines.append(cells + (f" {'yes' if row['tensorrt'] else ''} |" if trt_column else ""))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "operators.md", help="the Markdown page")
    parser.add_argument("--json", type=Path, help="also write the data as JSON")
    args = parser.parse_args(argv)
    report = conformance.run_suite(conformance.collect_cases())
    data = build(report)
    args.output.write_text(to_markdown(data))
    if args.json:
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{args.output}: {data['counts']}; node suite {data['suite']['totals']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
