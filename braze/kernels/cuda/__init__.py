"""CUDA tactics: vendor libraries through torch (cuDNN, cuBLAS/cuBLASLt, scaled-dot-product attention),
braze's Triton kernels (GEMM with fused epilogues, generated pointwise kernels, LayerNorm), the INT8 GEMM and
convolution tactics (int8.py), and the torch fallback that runs any op's reference on the GPU. The builder times
every tactic that supports a layer."""

from ..cpu.views import ConcatInPlaceTactic, ViewTactic
from .attention import SdpaTactic
from .conv import Conv1x1GemmTactic, CudnnConvTactic
from .gemm import CublasGemmTactic, TritonGemmTactic
from .generic import GatherTactic, TorchTactic
from ..dequantized import TACTICS as DEQUANTIZED_TACTICS
from ..quantize import TACTICS as QUANTIZE_TACTICS
from .int8 import TACTICS as INT8_TACTICS
from .norm import TritonLayerNormTactic
from .pointwise import TritonPointwiseTactic

TACTICS = [
    ViewTactic(),
    ConcatInPlaceTactic(),
    CudnnConvTactic(),
    Conv1x1GemmTactic(),
    CublasGemmTactic(),
    TritonGemmTactic(),
    *INT8_TACTICS,
    *DEQUANTIZED_TACTICS,  # the float candidate the tuner times against the INT8 kernels
    *QUANTIZE_TACTICS,
    SdpaTactic(),
    TritonPointwiseTactic(),
    TritonLayerNormTactic(),
    GatherTactic(),
    TorchTactic(),
]

__all__ = ["TACTICS"]
