"""Element types of braze tensors and their mapping to torch and numpy.

torch has no int4, uint4, int2, uint2, float4_e2m1fn or float8_e8m0fnu tensors: braze emulates those
types (`DType.emulated`). A tensor of one holds each element in one byte of its storage dtype
(`DType.torch`): the value itself for the integer types (int8, uint8), the bit pattern for the float
types (uint8). numpy has them all through ml_dtypes, one element a byte too.
"""

from __future__ import annotations

import enum

import numpy as np
import torch

try:  # ml_dtypes ships with onnx; it gives numpy the bfloat16 and float8 types.
    import ml_dtypes
except ImportError:  # pragma: no cover - onnx depends on it
    ml_dtypes = None


class DType(enum.Enum):
    float64 = "float64"
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"
    float8_e4m3fn = "float8_e4m3fn"
    float8_e4m3fnuz = "float8_e4m3fnuz"
    float8_e5m2 = "float8_e5m2"
    float8_e5m2fnuz = "float8_e5m2fnuz"
    int64 = "int64"
    int32 = "int32"
    int16 = "int16"
    int8 = "int8"
    uint64 = "uint64"
    uint32 = "uint32"
    uint16 = "uint16"
    uint8 = "uint8"
    bool = "bool"
    int4 = "int4"
    uint4 = "uint4"
    int2 = "int2"
    uint2 = "uint2"
    float4_e2m1fn = "float4_e2m1fn"
    float8_e8m0fnu = "float8_e8m0fnu"

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"DType.{self.value}"

    @property
    def torch(self) -> torch.dtype:
        """The torch dtype of this type's tensors: for an emulated type, its storage dtype."""
        return _STORAGE.get(self.value) or getattr(torch, self.value)

    @property
    def emulated(self) -> bool:
        """Whether torch lacks this type, so that its tensors hold it in their storage dtype (module docstring).
        NOTE: only ops whose reference takes its inputs' dtypes (OpDef.wants_dtypes) compute on such tensors."""
        return self.value in _STORAGE

    @property
    def numpy(self) -> np.dtype:
        if self.value in _ML_DTYPES or self.emulated:
            if ml_dtypes is None:  # pragma: no cover
                raise TypeError(f"numpy has no {self.value} without ml_dtypes")
            return np.dtype(getattr(ml_dtypes, self.value))
        return np.dtype(self.value)

    @property
    def itemsize(self) -> int:
        return self.torch.itemsize

    @property
    def is_floating(self) -> bool:
        return self.value.startswith("float") if self.emulated else self.torch.is_floating_point

    @property
    def is_integer(self) -> bool:
        return not self.is_floating and self is not DType.bool

    @staticmethod
    def from_torch(dtype: torch.dtype) -> "DType":
        try:
            return _FROM_TORCH[dtype]
        except KeyError:
            raise TypeError(f"braze has no dtype for torch.{dtype}") from None

    @staticmethod
    def from_numpy(dtype: np.dtype | type) -> "DType":
        name = np.dtype(dtype).name
        try:
            return DType(name)
        except ValueError:
            raise TypeError(f"braze has no dtype for numpy {name}") from None

    @staticmethod
    def parse(value: "DType | str | torch.dtype | np.dtype | type") -> "DType":
        if isinstance(value, DType):
            return value
        if isinstance(value, torch.dtype):
            return DType.from_torch(value)
        if isinstance(value, str):
            aliases = {"float": "float32", "half": "float16", "double": "float64",
                       "fp32": "float32", "fp16": "float16", "bf16": "bfloat16",
                       "int": "int32", "long": "int64"}
            try:
                return DType(aliases.get(value, value))
            except ValueError:
                raise TypeError(f"unknown dtype {value!r}") from None
        return DType.from_numpy(value)


_ML_DTYPES = {"bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz"}
_STORAGE = {"int4": torch.int8, "uint4": torch.uint8, "int2": torch.int8, "uint2": torch.uint8,
            "float4_e2m1fn": torch.uint8, "float8_e8m0fnu": torch.uint8}
_FROM_TORCH = {d.torch: d for d in DType if not d.emulated}


def to_torch(array: np.ndarray) -> torch.Tensor:
    """A numpy array (ml_dtypes' types included) as a CPU torch tensor that owns its memory; an emulated
    type's array becomes a tensor of its storage dtype (DType.from_numpy(array.dtype) still names the type)."""
    dtype = DType.from_numpy(array.dtype)
    array = np.ascontiguousarray(array).reshape(array.shape)  # NOTE: ascontiguousarray alone makes 0-d arrays 1-d
    if dtype.emulated:  # NOTE: ml_dtypes leaves the high bits of a 4- or 2-bit element unspecified
        if dtype.is_floating:
            bits = array.view(np.uint8).copy()
            if dtype is DType.float4_e2m1fn:
                bits &= 0x0F
            return torch.from_numpy(bits)
        return torch.from_numpy(array.astype(np.int8 if dtype.torch == torch.int8 else np.uint8))
    if dtype.value in _ML_DTYPES:
        bits = array.view(np.uint16 if dtype.itemsize == 2 else np.uint8)
        return torch.from_numpy(bits.copy()).view(dtype.torch)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    return torch.from_numpy(array.copy())


def to_numpy(tensor: torch.Tensor, dtype: DType | None = None) -> np.ndarray:
    """A torch tensor as a numpy array (ml_dtypes' types through ml_dtypes); shares CPU memory where it can.
    `dtype` says which type the tensor holds: needed for an emulated type, whose storage is only int8 or uint8."""
    if dtype is not None and tensor.dtype != dtype.torch:
        raise TypeError(f"{dtype} tensors are stored as {dtype.torch}, not {tensor.dtype}")
    dtype = dtype or DType.from_torch(tensor.dtype)
    tensor = tensor.detach().cpu()
    if dtype.emulated:
        values = tensor.numpy()
        return values.view(dtype.numpy) if dtype.is_floating else values.astype(dtype.numpy)
    if dtype.value in _ML_DTYPES:
        bits = tensor.view(torch.uint16 if dtype.itemsize == 2 else torch.uint8).numpy()
        return bits.view(dtype.numpy)
    return tensor.numpy()
