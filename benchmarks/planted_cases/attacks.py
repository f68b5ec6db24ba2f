"""Planted cases of issue 29, items 7 and 8 (the `attacks` engineer's): what robench shows.

    PYTHONPATH=. python benchmarks/planted_cases/attacks.py

Each case runs robench's own code on a planted input, using only functions that also exist at
commit 830c880, so the same file run with an older checkout first on PYTHONPATH gives the
"before" column. Takes about a second.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests"))

from planted import (  # noqa: E402
    GradientFlippedAt,
    NarrowBand,
    RisingStandIn,
    SignedFirstValue,
)

from robench.attacks import create_attack  # noqa: E402
from robench.attacks.judge import Judge  # noqa: E402
from robench.attacks.view import check_view  # noqa: E402
from robench.evaluation.protocol import attack_batch  # noqa: E402
from robench.evaluation.sanity import sanity_result  # noqa: E402
from robench.evaluation.standin import Search  # noqa: E402


def sanity_one_of_100() -> tuple[str, str, str]:
    """The stronger PGD of --sanity broke 1 of 100 points the protocol left robust (c = 0)."""
    counts = {"n_points": 100, "extra_broken": 1, "only_protocol": 0, "large_eps_robust": 0,
              "attacked": 100, "seconds": 0.0, "precision": "fp32", "searched_on": "model"}
    s = sanity_result(counts, norm="Linf", eps=0.1, seed=0, stochastic=False,
                      shape=(1, 8, 8), robust_after=50, n=100)
    drop = getattr(s.result, "implied_drop", None)
    ci = getattr(s.result, "implied_drop_ci95", None)
    shown = f"flags {s.flags or 'none'}"
    if drop is not None:
        shown += f"; drop {drop:.4f}, 95 % [{ci[0]:.4f}, {ci[1]:.4f}]"
    return ("sanity: stronger PGD broke 1/100 (b=1, c=0, p=0.5)", shown,
            "flagged: 1/100 points over-reported, drop 0.0100 (95 % Wilson [0.0018, 0.0545])")


def standin_best_iterate() -> tuple[str, str, str]:
    """2-step PGD searched on a stand-in whose margin peaks at the last iterate; the real
    model is fooled only at the middle one (on 2 of the 3 points)."""
    x, y = torch.tensor([[0.5], [0.5], [0.1]]), torch.tensor([0, 0, 0])
    real = NarrowBand().eval()
    attack = create_attack("pgd", norm="Linf", eps=0.3, seed=0,
                           params={"steps": 2, "step_size": 0.2, "random_start": False})
    ok, _ = attack_batch(attack, Search(RisingStandIn(), "view", "fp32"),
                         Search(real, "model", "fp32"), x, y, Judge(real))
    return ("stand-in's best iterate is not the real model's (PGD on a view)",
            f"robust {int(ok.sum())}/3", "robust 1/3 (the real model is fooled on 2)")


def view_one_point_flipped() -> tuple[str, str, str]:
    """A view equal to the model, with one confident point's input gradient negated: the
    batch-wide gradient cosine is about 1, that point's is -1."""
    model = SignedFirstValue().eval()
    x = torch.tensor([[0.45], [0.47], [0.49], [0.5], [0.51], [0.53], [0.55], [1.0]])
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    reason = check_view(GradientFlippedAt(model, index=7), model, x, y)
    shown = "view accepted" if reason is None else f"view refused: {reason}"
    return ("view check: one point's view gradient points elsewhere", shown,
            "view refused, point 7 named (cosine -1)")


def cases(workdir: pathlib.Path) -> list[tuple[str, str, str]]:
    """(case, what robench shows on this checkout, the truth), one per planted case."""
    return [sanity_one_of_100(), standin_best_iterate(), view_one_point_flipped()]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for row in cases(pathlib.Path(tmp)):
            print(" | ".join(row))
