"""Where and how tensors are computed: device choice, seeding, determinism, autocast."""

from __future__ import annotations

import contextlib
import os
import random
import warnings

import torch

from robench.errors import ModelChanged, RobenchWarning, UserError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; asking for an absent device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} was asked for but no CUDA GPU is visible; "
                        f"use --device cpu or --device auto.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("device 'mps' was asked for but Apple's MPS backend is not available; "
                        "use --device cpu or --device auto.")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed every generator a run may touch; in deterministic mode also pin the kernels."""
    random.seed(seed)
    torch.manual_seed(seed)
    # Set only when it changes: torch's setter imports its compiler's config (about 4 s on a
    # slow CPU), and every robench process would pay that for the default, which is off.
    if torch.are_deterministic_algorithms_enabled() != deterministic:
        torch.use_deterministic_algorithms(deterministic)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = torch.cuda.is_available()


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast where asked (several times faster on CPUs with AMX and on GPUs)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_has_bf16() -> bool:
    """oneDNN's own test for bf16 instructions on this CPU (the one torch.compile uses)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def slow_bf16(device: torch.device) -> str | None:
    """Why bf16 autocast would be slower than fp32 on `device`, or None where it is fast.

    A CPU without bf16 instructions (AVX512-BF16 or AMX) emulates bf16 convolutions, which
    then run an order of magnitude slower than fp32 (measured: 20x for a ResNet-18 training
    step on a 2-core AVX2 EPYC, benchmarks/README.md); a GPU before Ampere has no bf16 units.
    """
    if device.type == "cpu" and not cpu_has_bf16():
        isa = torch.backends.cpu.get_cpu_capability()
        return (f"this CPU ({isa}) has no bf16 instructions (AVX512-BF16 or AMX), so bf16 "
                f"runs emulated, many times slower than fp32")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return f"this GPU ({torch.cuda.get_device_name(device)}) has no native bf16"
    return None


def warn_if_slow(device: torch.device, precision: str) -> None:
    """A RobenchWarning when `precision` is bf16 where it is slower than fp32: valid, and
    the results are as sound, but the user asked for speed and would get the opposite."""
    reason = slow_bf16(device) if precision == "bf16" else None
    if reason is not None:
        warnings.warn(f"--precision bf16: {reason}; --precision fp32 will be faster here.",
                      RobenchWarning, stacklevel=2)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor (random draws, say) on `device` without stopping the host.

    A plain copy from pageable memory to a GPU waits for all the GPU's queued work first;
    from pinned memory, non-blocking, it is queued behind that work instead, so a training
    step that draws its randomness on the CPU never syncs. The pinned buffer comes from
    torch's caching host allocator, which keeps it until the copy is done.
    """
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """Eval mode for the duration of the block, then the mode each module had before.

    Attacks and measurements must see BatchNorm running statistics and no dropout, and must
    hand the model back as they found it (a model left in eval mode trains wrongly). Each
    module's own flag is restored, not the top module's for all: a wrapper in train mode
    around a member in eval mode must not come back with the member training (its next
    forward pass would then rewrite its BatchNorm statistics).

    A module the block's own forward passes switched to train mode is refused (ModelChanged):
    the passes after the switch measured another model, and restoring the flags would hide it.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    held = [(name, m) for name, m in model.named_modules() if not m.training]
    try:
        yield model
        switched = [f"module {name!r}" if name else "the model"
                    for name, m in held if m.training]
        if switched:
            raise ModelChanged([f"{who} was put in train mode by a forward pass in eval mode"
                                for who in switched])
    finally:
        for module, mode in modes:
            module.training = mode


def is_out_of_memory(exc: BaseException) -> bool:
    """A GPU's out-of-memory error, the CPU allocator's failure to allocate, or Python's."""
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, (oom, MemoryError)) or (isinstance(exc, RuntimeError)
                                                   and "can't allocate memory" in str(exc))


def smaller_batch(batch_size: int) -> int:
    return max(1, batch_size // 2)
