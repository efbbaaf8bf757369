"""INT8 accuracy on trained models and real data (scripts/fetch_models.py fetches and makes them): for each model
and calibrator, a calibrated INT8 engine against the FP32 engine on held-out samples (never the calibration
ones): top-1 agreement, the task's accuracy where labels exist, the logits' rel-L2, which layers went to INT8,
how long calibration took, and the median latency of each engine on one held-out batch. Optionally with the accuracy guard (--budget top1=0.99).

    python3 benchmarks/int8_accuracy.py [--device cpu|cuda] [--models digits,efficientnet,ppocr_cls]
        [--calibrators minmax,percentile,entropy] [--budget top1=0.99] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import braze  # noqa: E402
from braze.testing import rel_l2  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / ".models"


@dataclass
class Case:
    model: str
    calibration: list[np.ndarray]  # batches
    held_out: list[np.ndarray]
    labels: list[np.ndarray] | None  # per held-out batch


def _batches(x: np.ndarray, size: int) -> list[np.ndarray]:
    return [x[i:i + size] for i in range(0, len(x) - size + 1, size)]


def cases(names: list[str]) -> dict[str, Case]:
    found: dict[str, Case] = {}
    if "digits" in names:
        d = np.load(MODELS / "digits.npz")
        found["digits"] = Case("digits_cnn.onnx", _batches(d["x_train"][:320], 40), _batches(d["x_test"], 40),
                               _batches(d["y_test"], 40))
    if "efficientnet" in names:
        x = np.load(MODELS / "photos.npz")["x"]  # 9 photos x 5 crops; calibrate on two crops of each, check on three
        crops = x.reshape(9, 5, *x.shape[1:])
        found["efficientnet"] = Case("efficientnet_lite0.onnx", [crops[:, i] for i in (3, 4)],
                                     [crops[:, i] for i in (0, 1, 2)], None)
    if "ppocr_cls" in names:
        d = np.load(MODELS / "page_lines.npz")
        order = np.random.default_rng(0).permutation(len(d["x"]))
        x, y = d["x"][order], d["y"][order]
        found["ppocr_cls"] = Case("ppocr_cls.onnx", _batches(x[:30], 6), _batches(x[30:], 6), _batches(y[30:], 6))
    return found


def _outputs(engine, batches: list[np.ndarray]) -> list[np.ndarray]:
    context = engine.create_execution_context()
    name = engine.plan.graph.inputs[0].name
    return [np.asarray(next(iter(context.infer({name: b}).values()))) for b in batches]


def _median_ms(engine, batch: np.ndarray, runs: int = 20) -> float:
    context = engine.create_execution_context()
    feed = {engine.plan.graph.inputs[0].name: batch}
    context.infer(feed)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        context.infer(feed)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def measure(case: Case, device: str, calibrator: str, budget: str | None) -> dict:
    path = str(MODELS / case.model)
    name = braze.parse_onnx(path).inputs[0].name
    shapes = {name: case.held_out[0].shape}
    reference = braze.Builder(device).build(path, braze.BuilderConfig(shapes=shapes))
    started = time.perf_counter()
    config = braze.BuilderConfig(shapes=shapes, precision="int8", calibration=braze.Calibration(
        data=[{name: b} for b in case.calibration], calibrator=calibrator))
    if budget:
        config.accuracy_budget = budget  # type: ignore[attr-defined]
    int8 = braze.Builder(device).build(path, config)
    build_s = time.perf_counter() - started
    want, got = _outputs(reference, case.held_out), _outputs(int8, case.held_out)
    agree = np.concatenate([w.argmax(-1) == g.argmax(-1) for w, g in zip(want, got)]).mean()
    row = {"model": case.model, "calibrator": calibrator, "device": device, "held_out": sum(len(b) for b in want),
           "top1_agreement": round(float(agree), 4),
           "rel_l2": round(float(np.mean([rel_l2(g, w) for w, g in zip(want, got)])), 4),
           "int8_layers": len(int8.plan.build["int8"]["int8_layers"]),
           "kept_in_float": len(int8.plan.build["int8"]["kept_in_float"]),
           "calibration_s": int8.plan.build["int8"]["seconds"], "build_s": round(build_s, 2)}
    row["fp32_ms"] = round(_median_ms(reference, case.held_out[0]), 3)
    row["int8_ms"] = round(_median_ms(int8, case.held_out[0]), 3)
    if case.labels is not None:
        labels = np.concatenate(case.labels)
        row["accuracy_fp32"] = round(float((np.concatenate([w.argmax(-1) for w in want]) == labels).mean()), 4)
        row["accuracy_int8"] = round(float((np.concatenate([g.argmax(-1) for g in got]) == labels).mean()), 4)
    if "accuracy_guard" in int8.plan.build:
        row["guard"] = int8.plan.build["accuracy_guard"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="digits,efficientnet,ppocr_cls")
    parser.add_argument("--calibrators", default="minmax,percentile,entropy")
    parser.add_argument("--budget", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    for key, case in cases(args.models.split(",")).items():
        for calibrator in args.calibrators.split(","):
            row = measure(case, args.device, calibrator, args.budget)
            rows.append(row)
            print(" | ".join(f"{k}={v}" for k, v in row.items() if k != "guard"), flush=True)
            if "guard" in row:
                print("  guard:", json.dumps(row["guard"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
