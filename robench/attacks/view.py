"""Faster stand-ins of a model for computing attack gradients, and the proof they are the model.

Attacks spend their time in forward and backward passes of a model in eval mode, where
BatchNorm is a fixed affine map: folding it into the preceding convolution, and running in
channels-last layout, gives the same function with fewer memory passes (for a CIFAR ResNet-18
in fp32, 1.55x faster than the model on an AVX2 CPU, less where convolutions are faster and
the passes it saves weigh less: 1.04x on AVX-512; see benchmarks/README.md). bf16 autocast
is the other stand-in (`InPrecision`).

A stand-in is only used to *search*; the judge (the real model, fp32) gives every verdict.
And the view is only used where it is shown to be the model's function:
- The view comes from torch.fx, which runs the Python code in `forward` once and keeps the
  result. Randomness drawn with Python's `random`, NumPy, or torch calls that take no traced
  input would become one fixed draw, so a model found randomised never gets a view (the
  evaluation decides that, robench.evaluation).
- Each Conv2d -> BatchNorm2d pair of the traced graph is folded into a *new* module for that
  call site. A convolution called twice, a conv-BN block applied twice, or a BatchNorm shared
  by two branches therefore folds correctly; folding in place would fold the statistics into
  a module that other call sites still use.
- Before an evaluation uses it, `check_view` compares the view with the model on points
  being evaluated (logits, predicted classes, input gradients); any disagreement beyond the
  stated tolerances and the model itself is attacked, with the reason in the record.
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from robench.attacks.judge import full_precision
from robench.runtime import evaluating

# How closely the view must reproduce the model (fp32): |view - model| <= ATOL + RTOL |model|
# for every logit; the same predicted class wherever the model's top two logits are further
# apart than that; each point's input gradient of the cross-entropy pointing the same way
# (cosine, point by point).
ATOL = 1e-4
RTOL = 1e-4
MIN_GRADIENT_COSINE = 0.99


class _ChannelsLast(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.inner(x)


class InPrecision(nn.Module):
    """A model run under bf16 autocast, handing back fp32 logits.

    Only the network's own arithmetic is in bf16: an attack's losses, steps, and AutoAttack's
    DLR and step-size rules see fp32 logits.
    """

    def __init__(self, inner: nn.Module, precision: str):
        super().__init__()
        self.inner, self.precision = inner, precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision == "bf16":
            with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
                return self.inner(x).float()
        return self.inner(x).float()


def _fold_batchnorm(traced: fx.GraphModule) -> int:
    """Fold every conv -> BN pair of the graph into a module of its own; returns how many."""
    modules = dict(traced.named_modules())
    graph = traced.graph
    folded = 0
    for node in list(graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        conv_node = node.args[0] if node.args else None
        if not (isinstance(conv_node, fx.Node) and conv_node.op == "call_module"
                and isinstance(modules.get(conv_node.target), nn.Conv2d)):
            continue
        bn = modules[node.target]
        if len(conv_node.users) > 1 or bn.running_mean is None or len(node.args) != 1:
            continue  # the conv's output is used elsewhere, or BN uses batch statistics
        conv = modules[conv_node.target]
        fused = fuse_conv_bn_eval(copy.deepcopy(conv).eval(), bn.eval())
        name = f"robench_folded_{folded}"
        traced.add_submodule(name, fused)
        with graph.inserting_before(conv_node):
            new = graph.call_module(name, conv_node.args, conv_node.kwargs)
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        graph.erase_node(conv_node)
        folded += 1
    graph.lint()
    traced.delete_all_unused_submodules()
    traced.recompile()
    return folded


def attack_view(model: nn.Module) -> nn.Module:
    """An eval-mode copy with BatchNorm folded into convolutions, in channels-last layout.

    A model torch.fx cannot trace keeps its BatchNorm (a plain copy, still channels-last).
    The copy is not yet known to equal the model: check it with `check_view` before use.
    """
    view: nn.Module = copy.deepcopy(model).eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = fx.symbolic_trace(view)
            _fold_batchnorm(traced)
        view = traced
    except Exception:  # not traceable (data-dependent control flow): keep the plain copy
        pass
    if any(isinstance(m, nn.Conv2d) for m in view.modules()):
        view = _ChannelsLast(view.to(memory_format=torch.channels_last))
    for p in view.parameters():
        p.requires_grad_(False)
    return view.eval()


def _disagreement(view: nn.Module, model: nn.Module, x: torch.Tensor,
                  y: torch.Tensor) -> str | None:
    with full_precision(x.device):
        xv = x.detach().float().clone().requires_grad_(True)
        xm = x.detach().float().clone().requires_grad_(True)
        with torch.enable_grad():
            out_v, out_m = view(xv).float(), model(xm).float()
            (g_v,) = torch.autograd.grad(F.cross_entropy(out_v, y, reduction="sum"), xv)
            (g_m,) = torch.autograd.grad(F.cross_entropy(out_m, y, reduction="sum"), xm)
    out_v, out_m = out_v.detach(), out_m.detach()
    if out_v.shape != out_m.shape:
        return f"its output has shape {tuple(out_v.shape)}, the model's {tuple(out_m.shape)}"
    bound = ATOL + RTOL * out_m.abs()
    gap = (out_v - out_m).abs()
    if not bool((gap <= bound).all()):
        return (f"its logits differ from the model's by up to {gap.max().item():.3g} on "
                f"{len(x)} evaluated points (tolerance {ATOL:g} + {RTOL:g} |logit|)")
    top2 = out_m.topk(min(2, out_m.shape[1]), dim=1).values
    clear = (top2[:, 0] - top2[:, -1]) > 2 * bound.amax(1)
    flips = int(((out_v.argmax(1) != out_m.argmax(1)) & clear).sum())
    if flips:
        return f"it predicts another class than the model on {flips} of {len(x)} points"
    return _gradient_disagreement(g_v, g_m)


def _gradient_disagreement(g_v: torch.Tensor, g_m: torch.Tensor) -> str | None:
    """Per point, the cosine between the view's and the model's input gradients.

    Per point, not over the batch: a search steps along each point's own gradient (its sign,
    for Linf, whatever its size), so one point steered elsewhere is searched wrongly even when
    the batch's gradients, dominated by the points with the largest ones, agree. Computed in
    fp64 (on the CPU: not every device has it) so that the tiny gradients of confident points
    do not underflow when squared. Two zero gradients agree; a zero one and another do not.
    """
    g_v, g_m = g_v.flatten(1).cpu().double(), g_m.flatten(1).cpu().double()
    n_v, n_m = g_v.norm(dim=1), g_m.norm(dim=1)
    if bool(((n_m == 0) & (n_v > 0)).any()):
        return "it has input gradients where the model has none"
    cosine = (g_v * g_m).sum(1) / (n_v * n_m).clamp_min(1e-300)
    cosine[(n_v == 0) & (n_m == 0)] = 1.0
    low = (cosine < MIN_GRADIENT_COSINE).nonzero().flatten().tolist()
    if not low:
        return None
    worst = min(low, key=lambda i: float(cosine[i]))
    return (f"its input gradients point elsewhere than the model's on {len(low)} of "
            f"{len(cosine)} evaluated points (point {worst}: cosine {float(cosine[worst]):.3f} "
            f"< {MIN_GRADIENT_COSINE})")


def check_view(view: nn.Module, model: nn.Module, x: torch.Tensor,
               y: torch.Tensor) -> str | None:
    """None if the view reproduces the model on x (and on x's first point alone, which
    catches a traced batch size), else why not, in words. Both run in eval mode."""
    with evaluating(model):
        for batch in ((x, y), (x[:1], y[:1])):
            reason = _disagreement(view, model, *batch)
            if reason is not None:
                return reason
    return None
