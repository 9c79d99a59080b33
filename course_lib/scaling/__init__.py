"""Scaling laws on a laptop: train a grid of small GPTs, count their FLOPs, fit how loss falls.

What is here:
- `sweep`: the grid of GPTs on character-level Shakespeare (`SweepConfig`, `run_sweep`, `train_run`),
  their size N (`non_embedding_parameters`) and cost C (`flops_per_token`, checked by `counted_flops`).
- `fits`: power laws in one variable (`fit_power_law`) and the joint law L(N, D) = E + A/N^a + B/D^b
  (`fit_joint`), the compute-optimal size (`compute_optimal`) and IsoFLOP curves, written from scratch.

Leaves out: BPE data, learning-rate tuning per size, downstream tasks.

See notebook 12.
"""

from course_lib.scaling.fits import (
    CHINCHILLA_2022,
    KAPLAN_2020,
    FitError,
    JointFit,
    PowerLaw,
    bootstrap_joint,
    chinchilla_tokens_per_parameter,
    compute_optimal,
    fit_joint,
    fit_power_law,
    isoflop_curve,
)
from course_lib.scaling.sweep import (
    RunResult,
    SweepConfig,
    counted_flops,
    flops_per_token,
    gpt_config,
    non_embedding_parameters,
    run_sweep,
    shakespeare_ids,
    train_run,
)

__all__ = [
    "CHINCHILLA_2022",
    "KAPLAN_2020",
    "FitError",
    "JointFit",
    "PowerLaw",
    "bootstrap_joint",
    "chinchilla_tokens_per_parameter",
    "compute_optimal",
    "fit_joint",
    "fit_power_law",
    "isoflop_curve",
    "RunResult",
    "SweepConfig",
    "counted_flops",
    "flops_per_token",
    "gpt_config",
    "non_embedding_parameters",
    "run_sweep",
    "shakespeare_ids",
    "train_run",
]
