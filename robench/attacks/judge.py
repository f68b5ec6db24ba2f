"""The judge: the one place where "does the model classify this point correctly?" is decided.

Attacks may search on a faster stand-in of the model (the BatchNorm-folded view, bf16
autocast), and a stand-in disagrees with the model on a few points near the decision boundary.
A point dropped because the stand-in called it broken would never be attacked again, and a
point counted robust because the stand-in called it correct would be a robustness the model
does not have. So every verdict (the clean pass, a restart that drops a broken point, noise
draws that stop early, the final count) is the real model's, in eval mode and in fp32, whatever
autocast the caller runs under. On a CUDA device "fp32" means IEEE fp32: PyTorch runs fp32
convolutions as TF32 by default (10 mantissa bits against fp32's 23): on an H200 a digits
CNN's logits and its BatchNorm-folded view's differed by up to 1.1e-3 under TF32, ten times
the view check's tolerance. So the judge and the view check turn TF32 off for their passes;
searches keep it, a stand-in like bf16.

A randomised model gives another answer in each pass. The judge can classify a point `draws`
times with fresh randomness and call it correct only if every draw is: the per-point worst
case over draws (robench's verdict rule for randomised models, recorded with every result;
`robench eval --verdict-draws`). For a deterministic model one pass is the answer.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from robench.runtime import evaluating

# Points classified per forward pass; callers may hand over any number.
DEFAULT_BATCH = 500


@contextlib.contextmanager
def full_precision(device: torch.device):
    """Autocast off for the block, even inside a caller's bf16 autocast region, and on CUDA
    IEEE fp32 convolutions and matrix products instead of TF32."""
    with contextlib.ExitStack() as stack:
        if device.type in ("cpu", "cuda", "mps"):
            stack.enter_context(torch.autocast(device_type=device.type, enabled=False))
        if device.type == "cuda":
            stack.enter_context(ieee_fp32())
        yield


@contextlib.contextmanager
def ieee_fp32():
    """TF32 off for cuDNN convolutions and cuBLAS matrix products within the block, restored
    after it (the settings are process-wide: the caller's own choice is put back). Older torch
    releases have only the `allow_tf32` switches."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    if hasattr(cudnn, "conv") and hasattr(cudnn.conv, "fp32_precision"):
        switches = [(cudnn.conv, "fp32_precision", "ieee"), (matmul, "fp32_precision", "ieee")]
    else:
        switches = [(cudnn, "allow_tf32", False), (matmul, "allow_tf32", False)]
    before = [getattr(owner, name) for owner, name, _ in switches]
    try:
        for owner, name, value in switches:
            setattr(owner, name, value)
        yield
    finally:
        for (owner, name, _), value in zip(switches, before, strict=True):
            setattr(owner, name, value)


@dataclass
class Judge:
    model: nn.Module
    draws: int = 1
    batch_size: int = DEFAULT_BATCH

    def __post_init__(self) -> None:
        if self.draws < 1:
            raise ValueError(f"a judge needs at least one draw, got {self.draws}")

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """One pass of the model over x, in batches: eval mode, fp32, fp32 logits."""
        out = []
        with evaluating(self.model), full_precision(x.device):
            for start in range(0, len(x), self.batch_size):
                out.append(self.model(x[start:start + self.batch_size].float()).float())
        return torch.cat(out) if out else torch.empty(0)

    def votes(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """How many of the `draws` passes classify each point correctly (int, on y's device)."""
        out = torch.zeros(len(y), dtype=torch.long, device=y.device)
        if not len(y):  # every point already decided: no pass to make
            return out
        for _ in range(self.draws):
            out += (self.logits(x).argmax(1) == y).to(out.device)
        return out

    def correct(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Bool per point: classified correctly in every draw."""
        return self.votes(x, y) == self.draws

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The labels of one pass (what `robench attack` saves)."""
        return self.logits(x).argmax(1) if len(x) else torch.empty(0, dtype=torch.long)
