"""The attacks of an evaluation, made sound for the model they will face.

For a randomised model an attack must average its gradients over the model's draws (EOT):
gradients of a single draw point towards an example that fools that draw only. robench makes
the change itself where the attack has EOT (AutoAttack's 'rand' version replaces 'standard'
and 'plus'; APGD in version 'custom', pgd, cw, fgsm and the APGD components draw 20 times per
gradient) and refuses what has none (apgd-t, fab-t, square, FAB in a custom AutoAttack), or
runs it, when asked with --allow-non-eot, flagged `not-eot-sound`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from robench.attacks import Attack, create_attack
from robench.config import EvalConfig
from robench.errors import UserError
from robench.registry import ATTACKS

# Draws per gradient for EOT on a randomised model, as in AutoAttack's 'rand' version.
EOT_DRAWS = 20
NOT_EOT_SOUND = "not-eot-sound"


@dataclass
class Plan:
    attacks: list[Attack]
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


def _eot_params(name: str, params: dict, notes: list[str]) -> dict:
    """The parameters that give `name` EOT, where the user did not set them otherwise."""
    fields_ = {f.name for f in dataclasses.fields(ATTACKS.get(name).params_cls)}
    if name == "autoattack":
        version = params.get("version", "standard")
        if version in ("standard", "plus"):
            notes.append("the model is randomised: AutoAttack's 'rand' version (APGD-CE and "
                         "APGD-DLR, EOT over 20 draws) replaces the standard version")
            return {**params, "version": "rand"}
        if version == "custom" and "eot_iter" not in params:
            notes.append(f"the model is randomised: APGD in the custom AutoAttack averages "
                         f"gradients over {EOT_DRAWS} draws (EOT)")
            return {**params, "eot_iter": EOT_DRAWS}
        return params
    if "eot_iter" in fields_ and "eot_iter" not in params:
        notes.append(f"the model is randomised: {name} averages gradients over {EOT_DRAWS} "
                     f"draws (EOT)")
        return {**params, "eot_iter": EOT_DRAWS}
    return params


def plan_attacks(cfg: EvalConfig, eps: float, *, stochastic: bool) -> Plan:
    """The attacks at one eps; every name and parameter is checked here, before any work."""
    plan = Plan(attacks=[])
    for name in cfg.attacks:
        params = dict(cfg.params.get(name, {}))
        if stochastic:
            params = _eot_params(name, params, plan.notes)
        attack = create_attack(name, norm=cfg.norm, eps=eps, seed=cfg.seed, params=params)
        if getattr(attack, "batches_itself", False):
            attack.batch_size = cfg.batch_size  # AutoAttack batches (and reseeds) itself
        if stochastic:
            _check_eot(attack, cfg, plan)
        plan.attacks.append(attack)
    return plan


def _check_eot(attack: Attack, cfg: EvalConfig, plan: Plan) -> None:
    gaps = attack.without_eot()
    if not gaps:
        return
    what = ", ".join(gaps)
    if not cfg.allow_non_eot:
        raise UserError(
            f"the model is randomised and attack {attack.name!r} would run {what} without "
            f"EOT (no averaging of gradients over the model's draws), so its number would not "
            f"be sound; use autoattack (robench runs its 'rand' version), pgd, cw, fgsm, "
            f"apgd-ce or apgd-dlr (20 draws per gradient), or pass --allow-non-eot to run it "
            f"flagged '{NOT_EOT_SOUND}'.")
    plan.flags.append(NOT_EOT_SOUND)
    plan.notes.append(f"the model is randomised and {what} ran without EOT (--allow-non-eot): "
                      f"this robust accuracy is not EOT-sound")
