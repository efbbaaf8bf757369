"""Element types of braze tensors and their mapping to torch and numpy."""

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

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"DType.{self.value}"

    @property
    def torch(self) -> torch.dtype:
        return getattr(torch, self.value)

    @property
    def numpy(self) -> np.dtype:
        if self.value in _ML_DTYPES:
            if ml_dtypes is None:  # pragma: no cover
                raise TypeError(f"numpy has no {self.value} without ml_dtypes")
            return np.dtype(getattr(ml_dtypes, self.value))
        return np.dtype(self.value)

    @property
    def itemsize(self) -> int:
        return self.torch.itemsize

    @property
    def is_floating(self) -> bool:
        return self.torch.is_floating_point

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
_FROM_TORCH = {getattr(torch, d.value): d for d in DType}


def to_torch(array: np.ndarray) -> torch.Tensor:
    """A numpy array (ml_dtypes' bfloat16 and float8 included) as a CPU torch tensor that owns its memory."""
    dtype = DType.from_numpy(array.dtype)
    array = np.ascontiguousarray(array).reshape(array.shape)  # NOTE: ascontiguousarray alone makes 0-d arrays 1-d
    if dtype.value in _ML_DTYPES:
        bits = array.view(np.uint16 if dtype.itemsize == 2 else np.uint8)
        return torch.from_numpy(bits.copy()).view(dtype.torch)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    return torch.from_numpy(array.copy())


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A torch tensor as a numpy array (bfloat16 and float8 through ml_dtypes); shares CPU memory where it can."""
    dtype = DType.from_torch(tensor.dtype)
    tensor = tensor.detach().cpu()
    if dtype.value in _ML_DTYPES:
        bits = tensor.view(torch.uint16 if dtype.itemsize == 2 else torch.uint8).numpy()
        return bits.view(dtype.numpy)
    return tensor.numpy()
