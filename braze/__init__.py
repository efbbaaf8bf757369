"""braze: a deep-learning inference optimizer and runtime.

    import braze
    graph = braze.parse_onnx("model.onnx")
    engine = braze.Builder(device="cpu").build(graph, braze.BuilderConfig())
    engine.save("model.engine")
    engine = braze.Runtime().load("model.engine")
    outputs = engine.create_execution_context().infer({"input": x})
"""

__version__ = "0.1.0"

from .build import Builder, BuilderConfig  # noqa: E402
from .engine import Engine, ExecutionContext, Runtime  # noqa: E402
from .errors import BrazeError  # noqa: E402
from .frontends.onnx import parse_onnx  # noqa: E402
from .ir import DType, Graph  # noqa: E402
from .network import Network  # noqa: E402
from .precision import Calibration, Precision, PrecisionPolicy  # noqa: E402

__all__ = ["Builder", "BuilderConfig", "BrazeError", "Calibration", "DType", "Engine", "ExecutionContext", "Graph",
           "Network", "Precision", "PrecisionPolicy", "Runtime", "__version__", "parse_onnx"]
