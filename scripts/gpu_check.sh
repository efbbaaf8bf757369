#!/usr/bin/env bash
# The whole GPU check, on a machine with an NVIDIA GPU, from the repository root:
#   scripts/gpu_check.sh [tests|bench|peers|all]
#   tests  the GPU tests (every test in tests/gpu, marker gpu): every CUDA tactic against its reference, NaN and
#          inf through every fused epilogue, zoo engines in every precision, CUDA-graph replay, contexts used
#          from several threads and streams, timing cache, device refusal
#   bench  braze bench with a per-layer profile on the zoo's ResNet-50 and BERT (FP16, batch 1)
#   peers  benchmarks/run.py: braze (PRECISIONS, default fp16,fp16+int8) against PyTorch eager and torch.compile
#          (MODES, default: all four)
# Logs go to $OUT (default /tmp/braze_gpu_check).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/braze_gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
what=${1:-all}
status=0

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton, onnx, onnxruntime; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'cudnn', torch.backends.cudnn.version(), 'triton', triton.__version__, 'onnx', onnx.__version__,
'onnxruntime', onnxruntime.__version__)" | tee -a "$OUT/gpu.txt"

if [[ $what == tests || $what == all ]]; then
  python3 -m pytest tests/gpu -m gpu -q --maxfail=10 -p no:cacheprovider --durations=15 2>&1 | tee "$OUT/gpu_tests.log" || status=1
fi
if [[ $what == bench || $what == all ]]; then
  for model in resnet50 bert; do
    python3 -m braze.tools.cli bench "zoo:$model" --device cuda --fp16 --timing-cache "$OUT/timing_cache.json" \
      --duration 2 --profile 2>&1 | tee "$OUT/bench_$model.log" || status=1
  done
fi
if [[ $what == peers || $what == all ]]; then
  python3 benchmarks/run.py --modes "${MODES:-eager,default,reduce-overhead,max-autotune}" \
    --precisions "${PRECISIONS:-fp16,fp16+int8}" \
    --timing-cache "$OUT/timing_cache.json" --out "$OUT/results" 2>&1 | tee "$OUT/peers.log" || status=1
fi
exit $status
