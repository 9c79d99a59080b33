"""Training: a loop you can read in one screen, its learning-rate schedule, and checkpoints.

What is here:
- `TrainConfig`: every knob of the loop, one comment per field.
- `lm_batch`: random (B, T) windows of a 1-D token tensor for language modelling (seeded).
- `lr_at`: linear warm-up then a cosine (or linear) decay; `decayed_lr`, the decay alone.
- `make_optimizer`: AdamW with weight decay on matrices only (not on biases and norms).
- `optimizer_step`: one update (zero the gradients, backward, clip, step), shared by the scripts.
- `train`: the loop (AdamW, schedule, gradient clipping, step and wall-clock budgets, periodic
  evaluation, one `tqdm.auto` progress bar, optional checkpoints and resume) -> `History`.
- `History`: losses per step with wall-clock time, `.plot()`.
- `save_checkpoint` / `load_checkpoint`: `model.safetensors` + `config.json` (+ optimizer state
  in `optimizer.safetensors` and `trainer_state.json`), never pickle.

The loop works with any model whose forward returns the loss: `model(*batch)` for a tuple batch
or `model(**batch)` for a dict, giving an object with `.loss` or a tuple `(logits, loss)`.
A batch may also be a list of micro-batches (one batch cut in pieces: see `compute_loss`).
Leaves out: mixed precision, gradient accumulation over steps, distributed training. See notebooks 05-11.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import time
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from tqdm.auto import tqdm

from course_lib.utils import close_progress

__all__ = [
    "TrainConfig",
    "History",
    "lm_batch",
    "lr_at",
    "decayed_lr",
    "make_optimizer",
    "compute_loss",
    "optimizer_step",
    "evaluate",
    "train",
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_exists",
    "shard_batch",
]


@dataclass
class TrainConfig:
    """Settings of `train`. See notebook 06."""

    max_steps: int = 1000  # optimizer steps to run (the step budget)
    max_seconds: float | None = None  # wall-clock budget in seconds; None = no limit
    lr: float = 1e-3  # peak learning rate, reached at the end of warm-up
    min_lr: float | None = None  # learning rate at the end of the decay; None = lr / 10
    decay: str = "cosine"  # shape of the decay after warm-up: "cosine" or "linear"
    warmup_steps: int = 100  # linear warm-up: step s < warmup_steps uses lr * (s + 1) / warmup_steps
    weight_decay: float = 0.1  # AdamW decoupled weight decay (matrices only)
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW moment decay rates
    grad_clip: float | None = 1.0  # clip the global gradient norm to this; None = no clipping
    eval_every: int = 200  # evaluate every this many steps (and at the end); 0 = never
    eval_steps: int = 20  # validation batches averaged per evaluation
    log_every: int = 1  # record the training loss every this many steps
    checkpoint_dir: str | None = None  # where to save checkpoints; None = do not save
    checkpoint_every: int = 0  # save every this many steps (and at the end); 0 = only at the end
    resume: bool = False  # continue from checkpoint_dir if a checkpoint is there
    progress: bool = True  # show a tqdm progress bar
    seed: int | None = None  # seed torch before training (None = leave the RNG alone)

    def __post_init__(self) -> None:
        for name in ("lr", "min_lr", "weight_decay", "grad_clip", "max_seconds"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise TypeError(f"{name} must be a number{'' if name == 'lr' else ' or None'}, got {type(value).__name__}: {value!r}")
        for name in ("max_steps", "warmup_steps", "eval_every", "eval_steps", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
        if not isinstance(self.max_steps, int) or self.max_steps < 0:
            raise ValueError(f"max_steps must be an int >= 0, got {self.max_steps!r}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0 or None, got {self.max_seconds!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.warmup_steps < 0 or self.eval_every < 0 or self.eval_steps < 1 or self.log_every < 1:
            raise ValueError(
                f"need warmup_steps >= 0, eval_every >= 0, eval_steps >= 1, log_every >= 1; got "
                f"{self.warmup_steps}, {self.eval_every}, {self.eval_steps}, {self.log_every}"
            )
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be between 0 and lr = {self.lr} (or None for lr / 10), got {self.min_lr!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every!r}")
        betas = tuple(self.betas) if isinstance(self.betas, (tuple, list)) else None
        if betas is None or len(betas) != 2 or not all(isinstance(b, numbers.Real) and 0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))  # a tuple again after a JSON round trip
        _check_decay(self.decay)


@dataclass
class History:
    """What happened during training: losses per step with the wall-clock time (seconds)."""

    steps: list[int] = field(default_factory=list)  # steps where the training loss was recorded
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)  # seconds since the start of training
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_time: list[float] = field(default_factory=list)
    tokens_seen: int = 0  # number of input elements processed (B * T summed over steps)
    seconds: float = 0.0  # total training time
    stopped_by: str = ""  # "max_steps" or "max_seconds"

    @property
    def last_val_loss(self) -> float:
        return self.val_loss[-1] if self.val_loss else float("nan")

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_seen / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}})

    def plot(self, ax: Any = None, smooth: int = 20, log_y: bool = False) -> Any:
        """Plot the training loss (raw and moving average over `smooth` points) and the validation loss."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        if self.train_loss:
            ax.plot(self.steps, self.train_loss, alpha=0.3, color="C0", label="train (per step)")
            if smooth > 1 and len(self.train_loss) >= smooth:
                t = torch.tensor(self.train_loss)
                avg = t.unfold(0, smooth, 1).mean(-1)
                ax.plot(self.steps[smooth - 1 :], avg.tolist(), color="C0", label=f"train (mean of {smooth})")
        if self.val_loss:
            ax.plot(self.val_steps, self.val_loss, "o-", color="C1", label="validation")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats per token)")
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        return ax

    def __repr__(self) -> str:
        last = f"{self.train_loss[-1]:.4f}" if self.train_loss else "-"
        return (
            f"History(steps={self.steps[-1] if self.steps else 0}, last train loss={last}, "
            f"last val loss={self.last_val_loss:.4f}, {self.seconds:.1f} s, {self.tokens_per_second:,.0f} tokens/s)"
        )


