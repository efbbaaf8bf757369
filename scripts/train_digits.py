"""Train a small CNN on scikit-learn's copy of the UCI handwritten digits (real 8x8 scans, 10 classes) and export it,
so braze's INT8 work has a trained model with real data that CI can make in seconds on a CPU.

    python scripts/train_digits.py [--csv .models/digits.csv.gz] [--out .models]

scripts/fetch_models.py fetches the data (`sklearn/datasets/data/digits.csv.gz` of the scikit-learn wheel: 1797
rows of 64 pixel counts in 0..16 and the label) and runs this. It writes:

- digits.npz: `x_train`/`y_train` (1437 samples, also the calibration set) and `x_test`/`y_test` (360 held out),
  x float32 [N, 1, 8, 8] = pixels / 16 (in [0, 1]), y int64; the split is a fixed permutation (seed 0);
- digits_cnn.onnx: conv(1->16)+BN+ReLU, conv(16->32)+BN+ReLU, max-pool 2, conv(32->32)+BN+ReLU, global average
  pool, linear(32->10), logits out; exported by torch.onnx (TorchScript exporter), opset 17, input `x`
  [batch, 1, 8, 8] with a dynamic batch dim named `batch`, output `logits` [batch, 10]; BatchNormalization is
  kept in the graph (eval mode, not folded by the exporter) so braze's fusion folds it.

Training is deterministic (fixed seeds, one thread, deterministic algorithms): the same torch version writes
bit-identical files. It prints the held-out accuracy (99.7% with torch 2.13; it must reach 95%).
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1] / ".models"
TEST_SIZE = 360
EPOCHS = 15
BATCH = 64
MIN_ACCURACY = 0.95


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(*block(1, 16), *block(16, 32), nn.MaxPool2d(2), *block(32, 32),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def load_digits(csv_gz: Path) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 [1797, 1, 8, 8] in [0, 1], y int64 [1797]) from scikit-learn's digits.csv.gz."""
    table = np.loadtxt(io.StringIO(gzip.decompress(csv_gz.read_bytes()).decode()), delimiter=",", dtype=np.float64)
    if table.shape != (1797, 65):
        raise SystemExit(f"{csv_gz}: expected 1797 rows of 65 values (64 pixels and a label), got {table.shape}")
    x = (table[:, :64] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return x, table[:, 64].astype(np.int64)


def split(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    order = np.random.RandomState(0).permutation(len(y))
    test, train = order[:TEST_SIZE], order[TEST_SIZE:]
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


def train(data: dict[str, np.ndarray]) -> DigitsCNN:
    torch.manual_seed(0)
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS)
    x, y = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])
    order = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(y), generator=order).split(BATCH):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
        schedule.step()
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def export(model: nn.Module, path: Path) -> None:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                          do_constant_folding=False)  # NOTE: keeps BatchNormalization for braze to fold
    path.write_bytes(buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=ROOT / "digits.csv.gz", help="scikit-learn's digits.csv.gz")
    parser.add_argument("--out", type=Path, default=ROOT, help="folder for digits_cnn.onnx and digits.npz")
    args = parser.parse_args(argv)
    if not args.csv.exists():
        raise SystemExit(f"{args.csv} is missing: run scripts/fetch_models.py digits")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = split(*load_digits(args.csv))
    model = train(data)
    test_accuracy = accuracy(model, data["x_test"], data["y_test"])
    if test_accuracy < MIN_ACCURACY:
        raise SystemExit(f"digits CNN reached {test_accuracy:.2%} on the held-out split, below {MIN_ACCURACY:.0%}")
    args.out.mkdir(parents=True, exist_ok=True)
    export(model, args.out / "digits_cnn.onnx")
    with open(args.out / "digits.npz", "wb") as f:
        np.savez(f, **data)
    print(f"digits CNN: train accuracy {accuracy(model, data['x_train'], data['y_train']):.2%}, "
          f"held-out accuracy {test_accuracy:.2%} ({TEST_SIZE} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
