"""How far PyTorch's own FP16/BF16 eager run of each zoo model is from its FP32 run (relative L2), the
yardstick for braze's reduced-precision engines on the same models. Needs a CUDA GPU."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from braze import zoo  # noqa: E402
from braze.testing import rel_l2  # noqa: E402


def main() -> None:
    print(f"{'model':<12} {'fp16':>10} {'bf16':>10}")
    for name in zoo.names():
        module = zoo.torch_module(name).cuda()
        feeds = [torch.from_numpy(v).cuda() for v in zoo.sample_inputs(name).values()]
        with torch.no_grad():
            reference = module(*feeds).float()
            errors = []
            for dtype in (torch.float16, torch.bfloat16):
                low = [f.to(dtype) if f.is_floating_point() else f for f in feeds]
                errors.append(rel_l2(module.to(dtype)(*low).float(), reference))
                module.float()
        print(f"{name:<12} {errors[0]:>10.3g} {errors[1]:>10.3g}")


if __name__ == "__main__":
    main()