# ----------------------------------------------------------------------------- data and schedule
def lm_batch(
    data: torch.Tensor,
    batch_size: int,
    block_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample `batch_size` random windows of `data` (1-D ids): x (B, T) and y = x shifted by one (B, T).

    >>> x, y = lm_batch(torch.arange(10), 2, 4, torch.Generator().manual_seed(0)); bool((y == x + 1).all())
    True

    See notebook 06.
    """
    if not isinstance(data, torch.Tensor) or data.dim() != 1:
        raise ValueError(f"data must be a 1-D tensor of token ids, got {type(data).__name__} {tuple(getattr(data, 'shape', ()))}")
    for name, value in (("batch_size", batch_size), ("block_size", block_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if len(data) < block_size + 1:
        raise ValueError(f"data has {len(data)} tokens, need at least block_size + 1 = {block_size + 1}")
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,) window starts
    offsets = torch.arange(block_size + 1)  # (T + 1,)
    windows = data[ix[:, None] + offsets].long()  # (B, T + 1)
    x, y = windows[:, :-1], windows[:, 1:]
    if device is not None:
        x, y = x.to(device), y.to(device)
    return x, y


DECAYS = ("cosine", "linear")


def _check_decay(decay: str) -> None:
    if decay not in DECAYS:
        raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}")


def decayed_lr(progress: float, lr: float, min_lr: float, decay: str = "cosine") -> float:
    """Learning rate `progress` (0 -> 1) of the way through the decay from `lr` to `min_lr`.

    "cosine" stays near `lr` longer and flattens out near `min_lr`; "linear" goes down at a constant rate.

    >>> decayed_lr(0.5, 1.0, 0.0), decayed_lr(0.25, 1.0, 0.0, "linear"), round(decayed_lr(0.25, 1.0, 0.0), 3)
    (0.5, 0.75, 0.854)
    """
    _check_decay(decay)
    progress = min(1.0, max(0.0, progress))
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if decay == "cosine" else 1.0 - progress
    return min_lr + shape * (lr - min_lr)


def lr_at(
    step: int, max_steps: int, lr: float, warmup_steps: int = 0, min_lr: float | None = None, decay: str = "cosine"
) -> float:
    """Learning rate at `step`: linear warm-up to `lr`, then a cosine (or linear) decay to `min_lr` (default lr/10).

    >>> [round(lr_at(s, 100, 1.0, warmup_steps=10), 3) for s in (0, 9, 55, 100)]
    [0.1, 1.0, 0.55, 0.1]
    >>> [round(lr_at(s, 100, 1.0, warmup_steps=10, min_lr=0.0, decay="linear"), 3) for s in (10, 55, 100)]
    [1.0, 0.5, 0.0]
    """
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    if not lr > 0 or (min_lr is not None and not 0 <= min_lr <= lr):
        raise ValueError(f"need lr > 0 and 0 <= min_lr <= lr, got lr={lr!r}, min_lr={min_lr!r}")
    min_lr = lr / 10 if min_lr is None else min_lr
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    return decayed_lr((step - warmup_steps) / max(1, max_steps - warmup_steps), lr, min_lr, decay)


def make_optimizer(
    model: torch.nn.Module, lr: float = 1e-3, weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.99)
) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and embeddings (dim >= 2) only, not on biases or norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    # The fused kernel is much faster on CPU and GPU; fall back if this device/dtype lacks it.
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr, betas=betas)


# ----------------------------------------------------------------------------- loss and evaluation
def compute_loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    """Run `model` on `batch` (tuple -> model(*batch), dict -> model(**batch)) and return the loss.

    A `list` of dict batches is one batch cut into micro-batches (for example by length, so that
    each pads less, see `course_lib.pronunciation.G2PBatches`): their losses are averaged, each
    weighted by its number of labelled tokens (`labels != -100`), which gives the loss (and, after
    `backward`, the gradient) of the whole batch.
    """
    if isinstance(batch, list):
        if not batch or not all(isinstance(b, dict) and "labels" in b for b in batch):
            raise ValueError("a list batch must be a non-empty list of micro-batch dicts, each with 'labels'")
        counts = [(b["labels"] != -100).sum() for b in batch]
        total = sum(counts)
        return sum(compute_loss(model, b) * (n / total) for b, n in zip(batch, counts))
    out = model(**batch) if isinstance(batch, dict) else model(*batch)
    loss = out.loss if hasattr(out, "loss") else (out[1] if isinstance(out, (tuple, list)) else out)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise ValueError(
            "the model did not return a scalar loss: give it targets/labels in the batch "
            f"(got {type(loss).__name__} {tuple(getattr(loss, 'shape', ()))})"
        )
    return loss


def _batches(source: Callable[[], Any] | Iterable) -> Callable[[], Any]:
    """A zero-argument function giving the next batch, from a function or a (cycled) iterable."""
    if callable(source) and not hasattr(source, "__iter__"):
        return source
    if not isinstance(source, Iterable):
        raise TypeError(f"batches must be a function giving a batch or an iterable of batches, got {type(source).__name__}")
    it = cycle(source)  # note: cycle replays the first pass; use a function for fresh shuffles

    def next_batch() -> Any:
        try:
            return next(it)
        except StopIteration:
            raise ValueError("the iterable of training batches is empty: give at least one batch") from None

    return next_batch


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Callable[[], Any] | Iterable, steps: int = 20) -> float:
    """Mean loss over `steps` batches, in eval mode (no dropout), without gradients."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not callable(batches) and not isinstance(batches, Iterable):
        raise TypeError(f"batches must be a function giving a batch or an iterable of batches, got {type(batches).__name__}")
    was_training = model.training
    model.eval()
    try:
        if callable(batches) and not hasattr(batches, "__iter__"):
            losses = [compute_loss(model, batches()).item() for _ in range(steps)]
        else:
            losses = [compute_loss(model, b).item() for b, _ in zip(batches, range(steps))]
    finally:
        model.train(was_training)
    if not losses:
        raise ValueError("evaluate got an empty iterable of batches: give at least one batch")
    return sum(losses) / len(losses)


def _n_tokens(batch: Any) -> int:
    if isinstance(batch, list):  # micro-batches
        return sum(_n_tokens(b) for b in batch)
    first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    return first.numel() if isinstance(first, torch.Tensor) else 0


# ----------------------------------------------------------------------------- the loop
def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   grad_clip: float | None = 1.0) -> None:
    """One update: clear the old gradients, backpropagate `loss`, clip the global gradient norm
    to `grad_clip` (None: no clipping), take the optimizer's step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def train(
    model: torch.nn.Module,
    train_batches: Callable[[], Any] | Iterable,
    config: TrainConfig | None = None,
    val_batches: Callable[[], Any] | Iterable | None = None,
    eval_fn: Callable[[torch.nn.Module], float] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    history: History | None = None,
) -> History:
    """Train `model` on batches from `train_batches` (a function returning a batch, or an iterable).

    Evaluates every `config.eval_every` steps with `eval_fn(model)` or, if none, the mean loss on
    `config.eval_steps` batches of `val_batches`. Stops at `max_steps` or after `max_seconds`.
    >>> # hist = train(gpt, lambda: lm_batch(train_ids, 12, 64), TrainConfig(max_steps=2000)); hist.plot()

    See notebook 06.
    """
    cfg = config or TrainConfig()
    if cfg.seed is not None:
        torch.manual_seed(cfg.seed)
    next_batch = _batches(train_batches)
    opt = optimizer or make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas)
    hist, step = history or History(), 0
    if cfg.resume and cfg.checkpoint_dir and checkpoint_exists(cfg.checkpoint_dir):
        info = load_checkpoint(cfg.checkpoint_dir, model, optimizer=opt)
        step, hist = info["step"], History.from_dict(info["extra"].get("history", {}))

    def run_eval() -> None:
        if eval_fn is None and val_batches is None:
            return
        val = eval_fn(model) if eval_fn is not None else evaluate(model, val_batches, cfg.eval_steps)
        hist.val_steps.append(step), hist.val_loss.append(float(val)), hist.val_time.append(hist.seconds)
        bar.set_postfix(loss=f"{hist.train_loss[-1]:.3f}" if hist.train_loss else "-", val=f"{val:.3f}", refresh=False)

    model.train()
    t0 = time.perf_counter() - hist.seconds
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not cfg.progress, mininterval=1.0, desc="train", unit="step")
    hist.stopped_by = "max_steps"
    while step < cfg.max_steps:
        lr = lr_at(step, cfg.max_steps, cfg.lr, cfg.warmup_steps, cfg.min_lr, cfg.decay)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = next_batch()
        loss = compute_loss(model, batch)
        optimizer_step(model, opt, loss, cfg.grad_clip)
        step += 1
        hist.tokens_seen += _n_tokens(batch)
        hist.seconds = time.perf_counter() - t0
        if step % cfg.log_every == 0:
            hist.steps.append(step), hist.train_loss.append(loss.item()), hist.lr.append(lr), hist.time.append(hist.seconds)
        bar.update(1)
        if step % 50 == 0 and hist.train_loss:
            shown = {"loss": f"{hist.train_loss[-1]:.3f}"} | ({"val": f"{hist.last_val_loss:.3f}"} if hist.val_loss else {})
            bar.set_postfix(shown, refresh=False)
        if cfg.eval_every and step % cfg.eval_every == 0:
            run_eval()
        if cfg.checkpoint_dir and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            save_checkpoint(cfg.checkpoint_dir, model, optimizer=opt, step=step, extra={"history": hist.to_dict()})
        if cfg.max_seconds is not None and hist.seconds >= cfg.max_seconds:
            hist.stopped_by = "max_seconds"
            break
    if not hist.val_steps or hist.val_steps[-1] != step:
        run_eval()  # always end with a validation number
    close_progress(bar)
    if cfg.checkpoint_dir:
        save_checkpoint(cfg.checkpoint_dir, model, optimizer=opt, step=step, extra={"history": hist.to_dict()})
    model.eval()
    return hist


# ----------------------------------------------------------------------------- checkpoints
MODEL_FILE, CONFIG_FILE = "model.safetensors", "config.json"
OPTIMIZER_FILE, STATE_FILE = "optimizer.safetensors", "trainer_state.json"


def checkpoint_exists(path: str | Path) -> bool:
    """True if `path` holds a checkpoint (model.safetensors and config.json)."""
    p = Path(path)
    return (p / MODEL_FILE).is_file() and (p / CONFIG_FILE).is_file()


def _config_dict(config: Any) -> dict:
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    if isinstance(config, dict):
        return dict(config)
    raise TypeError(f"config must be a dataclass or a dict, got {type(config).__name__}")


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    config: Any = None,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    extra: dict | None = None,
) -> Path:
    """Save `model` to folder `path`: model.safetensors + config.json (+ optimizer state for resume).

    `config` defaults to `model.config` (a dataclass). Tied (shared) weights are stored once.
    `extra` must be JSON-serialisable (e.g. a History as dict). See notebook 06.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = model.config if config is None else config
    save_model(model, str(path / MODEL_FILE))  # handles shared (tied) tensors
    meta = {"model_class": type(model).__name__, "config": _config_dict(config)}
    (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    state: dict = {"step": int(step), "extra": extra or {}}
    if optimizer is not None:
        sd = optimizer.state_dict()
        tensors = {
            f"{i}.{name}": (v if isinstance(v, torch.Tensor) else torch.tensor(v)).detach().cpu().contiguous()
            for i, s in sd["state"].items()
            for name, v in s.items()
        }
        save_file(tensors, str(path / OPTIMIZER_FILE))
        state["optimizer_param_groups"] = sd["param_groups"]
        state["optimizer_class"] = type(optimizer).__name__
    (path / STATE_FILE).write_text(json.dumps(state, indent=2, default=float))
    return path


def _mismatch(saved: dict, expected: dict) -> list[str]:
    keys = sorted(set(saved) | set(expected))
    out = []
    for k in keys:
        if k not in saved:
            out.append(f"{k} (missing in checkpoint)")
        elif k not in expected:
            out.append(f"{k} (unknown to the model)")
        elif _jsonable(saved[k]) != _jsonable(expected[k]):
            out.append(f"{k} (checkpoint {saved[k]!r} != model {expected[k]!r})")
    return out


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v))


