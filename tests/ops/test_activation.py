import numpy as np
import pytest

from .harness import check_op, rand


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "Softsign", "Softplus"])
@pytest.mark.parametrize("shape", [(7,), (2, 3, 5), (1, 4, 3, 3)])
def test_unary_activation(op, shape):
    check_op(op, {"x": rand(*shape)}, opset=17)
