"""Diagnose the open GPU defect of docs/design-notes.md (cuDNN's channels-last FP16 convolution loses +-inf), on a
GPU machine: which values come out where +-inf should (saturated 65504?), whether cudnn.benchmark/deterministic
or BF16 change it, whether finite overflow saturates too, and, on ResNet-like shapes, how many infinities each
layout loses and what NCHW or a saturation fix-up would cost in time.

    python3 scripts/diagnose_cudnn_inf.py      # prints a table; needs CUDA
"""
import math, torch, torch.nn.functional as F
torch.manual_seed(0)
dev = "cuda"
CL = torch.channels_last
def planted(shape, seed, each=2):
    g = torch.Generator().manual_seed(seed); x = torch.randn(shape, generator=g); f = x.view(-1)
    s = torch.randperm(f.numel(), generator=g)[:3*each]
    f[s[:each]], f[s[each:2*each]], f[s[2*each:]] = math.nan, math.inf, -math.inf
    return x
x32 = planted((2, 8, 10, 10), 3); w32 = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(1)) * 0.2
ref = F.conv2d(x32.double(), w32.double(), padding=1)
posinf, neginf = torch.isposinf(ref), torch.isneginf(ref)
print("expected +inf", int(posinf.sum()), "-inf", int(neginf.sum()), "nan", int(ref.isnan().sum()))
for dtype in (torch.float16, torch.bfloat16):
  for bench in (False, True):
    for det in (False, True):
      torch.backends.cudnn.benchmark = bench; torch.backends.cudnn.deterministic = det
      for fmt in ("nchw", "nhwc"):
        mf = CL if fmt == "nhwc" else torch.contiguous_format
        x = x32.to(dev, dtype).contiguous(memory_format=mf); w = w32.to(dev, dtype).contiguous(memory_format=mf)
        y = F.conv2d(x, w, padding=1).double().cpu()
        lost = (posinf & ~torch.isposinf(y)) | (neginf & ~torch.isneginf(y))
        vals = sorted(set(y[lost].tolist()))[:6]
        print(f"{str(dtype):15} bench={bench:d} det={det:d} {fmt}: lost {int(lost.sum())} values there {vals}")
torch.backends.cudnn.benchmark = True; torch.backends.cudnn.deterministic = False
# overflow of finite inputs
xo = (torch.randn(2, 64, 16, 16) * 30).to(dev, torch.float16); wo = (torch.randn(64, 64, 3, 3) * 30).to(dev, torch.float16)
r = F.conv2d(xo.double(), wo.double(), padding=1)
for fmt in ("nchw", "nhwc"):
    mf = CL if fmt == "nhwc" else torch.contiguous_format
    y = F.conv2d(xo.contiguous(memory_format=mf), wo.contiguous(memory_format=mf), padding=1)
    print(f"overflow {fmt}: ref inf-in-fp16 {int((r.abs() >= 65520).sum())} got inf {int(y.isinf().sum())} got 65504 {int((y.abs()==65504).sum())}")
# shapes: which layer shapes lose inf (resnet-like)
shapes = [(1, 64, 56, 56, 64, 3, 1), (1, 3, 224, 224, 64, 7, 2), (32, 64, 56, 56, 64, 3, 1), (1, 256, 14, 14, 256, 3, 1), (8, 128, 28, 28, 128, 3, 2), (1, 512, 7, 7, 512, 3, 1)]
def bench_ms(fn, n=50):
    for _ in range(5): fn()
    torch.cuda.synchronize(); s, e = torch.cuda.Event(True), torch.cuda.Event(True); s.record()
    for _ in range(n): fn()
    e.record(); torch.cuda.synchronize(); return s.elapsed_time(e) / n
FMAX = torch.finfo(torch.float16).max
def fixup(y):
    return y.masked_fill_(y == FMAX, math.inf).masked_fill_(y == -FMAX, -math.inf)
for n, c, h, wd, m, k, st in shapes:
    xp = planted((n, c, h, wd), 5, each=4).to(dev, torch.float16)
    w = (torch.randn(m, c, k, k) * 0.05).to(dev, torch.float16)
    refp = F.conv2d(xp.float(), w.float(), stride=st, padding=k // 2)
    out = {}
    for fmt in ("nchw", "nhwc"):
        mf = CL if fmt == "nhwc" else torch.contiguous_format
        xx, ww = xp.contiguous(memory_format=mf), w.contiguous(memory_format=mf)
        y = F.conv2d(xx, ww, stride=st, padding=k // 2)
        lost = int(((torch.isinf(refp)) & ~torch.isinf(y)).sum())
        t = bench_ms(lambda: F.conv2d(xx, ww, stride=st, padding=k // 2))
        out[fmt] = (lost, t)
        if fmt == "nhwc":
            lost_f = int(((torch.isinf(refp)) & ~torch.isinf(fixup(y.clone()))).sum())
            tf = bench_ms(lambda: fixup(F.conv2d(xx, ww, stride=st, padding=k // 2)))
            out["nhwc+fixup"] = (lost_f, tf)
    print((n, c, h, wd, m, k, st), "expected inf", int(torch.isinf(refp).sum()),
          " ".join(f"{k2}: lost {v[0]} {v[1]*1000:.1f}us" for k2, v in out.items()))
