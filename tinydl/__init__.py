"""tinydl: a deep-learning library written from scratch on NumPy (CPU) and CuPy (GPU).

>>> import tinydl as td
>>> x = td.tensor([1.0, 2.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
tensor([2., 4.])
"""

from . import (  # noqa: E402,F401  (they build on the above)
    autograd,
    autograd_functional,
    cuda,
    data,
    debug,
    functional,  # noqa: F401
    io,
    layers,
    metrics,
    onnx,  # NOTE: the onnx package itself is imported only on export
    optim,
    testing,
    viz,
)
from ._version import __version__  # noqa: F401
from .autograd import (  # noqa: F401
    Context,
    Function,
    Tensor,
    enable_grad,
    grad,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from .backend import Device, get_num_threads, set_num_threads  # noqa: F401
from .debug import NumericalStabilityWarning, RetainedGraphWarning  # noqa: F401
from .dtypes import (  # noqa: F401
    bool_,
    float16,
    float32,
    float64,
    int8,
    int16,
    int32,
    int64,
    uint8,
)
from .errors import (  # noqa: F401
    AnomalyError,
    BackwardError,
    DeviceError,
    DTypeError,
    GradcheckError,
    ShapeError,
    TinydlError,
)
from .functional import (  # noqa: F401  (PyTorch also has these as torch.*)
    abs,
    argmax,
    argmin,
    cat,
    chunk,
    clamp,
    einsum,
    exp,
    flatten,
    log,
    matmul,
    maximum,
    mean,
    minimum,
    permute,
    reshape,
    split,
    sqrt,
    squeeze,
    stack,
    sum,
    tanh,
    unsqueeze,
    where,
)
from .gradcheck import gradcheck, gradgradcheck  # noqa: F401
from .io import SerializationError, load, load_checkpoint, save, save_checkpoint  # noqa: E402,F401
from .layers import summary  # noqa: F401
from .profiler import Profile, profile  # noqa: F401
from .sysinfo import info  # noqa: F401
from .tensor import *  # noqa: F401,F403

# NOTE: PyTorch's spelling, td.autograd.functional.jacobian. autograd.py sits below functional
# and cannot import the transforms itself; the package, above both, names them there once.
autograd.functional = autograd_functional
