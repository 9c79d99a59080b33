"""The sweep: train a grid of small GPTs on character-level Shakespeare and record what each cost.

What is here:
- `SweepConfig`: the grid (model shapes x token budgets) and the one recipe every run shares.
- `gpt_config`: the `GPTConfig` of one shape; `non_embedding_parameters`: N, as the scaling laws count it.
- `flops_per_token`: training FLOPs per token, 6·N plus the attention term, written out;
  `counted_flops`: the same number measured by PyTorch's FLOP counter on one real step.
- `train_run`: one run of the grid -> a `RunResult` (validation loss, N, tokens D, FLOPs C, seconds).
- `run_sweep`: every run of the grid, one progress bar, results cached as JSON; a cache written
  with other settings is not reused (the sweep runs again and says why).

Leaves out: learning-rate tuning per size (one recipe for all), mixed precision, BPE data.

See notebook 12.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from course_lib.data import load_shakespeare
from course_lib.models import GPT, GPTConfig, count_parameters
from course_lib.tokenization import CharTokenizer
from course_lib.training import lm_batch, lr_at, make_optimizer, optimizer_step
from course_lib.utils import close_progress

__all__ = [
    "SweepConfig",
    "RunResult",
    "gpt_config",
    "non_embedding_parameters",
    "flops_per_token",
    "counted_flops",
    "shakespeare_ids",
    "train_run",
    "run_sweep",
]

HEAD_DIM = 16  # every shape uses heads of width 16, so n_head = d_model / 16


@dataclass(frozen=True)
class SweepConfig:
    """The grid and the shared recipe. Every field is part of the cache key."""

    shapes: tuple[tuple[int, int], ...] = ((1, 32), (2, 48), (2, 64), (3, 96), (4, 128))  # (n_layer, d_model)
    token_budgets: tuple[int, ...] = (262_144, 524_288, 1_048_576, 2_097_152)  # training tokens D per run
    block_size: int = 64  # context length T (characters)
    batch_size: int = 32  # windows per step: one step = batch_size * block_size tokens
    lr: float = 3e-3  # peak learning rate (AdamW), cosine decay to lr / 10 over the run
    warmup_frac: float = 0.05  # share of the steps spent warming up
    eval_windows: int = 512  # validation windows (evenly spaced over the 4 held-out plays)
    seed: int = 0  # the same seed for every run: same initial draw, same batches

    def __post_init__(self) -> None:
        shapes = tuple(tuple(s) for s in self.shapes)  # lists after a JSON round trip
        object.__setattr__(self, "shapes", shapes)
        object.__setattr__(self, "token_budgets", tuple(self.token_budgets))
        if not shapes or not self.token_budgets:
            raise ValueError(f"need at least one shape and one token budget, got {len(shapes)} and {len(self.token_budgets)}")
        for shape in shapes:
            if len(shape) != 2 or not all(_is_int(v) and v > 0 for v in shape):
                raise ValueError(f"each shape must be (n_layer, d_model) with positive ints, got {shape!r}")
            if shape[1] % HEAD_DIM:
                raise ValueError(f"d_model must be a multiple of the head width {HEAD_DIM}, got {shape[1]} in {shape!r}")
        for name in ("block_size", "batch_size", "eval_windows"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an int >= 1, got {getattr(self, name)!r}")
        step_tokens = self.batch_size * self.block_size
        for budget in self.token_budgets:
            if not _is_int(budget) or budget < step_tokens:
                raise ValueError(
                    f"each token budget must be an int of at least one step (batch_size * block_size = {step_tokens}), got {budget!r}"
                )
        if not (isinstance(self.lr, numbers.Real) and self.lr > 0):
            raise ValueError(f"lr must be a number > 0, got {self.lr!r}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac!r}")

    def runs(self) -> list[tuple[tuple[int, int], int]]:
        """Every (shape, token budget) of the grid, smallest compute first."""
        grid = [(s, d) for s in self.shapes for d in self.token_budgets]
        return sorted(grid, key=lambda run: (run[1], run[0]))

    def to_dict(self) -> dict:
        return {k: [list(s) for s in v] if k == "shapes" else list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


@dataclass
class RunResult:
    """What one run of the grid measured."""

    n_layer: int
    d_model: int
    params: int  # N: non-embedding parameters
    tokens: int  # D: training tokens seen
    flops: float  # C: training FLOPs, flops_per_token * D
    val_loss: float  # mean cross-entropy (nats per character) on the validation windows
    seconds: float  # wall time of the training steps (not the evaluation)
    train_loss: list[float] = field(default_factory=list)  # training loss, mean over each tenth of the run

    @property
    def name(self) -> str:
        return f"L{self.n_layer}-d{self.d_model}"


# ----------------------------------------------------------------------------- size and cost
def gpt_config(n_layer: int, d_model: int, vocab_size: int, block_size: int = 64, fused: bool = True) -> GPTConfig:
    """The GPT of one grid shape: heads of width 16, feed-forward 4 * d_model, tied embeddings, no dropout."""
    if d_model % HEAD_DIM:
        raise ValueError(f"d_model must be a multiple of {HEAD_DIM}, got {d_model}")
    return GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=d_model // HEAD_DIM,
                     d_model=d_model, dropout=0.0, fused=fused)


def non_embedding_parameters(model: GPT) -> int:
    """N: every parameter except the token and position embeddings (the tied output layer is the token
    embedding, so it is left out too). About 12 * n_layer * d_model**2."""
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a course_lib GPT, got {type(model).__name__}")
    return count_parameters(model) - model.tok_emb.weight.numel() - model.pos_emb.weight.numel()


def flops_per_token(config: GPTConfig) -> int:
    """Training FLOPs per token: 3 passes (forward + backward's two) x 2 FLOPs per multiply-add.

    forward, per token and layer:  2 * (4 d^2 + 2 d d_ff)   the Q, K, V, output and feed-forward matrices
                                 + 2 * 2 T d              the scores Q K^T and the weighted sum of V
    forward, per token, once:      2 d V                  the output layer
    training = 3 x forward, i.e. 6 * (weights that multiply) + 12 * n_layer * T * d.
    The attention term counts the full T x T matrix, as the kernel computes it (no causal saving).
    Biases, norms, softmax and GELU are left out: they are a few FLOPs per number, not per weight.
    """
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
    d, d_ff, L, T, V = config.d_model, config.d_ff or 4 * config.d_model, config.n_layer, config.block_size, config.vocab_size
    if config.activation == "swiglu":
        raise ValueError("flops_per_token counts the GELU/ReLU feed-forward (2 matrices); got activation='swiglu'")
    matmul_weights = L * (4 * d * d + 2 * d * d_ff) + d * V
    return 6 * matmul_weights + 12 * L * T * d


def counted_flops(config: GPTConfig, batch_size: int = 2) -> int:
    """FLOPs of one training step (forward + backward) of a `batch_size` x block_size batch, as counted by
    `torch.utils.flop_counter.FlopCounterMode` (matrix multiplications only). The model is built with the
    from-scratch attention (`fused=False`): PyTorch's counter does not see inside the CPU's fused kernel."""
    from torch.utils.flop_counter import FlopCounterMode

    model = GPT(dataclasses.replace(config, fused=False))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(config.vocab_size, (batch_size, config.block_size), generator=g)
    with FlopCounterMode(display=False) as counter:
        model(x, x).loss.backward()
    return int(counter.get_total_flops())


# ----------------------------------------------------------------------------- data
def shakespeare_ids() -> tuple[CharTokenizer, torch.Tensor, torch.Tensor]:
    """The character tokenizer of notebook 06 and the train / validation ids (34 plays / 4 held-out plays)."""
    tok = CharTokenizer.train(load_shakespeare("all"))
    ids = [torch.tensor(tok.encode(load_shakespeare(split)), dtype=torch.int16) for split in ("train", "val")]
    return tok, ids[0], ids[1]


def _eval_windows(val_ids: torch.Tensor, n: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` windows evenly spaced over the validation text: the same windows for every run."""
    starts = torch.linspace(0, len(val_ids) - block_size - 1, n).long()
    windows = val_ids[starts[:, None] + torch.arange(block_size + 1)].long()
    return windows[:, :-1], windows[:, 1:]


@torch.no_grad()
def _val_loss(model: GPT, windows: tuple[torch.Tensor, torch.Tensor], batch: int = 128) -> float:
    model.eval()
    x, y = windows
    total = sum(model(x[i:i + batch], y[i:i + batch]).loss.item() * len(x[i:i + batch]) for i in range(0, len(x), batch))
    model.train()
    return total / len(x)


# ----------------------------------------------------------------------------- one run, the grid
def train_run(shape: tuple[int, int], tokens: int, config: SweepConfig, train_ids: torch.Tensor,
              val_ids: torch.Tensor, vocab_size: int) -> RunResult:
    """Train one GPT of `shape` = (n_layer, d_model) on `tokens` training tokens with the shared recipe.

    The schedule (warm-up, then cosine decay to lr / 10) spans exactly this run's steps, as in Chinchilla:
    a run cut short from a longer schedule would understate what its budget can reach.
    """
    n_layer, d_model = shape
    cfg = gpt_config(n_layer, d_model, vocab_size, config.block_size)
    torch.manual_seed(config.seed)
    model = GPT(cfg)
    opt = make_optimizer(model, config.lr, 0.1, (0.9, 0.99))
    g = torch.Generator().manual_seed(config.seed)
    steps = tokens // (config.batch_size * config.block_size)
    warmup = int(config.warmup_frac * steps)
    losses = torch.zeros(steps)
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, config.lr, warmup)
        x, y = lm_batch(train_ids, config.batch_size, config.block_size, g)
        loss = model(x, y).loss
        optimizer_step(model, opt, loss, 1.0)
        losses[step] = loss.detach()  # no .item(): no wait for the value inside the loop
    seconds = time.perf_counter() - t0
    val = _val_loss(model, _eval_windows(val_ids, config.eval_windows, config.block_size))
    tenths = [float(chunk.mean()) for chunk in losses.chunk(10)]
    D = steps * config.batch_size * config.block_size
    return RunResult(n_layer, d_model, non_embedding_parameters(model), D, float(flops_per_token(cfg)) * D,
                     val, seconds, tenths)


