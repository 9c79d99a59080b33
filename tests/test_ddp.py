"""Data-parallel training: `torchrun --nproc_per_node=2 -m course_lib train` (gloo, 2 CPU processes) gives the
same loss curve and the same weights as one process with the same global batch.

Why they can be equal: every rank draws the same global batch from the same seeded generator and
trains on its half (`course_lib.cli.shard_batch`); DDP averages the two half-batch gradients,
which is the gradient of the full batch; dropout is 0. What remains is float32 rounding (the
mean is summed in a different order), so we allow a relative difference of 1e-5 per logged loss
(measured: about 1e-7 after 10 steps) and 1e-5 absolute on the final weights.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from course_lib import cli

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = [
    "data.max_chars=50000", "data.val_chars=5000", "model.block_size=32", "model.n_layer=1", "model.d_model=32",
    "train.max_steps=10", "train.batch_size=8", "train.eval_every=5", "train.eval_steps=1", "train.warmup_steps=2",
    "train.max_seconds=null", "train.progress=false",
]
LOSS_RTOL = 1e-5  # relative, per step (float32, different summation order of the mean)
WEIGHT_ATOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args() -> list[str]:
    return [a for s in SETTINGS for a in ("--set", s)]


@pytest.mark.slow
def test_two_cpu_processes_match_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    cli.run("prepare", "gpt_char", SETTINGS, out=one, quiet=True)
    shutil.copytree(one / "prepared", two / "prepared")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COURSE_DEVICE": "cpu", "PYTHONPATH": str(ROOT)}
    env.pop("WORLD_SIZE", None)
    base = ["-m", "course_lib", "train", "--config", "gpt_char", *_args(), "--quiet"]
    single = subprocess.run([sys.executable, *base, "--out", str(one)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert single.returncode == 0, single.stderr[-3000:]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
              "--master_addr=127.0.0.1", f"--master_port={_free_port()}"]
    ddp = subprocess.run([*launch, *base, "--out", str(two)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=180)
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    h1 = json.loads((one / "history.json").read_text())
    h2 = json.loads((two / "history.json").read_text())
    assert h1["world_size"] == 1 and h2["world_size"] == 2
    l1, l2 = torch.tensor(h1["history"]["train_loss"]), torch.tensor(h2["history"]["train_loss"])
    assert len(l1) == len(l2) == 10
    assert l1[-1] < l1[0]  # it learns
    rel = ((l1 - l2).abs() / l1.abs()).max().item()
    assert rel < LOSS_RTOL, f"loss curves differ by {rel:.2e} (relative), more than {LOSS_RTOL}"
    v1, v2 = torch.tensor(h1["history"]["val_loss"]), torch.tensor(h2["history"]["val_loss"])
    assert torch.allclose(v1, v2, rtol=LOSS_RTOL, atol=0)
    w1, w2 = (load_file(str(d / "checkpoint" / "model.safetensors")) for d in (one, two))
    assert w1.keys() == w2.keys()
    for k in w1:
        assert torch.allclose(w1[k], w2[k], atol=WEIGHT_ATOL, rtol=0), k


def test_global_batch_must_divide(tmp_path):
    """shard_batch refuses a global batch that the processes cannot share evenly."""
    with pytest.raises(ValueError, match="divisible"):
        cli.shard_batch(torch.zeros(5, 3), 0, 2)
