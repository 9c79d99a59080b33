"""Seeding, device choice, a tiny timer, closing progress bars, counting calls, and the one check of token ids
that every module uses. See notebook 00.

Leaves out: multi-GPU placement (see notebook 11) and mixed precision.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

DEVICE_ENV_VAR = "COURSE_DEVICE"
VALID_DEVICES = ("auto", "cpu", "cuda", "mps")


def set_seed(seed: int = 1337) -> None:
    """Seed Python's `random`, NumPy and PyTorch (CPU and every GPU) with one number.

    >>> set_seed(0); a = torch.rand(1); set_seed(0); bool(a == torch.rand(1))
    True
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}: {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def get_device(name: str | None = None) -> torch.device:
    """Pick where tensors live: cuda, then mps, then cpu.

    `name` (or the COURSE_DEVICE environment variable) forces a choice:
    one of "auto", "cpu", "cuda", "mps". Asking for a device that is not there is an error.

    >>> get_device("cpu")
    device(type='cpu')
    """
    source = "argument"
    if name is None:
        name = os.environ.get(DEVICE_ENV_VAR, "auto")
        source = f"environment variable {DEVICE_ENV_VAR}"
    choice = str(name).strip().lower()
    if choice not in VALID_DEVICES:
        raise ValueError(
            f"invalid device {name!r} (from the {source}); expected one of {', '.join(VALID_DEVICES)}"
        )
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device 'cuda' was asked for (from the {source}) but no CUDA GPU is available; use 'cpu' or 'auto'")
    if choice == "mps" and not _mps_available():
        raise ValueError(f"device 'mps' was asked for (from the {source}) but MPS is not available; use 'cpu' or 'auto'")
    return torch.device(choice)


@contextmanager
def timer(label: str = "", verbose: bool = True) -> Iterator[dict]:
    """Time a block: `with timer("train") as t: ...` then `t["seconds"]`."""
    result: dict = {"seconds": float("nan")}
    start = time.perf_counter()
    try:
        yield result
    finally:
        result["seconds"] = time.perf_counter() - start
        if verbose:
            print(f"{label + ': ' if label else ''}{result['seconds']:.2f} s")


def close_progress(bar: Any) -> None:
    """Close a `tqdm.auto` bar; in a notebook, also print its final line as plain text.

    In Jupyter the bar is a widget. A viewer that cannot draw widgets (a plain nbconvert page,
    GitHub, a terminal reading the .ipynb) shows the text the bar had when it appeared: "0%".
    The printed line keeps the finished state (steps, time, rate, last loss) readable everywhere.
    In a terminal the bar already is text, so nothing is added. `None` is allowed (no bar).
    """
    if bar is None:
        return
    is_widget = getattr(bar, "container", None) is not None and not bar.disable  # tqdm.notebook (close() disables)
    bar.close()
    if is_widget:
        print(bar)


@dataclass(frozen=True)
class CallCount:
    """What one call cost in calls: `module_calls` nn.Module forwards, `torch_ops` ATen operations."""

    module_calls: int
    torch_ops: int


def count_calls(fn: Callable[[], Any]) -> CallCount:
    """Run `fn()` once and count the nn.Module calls and the ATen operations (PyTorch's kernels) it makes.

    A module call is one `forward` (counted with a global forward pre-hook). An operation is one call
    that reaches PyTorch's dispatcher (`aten::mm`, `aten::view`, ...), counted with a TorchDispatchMode,
    so a Python function that calls three kernels counts three. Small models decoding one token spend
    their time on these fixed costs rather than on arithmetic (see `course_lib.models.GPTDecoder`).

    >>> count_calls(lambda: torch.nn.Linear(2, 2)(torch.ones(1, 2))).module_calls
    1
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable taking no arguments, got {type(fn).__name__}")
    from torch.nn.modules.module import register_module_forward_pre_hook
    from torch.utils._python_dispatch import TorchDispatchMode

    counts = {"modules": 0, "ops": 0}

    class _Ops(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            counts["ops"] += 1
            return func(*args, **(kwargs or {}))

    def _pre_hook(module: torch.nn.Module, inputs: Any) -> None:
        counts["modules"] += 1

    handle = register_module_forward_pre_hook(_pre_hook)
    try:
        with _Ops():
            fn()
    finally:
        handle.remove()
    return CallCount(counts["modules"], counts["ops"])


INT_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)


def check_token_ids(ids: Any, name: str = "token ids", vocab_size: int | None = None, dims: int | None = None) -> torch.Tensor:
    """Return `ids` after checking it is an integer tensor (with `dims` dimensions, values in [0, vocab_size)).

    The one token-id check of the package: embeddings, models, masking and decoding call it, so a wrong
    input gets the same clear message everywhere. The range check costs two kernels and one read-back
    (one host sync) per call. Meta tensors (shapes only) skip the range check.
    >>> check_token_ids(torch.tensor([[1, 2]]), "idx", vocab_size=3, dims=2).shape
    torch.Size([1, 2])
    """
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}")
    if dims is not None and ids.dim() != dims:
        want = {1: "(T,)", 2: "(B, T)"}.get(dims, f"{dims} dimensions")
        raise ValueError(f"{name} must have shape {want}, got {tuple(ids.shape)}")
    if ids.dtype not in INT_DTYPES:
        raise TypeError(f"{name} must hold integer token ids (an integer dtype such as torch.long), got dtype {ids.dtype}")
    if vocab_size is not None and ids.numel() and ids.device.type != "meta":
        lo, hi = torch.stack(torch.aminmax(ids)).tolist()  # two kernels, one read-back
        if lo < 0 or hi >= vocab_size:
            raise ValueError(f"{name} must lie in [0, vocab_size={vocab_size}), got min {lo}, max {hi}")
    return ids