def _load_cache(path: Path, config: SweepConfig) -> tuple[dict[str, dict], str | None]:
    """Cached results of `config`, keyed by run, and why a file was not used (None if it was, or absent)."""
    if not path.exists():
        return {}, None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        settings, runs = saved["settings"], saved["runs"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        return {}, f"{path} is not a sweep cache ({exc!r}); running the sweep again"
    if settings != config.to_dict():
        changed = sorted(k for k in set(settings) | set(config.to_dict()) if settings.get(k) != config.to_dict().get(k))
        return {}, f"{path} was written with other settings ({', '.join(changed)} differ); running the sweep again"
    return {r["key"]: r for r in runs}, None


def _key(shape: tuple[int, int], tokens: int) -> str:
    return f"L{shape[0]}-d{shape[1]}-D{tokens}"


def run_sweep(config: SweepConfig | None = None, cache: str | Path | None = None, progress: bool = True) -> list[RunResult]:
    """Train every run of the grid (smallest compute first) and return their results.

    With `cache`, results are read from and written to that JSON file after each run, so a re-run with the
    same settings is instant and an interrupted sweep continues where it stopped. A file written with other
    settings is not reused: the sweep runs again (and prints which settings differ) and overwrites it.
    """
    config = config or SweepConfig()
    if not isinstance(config, SweepConfig):
        raise TypeError(f"config must be a SweepConfig, got {type(config).__name__}")
    path = Path(cache) if cache is not None else None
    done, why = _load_cache(path, config) if path else ({}, None)
    if why:
        print(why)
    todo = [run for run in config.runs() if _key(*run) not in done]
    data = shakespeare_ids() if todo else None
    work = {run: run[1] * flops_per_token(gpt_config(*run[0], 1 if data is None else data[0].vocab_size, config.block_size))
            for run in todo}
    bar = tqdm(total=sum(work.values()), disable=not progress or not todo, desc="sweep", unit="FLOP", unit_scale=True)
    for run in todo:
        bar.set_postfix_str(_key(*run), refresh=True)
        tok, train_ids, val_ids = data
        result = train_run(run[0], run[1], config, train_ids, val_ids, tok.vocab_size)
        done[_key(*run)] = {"key": _key(*run), **dataclasses.asdict(result)}
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            ordered = [done[_key(*r)] for r in config.runs() if _key(*r) in done]
            saved = {"settings": config.to_dict(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                     "runs": ordered}
            path.write_text(json.dumps(saved, indent=1) + "\n", encoding="utf-8")
        bar.update(work[run])  # whole FLOPs: the bar ends exactly at its total
    close_progress(bar)
    fields = {f.name for f in dataclasses.fields(RunResult)}
    return [RunResult(**{k: v for k, v in done[_key(*r)].items() if k in fields}) for r in config.runs()]
