"""Warning signs in a finished evaluation, as short flags a leaderboard cell can hold.

The field's checklists (Carlini et al. 2019, Tramer et al. 2020, AutoAttack's own checks)
name what makes a robustness number suspect. robench's flags:
- `stochastic-model`: the model is randomised (evaluated with EOT; see the verdict rule).
- `<attack>-beat-white-box`: an attack that takes no gradient (random noise, Square) broke
  points that the white-box attacks before it had left, more than AutoAttack's own threshold
  of 0.2 % of the points: the gradients are likely masked.
- `robust-near-clean`: robust accuracy lies inside the 95 % interval of clean accuracy: the
  attacks barely moved the model, which is rare for a real defense at a standard budget.
- `robust-accuracy-rose-with-eps`: a larger budget left more points robust than a smaller one.
- AutoAttack's own checks, as `autoattack:<check>` (robench.attacks.autoattack.CHECK_FLAGS).
- From `--sanity`: `stronger-pgd-broke-more`, `large-eps-not-broken` (robench.evaluation.sanity).
- `not-eot-sound` (robench.evaluation.plan).
"""

from __future__ import annotations

from collections.abc import Sequence

from robench.attacks import Attack
from robench.attacks.autoattack import SQUARE_ALPHA, Findings, check_flag
from robench.records import wilson_interval

STOCHASTIC = "stochastic-model"
NEAR_CLEAN = "robust-near-clean"


def attack_flags(steps: Sequence, attacks: Sequence[Attack], n: int, stochastic: bool,
                 findings: Sequence[dict | None] | None = None) -> tuple[list[str], list[str]]:
    """(flags, notes) from the attack sequence; AutoAttack's own sentences become notes.

    `findings` are what each attack's own checks found over every block (the protocol's
    state); without them each attack's last report is read.
    """
    flags = [STOCHASTIC] if stochastic else []
    notes = []
    white_box_before = False
    for k, (step, attack) in enumerate(zip(steps, attacks, strict=False)):
        if not attack.uses_gradients:
            if white_box_before and step.broken > SQUARE_ALPHA * n:
                flags.append(f"{attack.name}-beat-white-box")
        else:
            white_box_before = True
        if findings is None:
            report = getattr(attack, "report", None)
        else:
            found = findings[k] if k < len(findings) else None
            report = None if found is None else Findings.from_dict(found)
        if report is not None:
            for warning in getattr(report, "warnings", []):
                flags.append(check_flag(warning))
                notes.append(f"AutoAttack's check: {warning}")
            if getattr(report, "square_broke_points", False):
                flags.append("square-beat-white-box")
    return list(dict.fromkeys(flags)), notes


def near_clean(clean_ok: int, robust_ok: int, n: int) -> list[str]:
    """`robust-near-clean` when robust accuracy is within the clean accuracy's interval."""
    if n == 0 or clean_ok == 0:
        return []
    low = wilson_interval(clean_ok, n)[0]
    return [NEAR_CLEAN] if robust_ok / n >= low else []


def curve(robust_acc: float, previous_robust: float | None, previous_eps: str | None) -> list[str]:
    """A larger budget that leaves more points robust is a sign of gradient masking."""
    if previous_robust is None or robust_acc <= previous_robust:
        return []
    return [f"robust-accuracy-rose-with-eps (from {previous_robust:.2%} at {previous_eps})"]
