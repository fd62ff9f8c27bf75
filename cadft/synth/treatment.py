"""Medication at baseline and the values measured on it.

Treatment follows risk: prevalent CAD, diabetes, age and raised pre-treatment values make statins and
blood pressure drugs likelier (lipid-lowering ~16% overall), and the drugs lower what is measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cadft.synth.cohort import Baseline, logistic


@dataclass
class Treatment:
    lipid_lowering: np.ndarray
    bp_treated: np.ndarray
    insulin: np.ndarray
    hrt: np.ndarray  # women only
    oral_contraceptive: np.ndarray  # women only
    sbp: np.ndarray  # true (latent) on-treatment blood pressure; readings scatter around it
    dbp: np.ndarray
    ldl: np.ndarray
    total_chol: np.ndarray
    triglycerides: np.ndarray


def draw_treatment(b: Baseline, prevalent: np.ndarray, rng: np.random.Generator) -> Treatment:
    n, a = b.n, b.age - 56.0
    bp_treated = rng.random(n) < logistic(
        -2.0 + 0.045 * (b.sbp_pre - 137.0) + 0.065 * a + 0.06 * (b.bmi - 27.0) + 0.9 * b.diabetes + 1.8 * prevalent
    )
    lipid_lowering = rng.random(n) < logistic(
        -2.9 + 0.075 * a + 0.45 * b.male + 2.0 * b.diabetes + 0.8 * bp_treated + 3.2 * prevalent
        + 0.5 * (b.ldl_pre - 3.6) + 0.25 * b.family_heart
    )  # fmt: skip
    insulin = b.diabetes & (rng.random(n) < 0.18)
    hrt = b.female & (rng.random(n) < logistic(-2.6 + 0.04 * a - 0.004 * a**2 + 0.6 * (b.age > 50)))
    oral_contraceptive = b.female & (b.age < 52) & (rng.random(n) < 0.04)

    sbp = b.sbp_pre - bp_treated * rng.normal(7.0, 4.0, n)
    dbp = b.dbp_pre - bp_treated * rng.normal(3.5, 2.5, n)
    ldl_drop = lipid_lowering * np.clip(rng.normal(0.38, 0.1, n), 0.05, 0.65) * b.ldl_pre
    tg_factor = 1.0 - 0.1 * lipid_lowering
    ldl = b.ldl_pre - ldl_drop
    triglycerides = b.triglycerides_pre * tg_factor
    total_chol = b.total_chol_pre - ldl_drop - (b.triglycerides_pre - triglycerides) / 2.2
    return Treatment(
        lipid_lowering=lipid_lowering, bp_treated=bp_treated, insulin=insulin, hrt=hrt,
        oral_contraceptive=oral_contraceptive, sbp=sbp, dbp=dbp, ldl=ldl, total_chol=total_chol,
        triglycerides=triglycerides,
    )  # fmt: skip
