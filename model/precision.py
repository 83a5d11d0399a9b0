"""The number format the network computes in at inference, chosen once at load.

- `fp32`: as trained.
- `bf16`: the encoder's weights cast to bfloat16 once; the heads and everything after the encoder stay fp32.
  Several times faster where the hardware multiplies bf16 natively (a CPU with AMX or AVX512-BF16, a CUDA
  GPU with bf16); elsewhere it is computed without those units, the same numbers several times slower.
- `int8`: the linear layers as dynamic int8 ones (CPU only).
- `auto`: bf16 where it is native, fp32 elsewhere.
"""

from __future__ import annotations

import warnings

import torch

from persuasion.errors import PersuasionError

PRECISIONS = ("auto", "fp32", "bf16", "int8")


def native_bf16(device: str) -> bool:
    """Whether this device multiplies bf16 matrices in hardware (oneDNN's own check on the CPU)."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def check_precision(requested: str) -> None:
    """A one-line error for a name that is not a precision, before anything is loaded."""
    if requested not in PRECISIONS:
        raise PersuasionError(f"precision {requested!r}: give one of {', '.join(PRECISIONS)}")


def choose_precision(requested: str, device: str, bf16_is_native: bool) -> str:
    """The precision `requested` ("auto" or one of the others) means on this device."""
    check_precision(requested)
    if requested == "auto":
        return "bf16" if bf16_is_native else "fp32"
    if requested == "int8" and device != "cpu":
        raise PersuasionError(f"int8 runs on the CPU only; load with device='cpu', not {device!r}")
    if requested == "bf16" and not bf16_is_native:
        warnings.warn(f"bf16 is not native on this {device} (no AMX or AVX512-BF16): it gives bf16's numbers "
                      f"several times slower than fp32; precision='auto' picks fp32 here", stacklevel=3)
    return requested


def apply_precision(network: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The network (fp32, as loaded) in `precision`, its weights cast once here, never per call."""
    if precision == "bf16":
        network.encoder.to(torch.bfloat16)  # the heads are small; PersuasionNetwork.encode hands them fp32 states
    elif precision == "int8":
        with warnings.catch_warnings():  # torch marks eager quantisation deprecated; it still works
            warnings.simplefilter("ignore")
            network = torch.ao.quantization.quantize_dynamic(network, {torch.nn.Linear}, dtype=torch.qint8)
    return network