def _damaged(file: Path, exc: Exception) -> ValueError:
    return ValueError(f"{file} is damaged or was not written by save_checkpoint ({type(exc).__name__}: {exc})")


def _read_json(file: Path) -> dict:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(file, exc) from None
    if not isinstance(value, dict):
        raise _damaged(file, TypeError(f"expected a JSON object, got {type(value).__name__}"))
    return value


def _read_safetensors(file: Path, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:  # a bad header, a short file, bad bytes
        raise _damaged(file, exc) from None


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module | type,
    optimizer: torch.optim.Optimizer | None = None,
    map_location: str | torch.device = "cpu",
) -> dict:
    """Load a checkpoint saved by `save_checkpoint` into a model instance, or build one from a model class.

    Raises ValueError listing every mismatched config key. Returns a dict with "model", "config",
    "step" and "extra" (and restores the optimizer state if `optimizer` is given).
    >>> # info = load_checkpoint("ckpt/", GPT); gpt = info["model"]
    """
    path = Path(path)
    if not checkpoint_exists(path):
        raise FileNotFoundError(f"no checkpoint in {path}: expected {MODEL_FILE} and {CONFIG_FILE}")
    meta = _read_json(path / CONFIG_FILE)
    saved = meta.get("config", {})
    if isinstance(model, type):
        config_cls = getattr(model, "config_class", None)
        if config_cls is None:
            raise TypeError(f"{model.__name__} has no `config_class`; pass a model instance instead")
        names = {f.name for f in dataclasses.fields(config_cls)}
        bad = [f"{k} (unknown to {config_cls.__name__})" for k in sorted(set(saved) - names)]
        if bad:
            raise ValueError(f"checkpoint config does not match {config_cls.__name__}: mismatched keys: {', '.join(bad)}")
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items()}
        model = model(config_cls(**kwargs))
    else:
        bad = _mismatch(saved, _config_dict(model.config))
        if bad:
            raise ValueError(
                f"checkpoint config in {path / CONFIG_FILE} does not match the model's config; "
                f"mismatched keys: {'; '.join(bad)}"
            )
    missing, unexpected = _read_safetensors(
        path / MODEL_FILE, lambda: load_model(model, str(path / MODEL_FILE), strict=False, device=str(map_location))
    )
    if missing or unexpected:
        raise ValueError(f"checkpoint weights do not match the model: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    state = _read_json(path / STATE_FILE) if (path / STATE_FILE).is_file() else {"step": 0, "extra": {}}
    if optimizer is not None:
        if not (path / OPTIMIZER_FILE).is_file():
            raise FileNotFoundError(f"no optimizer state in {path} (was it saved with optimizer=...?)")
        tensors = _read_safetensors(path / OPTIMIZER_FILE, lambda: load_file(str(path / OPTIMIZER_FILE)))
        opt_state: dict = {}
        for key, t in tensors.items():
            i, name = key.split(".", 1)
            opt_state.setdefault(int(i), {})[name] = t
        groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in state["optimizer_param_groups"]]
        optimizer.load_state_dict({"state": opt_state, "param_groups": groups})  # betas: a tuple again (JSON made a list)
    return {"model": model, "config": model.config, "step": state["step"], "extra": state.get("extra", {})}


# ----------------------------------------------------------------------------- data-parallel training
def shard_batch(batch: Any, rank: int, world_size: int) -> Any:
    """The rows of the global `batch` that process `rank` of `world_size` trains on (contiguous slices).

    Works on a tensor (B, ...), a tuple/list of tensors or a dict of tensors; B must divide evenly.
    >>> shard_batch(torch.arange(6).view(6, 1), rank=1, world_size=3).flatten().tolist()
    [2, 3]
    The command line's data-parallel training uses it (`course_lib.cli`). See notebook 11.
    """
    if not isinstance(world_size, int) or world_size < 1 or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}")
    if isinstance(batch, dict):
        return {k: shard_batch(v, rank, world_size) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard_batch(v, rank, world_size) for v in batch)
    if not isinstance(batch, torch.Tensor):
        raise TypeError(f"batch must be a tensor, a tuple/list or a dict of tensors, got {type(batch).__name__}")
    B = batch.size(0)
    if B % world_size:
        raise ValueError(f"the global batch size {B} must be divisible by the number of processes {world_size}")
    n = B // world_size
    return batch[rank * n : (rank + 1) * n]
