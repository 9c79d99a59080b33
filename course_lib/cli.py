"""The course's command line: prepare data, train, evaluate and generate, each driven by one small config file.

    python -m course_lib prepare  --config course_lib/project_configs/gpt_char.json
    python -m course_lib train    --config course_lib/project_configs/gpt_char.json --set train.max_steps=300
    python -m course_lib evaluate --config course_lib/project_configs/gpt_char.json
    python -m course_lib generate --config course_lib/project_configs/gpt_char.json --set generate.prompt="ROMEO:"
    torchrun --nproc_per_node=2 -m course_lib train --config course_lib/project_configs/gpt_char.json

What is here:
- `load_config`: read a JSON (or TOML) config, apply `--set section.key=value` overrides, fill the
  defaults and validate every key: an unknown key, a wrong type or a missing file raises
  `ConfigError` naming the key, the expected type and the given value.
- three tasks, one per model of the course: `gpt` (a GPT on Shakespeare, char or BPE tokens),
  `bert_mlm` (a tiny BERT pretrained with masked-language modelling on IMDB reviews) and `g2p`
  (the encoder-decoder Transformer from spelling to pronunciation, CMU dictionary);
- `evaluate` scores a run on held-out data: the GPT's perplexity on validation characters, the tiny
  BERT's masked-token accuracy beside the always-the-most-frequent-token baseline, the G2P model's
  WER / PER / BLEU on the prepared validation words or, with `--set evaluate.split=test`, on the
  dictionary's test words as notebook 07 and `benchmarks/train_g2p.py` score them;
- `run(command, config, ...)`: the Python entry point behind every subcommand (notebook 11 calls
  it); `main(argv)`: the command line, printing `error: ...` (exit status 2) instead of a traceback;
- data parallelism (DistributedDataParallel): under `torchrun`, `train` starts one process per
  device (gloo on CPU, nccl on CUDA GPUs). Every rank draws the same global batch from the same
  seeded generator and keeps its own rows (`shard_batch`), so N processes see exactly the data
  one process sees with the same global batch. The logged loss is the mean over all ranks.

A run folder (default `data/runs/<name>/`) holds `prepared/` (tokenizer + token ids),
`checkpoint/` (model.safetensors + config.json), `history.json`, `eval.json` and the resolved
`config.json`. Leaves out: gradient accumulation, mixed precision, multi-node launch details,
sharded (FSDP) training, and a stop-on-time budget under DDP (ranks must agree on the step count).
See notebook 11.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from course_lib.training import shard_batch  # re-exported: `course_lib.cli.shard_batch` keeps working

__all__ = [
    "ConfigError",
    "CONFIG_DIR",
    "TASKS",
    "COMMANDS",
    "config_path",
    "parse_override",
    "load_config",
    "shard_batch",
    "run",
    "main",
]

#: The folder of the course's packaged configs (gpt_char.json, tiny_bert.json, g2p.json).
CONFIG_DIR = Path(__file__).resolve().parent / "project_configs"
_ROOT = Path(__file__).resolve().parent.parent
RUNS_DIR = _ROOT / "data" / "runs"
COMMANDS = ("prepare", "train", "evaluate", "generate")


class ConfigError(ValueError):
    """A config file or override that cannot be used: names the key, the expected type and the given value."""


# ============================================================================= the schema
# Each key: (type, default). Types: "int", "float", "str", "bool", "list[str]", optionally "|null".
_TRAIN = {
    "max_steps": ("int", 200),  # optimizer steps (the step budget)
    "max_seconds": ("float|null", None),  # wall-clock safety cap (ignored under DDP)
    "batch_size": ("int", 32),  # GLOBAL batch: split across the processes under torchrun
    "lr": ("float", 1e-3),  # peak learning rate
    "min_lr": ("float|null", None),  # end of the cosine; None = lr / 10
    "warmup_steps": ("int", 20),
    "weight_decay": ("float", 0.1),
    "grad_clip": ("float|null", 1.0),
    "eval_every": ("int", 100),  # 0 = only at the end
    "eval_steps": ("int", 5),  # validation batches per evaluation
    "seed": ("int", 1337),
    "progress": ("bool", True),
}
_SCHEMAS: dict[str, dict[str, dict[str, tuple[str, Any]]]] = {
    "gpt": {
        "data": {
            "corpus": ("str", "shakespeare"),  # only Shakespeare for now
            "max_chars": ("int|null", 1_000_000),  # characters of the training split used (None = all 4.2M)
            "val_chars": ("int|null", 100_000),  # characters of the validation split used
        },
        "tokenizer": {
            "kind": ("str", "char"),  # "char" or "bpe"
            "vocab_size": ("int", 512),  # only for "bpe"
            "train_chars": ("int", 200_000),  # characters the BPE merges are learned from
        },
        "train": dict(_TRAIN),
        "evaluate": {"batches": ("int", 20), "batch_size": ("int", 32), "seed": ("int", 0)},
        "generate": {
            "prompt": ("str", "ROMEO:\n"),
            "max_new_tokens": ("int", 200),
            "temperature": ("float", 0.8),
            "top_k": ("int|null", None),
            "top_p": ("float|null", None),
            "greedy": ("bool", False),
            "seed": ("int", 0),
        },
    },
    "bert_mlm": {
        "data": {
            "corpus": ("str", "imdb"),
            "max_reviews": ("int", 2000),  # training reviews used
            "val_reviews": ("int", 200),
        },
        "tokenizer": {
            "kind": ("str", "bpe"),  # byte-level BPE with BERT's special tokens
            "vocab_size": ("int", 1000),
            "train_chars": ("int", 300_000),
        },
        "train": {**_TRAIN, "mask_prob": ("float", 0.15), "lr": ("float", 5e-4)},
        "evaluate": {"batches": ("int", 10), "batch_size": ("int", 32), "seed": ("int", 0)},
        "generate": {"text": ("str", "this movie was [MASK] and i loved it."), "top_k": ("int", 5)},
    },
    "g2p": {
        "data": {
            "max_train_pairs": ("int|null", 20_000),  # (word, pronunciation) pairs used (None = all)
            "val_words": ("int", 500),  # held-out words scored by `evaluate`
        },
        "tokenizer": {"kind": ("str", "letters-phonemes")},  # fixed vocabularies (course_lib.pronunciation)
        "train": {**_TRAIN, "batch_size": ("int", 64)},
        # split "val": the prepared validation sample; "test": the CMU dictionary's test words, sorted, as
        # notebook 07 and benchmarks/train_g2p.py score them. words: how many (null = all; fewer = evenly spaced).
        "evaluate": {"split": ("str", "val"), "words": ("int|null", 500), "beam_size": ("int", 1)},
        "generate": {"words": ("list[str]", ["hello", "world", "transformer"]), "beam_size": ("int", 1)},
    },
}
TASKS = tuple(_SCHEMAS)
_CHOICES = {
    ("gpt", "data", "corpus"): ("shakespeare",),
    ("gpt", "tokenizer", "kind"): ("char", "bpe"),
    ("bert_mlm", "data", "corpus"): ("imdb",),
    ("bert_mlm", "tokenizer", "kind"): ("bpe",),
    ("g2p", "tokenizer", "kind"): ("letters-phonemes",),
    ("g2p", "evaluate", "split"): ("val", "test"),
}
# Model keys the data decides (set from the tokenizer), so a config may not set them.
_DERIVED = {
    "gpt": {"vocab_size"},
    "bert_mlm": {"vocab_size", "pad_id", "num_labels"},
    "g2p": {"src_vocab_size", "tgt_vocab_size"},
}


def _model_config_class(task: str) -> type:
    from course_lib.models import BertConfig, EncoderDecoderConfig, GPTConfig

    return {"gpt": GPTConfig, "bert_mlm": BertConfig, "g2p": EncoderDecoderConfig}[task]


def _model_schema(task: str) -> dict[str, tuple[str, Any]]:
    """Model keys = the fields of the model's config dataclass (types read from their annotations)."""
    cls = _model_config_class(task)
    out: dict[str, tuple[str, Any]] = {}
    for f in dataclasses.fields(cls):
        if f.name in _DERIVED[task] or f.name == "PRESETS":
            continue
        ann = str(f.type).replace(" ", "").replace("None", "null")
        out[f.name] = (ann, None)
    if task != "g2p":
        out["preset"] = ("str", None)
    return out


_TYPE_NAMES = {"int": "an int", "float": "a number", "str": "a string", "bool": "true or false",
               "list[str]": "a list of strings", "null": "null"}


def _describe(type_spec: str) -> str:
    return " or ".join(_TYPE_NAMES.get(t, t) for t in type_spec.split("|"))


def _check_value(where: str, type_spec: str, value: Any) -> Any:
    """Return `value` converted to `type_spec` (an int is accepted as a float) or raise ConfigError."""
    for t in type_spec.split("|"):
        if t == "null" and value is None:
            return None
        if t == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t == "str" and isinstance(value, str):
            return value
        if t == "bool" and isinstance(value, bool):
            return value
        if t == "list[str]" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
    raise ConfigError(f"{where} must be {_describe(type_spec)}, got {value!r} ({type(value).__name__})")


def _unknown(where: str, key: str, known: Sequence[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown key {where}{key!r}{hint}; known keys: {', '.join(sorted(known))}")


# ============================================================================= loading a config
def config_path(name_or_path: str | os.PathLike) -> Path:
    """A config file: a path, or the name of a packaged config ("gpt_char" -> project_configs/gpt_char.json)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if not p.is_absolute() and (_ROOT / p).is_file():  # a path relative to the repository root
        return _ROOT / p
    for cand in (CONFIG_DIR / p.name, CONFIG_DIR / f"{p.name}.json", CONFIG_DIR / f"{p.name}.toml"):
        if cand.is_file() and not p.parent.parts:
            return cand
    known = sorted(f.stem for f in CONFIG_DIR.glob("*.json"))
    raise ConfigError(f"config file not found: {str(name_or_path)!r}; give a path, or one of the packaged configs {known}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `section.key=value` into (["section", "key"], value); the value is read as JSON, else kept as a string.

    >>> parse_override("train.lr=3e-4")
    (['train', 'lr'], 0.0003)
    >>> parse_override("generate.prompt=ROMEO:")
    (['generate', 'prompt'], 'ROMEO:')
    See notebook 11.
    """
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(f"an override must look like section.key=value (e.g. train.lr=3e-4), got {text!r}")
    key, _, raw = text.partition("=")
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"an override key must be section.key (e.g. train.max_steps), got {key.strip()!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return parts, value


def _read_file(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be an object (a dict of sections), got {type(data).__name__}")
    return data


def load_config(
    config: str | os.PathLike | dict, overrides: Sequence[str] | dict[str, Any] | None = None
) -> dict[str, Any]:
    """Read, override and validate a config; returns every section with its defaults filled in.

    `config`: a file path, a packaged config name ("gpt_char") or an already-read dict.
    `overrides`: ["train.lr=3e-4", ...] or {"train.lr": 3e-4}.
    >>> cfg = load_config("gpt_char", ["train.max_steps=10"]); cfg["train"]["max_steps"]
    10
    See notebook 11.
    """
    if isinstance(config, dict):
        raw, source = json.loads(json.dumps(config)), "config"
    else:
        path = config_path(config)
        raw, source = _read_file(path), str(path)
    items: list[tuple[list[str], Any]] = []
    if isinstance(overrides, dict):
        items = [(k.split("."), v) for k, v in overrides.items()]
    elif overrides:
        items = [parse_override(o) for o in overrides]
    for parts, value in items:
        if len(parts) != 2:
            raise ConfigError(f"an override key must be section.key, got {'.'.join(parts)!r}")
        section, key = parts
        if section in ("name", "task"):
            raise ConfigError(f"{section!r} is a top-level key; it cannot be overridden with --set")
        sec = raw.setdefault(section, {})
        if not isinstance(sec, dict):
            raise ConfigError(f"{source}: section {section!r} must be an object, got {type(sec).__name__}")
        sec[key] = value

    task = raw.get("task")
    if task not in _SCHEMAS:
        raise ConfigError(f"{source}: 'task' must be one of {list(TASKS)}, got {task!r}")
    name = raw.get("name", Path(str(config)).stem if not isinstance(config, dict) else task)
    _check_value("name", "str", name)
    schema = {**_SCHEMAS[task], "model": _model_schema(task)}
    known_top = ["name", "task", *schema]
    for key in raw:
        if key not in known_top:
            raise _unknown("", key, known_top)
    out: dict[str, Any] = {"name": name, "task": task}
    for section, keys in schema.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError(f"{source}: section {section!r} must be an object, got {given!r} ({type(given).__name__})")
        for key in given:
            if key not in keys:
                if section == "model" and key in _DERIVED[task]:
                    raise ConfigError(f"model.{key} is set from the data and tokenizer; remove it from the config")
                raise _unknown(f"{section}.", key, list(keys))
        values = {}
        for key, (type_spec, default) in keys.items():
            if key in given:
                v = _check_value(f"{section}.{key}", type_spec, given[key])
                choices = _CHOICES.get((task, section, key))
                if choices and v not in choices:
                    raise ConfigError(f"{section}.{key} must be one of {list(choices)}, got {v!r}")
                values[key] = v
            elif section != "model":
                values[key] = default
        out[section] = values
    _check_ranges(out)
    return out


def _train_config(tr: dict, **changes: Any) -> Any:
    """The `course_lib.training.TrainConfig` of a config's "train" section (which checks every value)."""
    from course_lib.training import TrainConfig

    kwargs = dict(
        max_steps=tr["max_steps"], max_seconds=tr["max_seconds"], lr=tr["lr"], min_lr=tr["min_lr"],
        warmup_steps=tr["warmup_steps"], weight_decay=tr["weight_decay"], grad_clip=tr["grad_clip"],
        eval_every=tr["eval_every"], eval_steps=tr["eval_steps"], progress=tr["progress"], seed=None,
    )
    return TrainConfig(**{**kwargs, **changes})


def _check_ranges(cfg: dict) -> None:
    """Every value checked when the config is loaded, before any data is prepared or any step is trained."""
    tr = cfg["train"]
    if tr["batch_size"] < 1:
        raise ConfigError(f"train.batch_size must be >= 1, got {tr['batch_size']}")
    try:
        _train_config(tr)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"train: {exc}") from None
    data = cfg["data"]
    for key in ("max_chars", "val_chars", "max_reviews", "val_reviews", "max_train_pairs", "val_words"):
        if data.get(key) is not None and data[key] < 1:
            raise ConfigError(f"data.{key} must be >= 1{' or null' if key in ('max_chars', 'val_chars', 'max_train_pairs') else ''}, got {data[key]}")
    for section in ("evaluate", "generate"):
        sec = cfg[section]
        for key in ("batches", "batch_size", "max_new_tokens", "beam_size", "top_k"):
            if sec.get(key) is not None and sec[key] < 1:
                raise ConfigError(f"{section}.{key} must be >= 1, got {sec[key]}")
    if cfg["task"] == "gpt":
        from course_lib.generation import check_sampling_args

        gen = cfg["generate"]
        try:
            check_sampling_args(gen["temperature"], gen["top_k"], gen["top_p"])
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"generate: {exc}") from None
    if cfg["task"] == "bert_mlm" and not 0 < tr["mask_prob"] < 1:
        raise ConfigError(f"train.mask_prob must be in (0, 1), got {tr['mask_prob']}")
    if cfg["task"] == "g2p" and cfg["evaluate"]["words"] is not None and cfg["evaluate"]["words"] < 1:
        raise ConfigError(f"evaluate.words must be >= 1 or null (all words), got {cfg['evaluate']['words']}")
    try:  # let the model's own config check sizes (d_model divisible by n_head, ...)
        _model_config(cfg, vocab=_dummy_vocab(cfg["task"]))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model: {exc}") from None


def _dummy_vocab(task: str) -> dict:
    return {"gpt": {"vocab_size": 65}, "bert_mlm": {"vocab_size": 1000, "pad_id": 0}, "g2p": {}}[task]


def _model_config(cfg: dict, vocab: dict) -> Any:
    """The model's config dataclass: preset (or the course default) + the config's keys + the vocabulary sizes."""
    task, model = cfg["task"], dict(cfg["model"])
    cls = _model_config_class(task)
    if task == "g2p":
        from course_lib.pronunciation import g2p_config

        base = dataclasses.asdict(g2p_config())
    else:
        preset = model.pop("preset", None) or ("char-shakespeare" if task == "gpt" else "tiny")
        if preset not in cls.PRESETS:
            raise ConfigError(f"model.preset must be one of {sorted(cls.PRESETS)}, got {preset!r}")
        base = {**dataclasses.asdict(cls()), **cls.PRESETS[preset]}
    base.update(model)
    base.update(vocab)
    if task == "bert_mlm":
        base["num_labels"] = 2
    return cls(**base)


# ============================================================================= distributed helpers
# shard_batch is in course_lib.training (imported at the top), with the training loop's other pieces.


@dataclasses.dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed() -> _Dist:
    """Under torchrun (WORLD_SIZE > 1): join the process group, gloo on CPU or nccl on CUDA."""
    from course_lib.utils import get_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(0, 1, get_device())
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    if torch.cuda.is_available() and os.environ.get("COURSE_DEVICE", "cuda") != "cpu":
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return _Dist(rank, world, device)


class _GlobalMeanLoss(torch.nn.Module):
    """Wraps a DDP model: its loss VALUE is the mean over all ranks, its GRADIENT the local one.

    loss_local + (mean_all - loss_local).detach(): the logged number matches a single process on
    the global batch, while backward still sends only the local gradient (DDP averages those).
    """

    def __init__(self, ddp: torch.nn.Module, world_size: int) -> None:
        super().__init__()
        self.ddp, self.world_size = ddp, world_size

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        import torch.distributed as dist

        out = self.ddp(*args, **kwargs)
        loss = out.loss if hasattr(out, "loss") else out[1]
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        mean /= self.world_size
        return loss + (mean - loss.detach())


# ============================================================================= tasks
def _progress(iterable: Any, enabled: bool, **kw: Any) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not enabled, mininterval=1.0, **kw)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _need(path: Path, what: str, command: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}; run `python -m course_lib {command} --config ...` first "
                                f"(with the same --out)")
    return path


# ----------------------------------------------------------------------------- GPT on Shakespeare
class _GPTTask:
    def prepare(self, cfg: dict, prep: Path, show: bool) -> dict:
        from course_lib.data import load_shakespeare
        from course_lib.tokenization import BPETokenizer, CharTokenizer

        d, tk = cfg["data"], cfg["tokenizer"]
        steps = _progress(range(3), show, desc="prepare", total=3)
        it = iter(steps)
        train_text = load_shakespeare("train")[: d["max_chars"]]
        val_text = load_shakespeare("val")[: d["val_chars"]]
        next(it)
        if tk["kind"] == "char":
            tok = CharTokenizer.train(train_text)
            (prep / "tokenizer.json").write_text(json.dumps({"kind": "char", "chars": tok.itos[1:]}))
        else:
            tok = BPETokenizer.train(train_text[: tk["train_chars"]], tk["vocab_size"])
            tok.save(prep / "tokenizer.bpe")
        next(it)
        ids = {"train": torch.tensor(tok.encode(train_text), dtype=torch.int32),
               "val": torch.tensor(tok.encode(val_text), dtype=torch.int32)}
        _save_tensors(prep / "data.safetensors", ids)
        next(it, None)
        steps.close()
        return {"vocab_size": tok.vocab_size, "train_tokens": len(ids["train"]), "val_tokens": len(ids["val"]),
                "train_chars": len(train_text), "val_chars": len(val_text), "tokenizer": tk["kind"]}

    def tokenizer(self, prep: Path) -> Any:
        from course_lib.tokenization import BPETokenizer, CharTokenizer

        if (prep / "tokenizer.json").is_file():
            return CharTokenizer(json.loads((prep / "tokenizer.json").read_text())["chars"])
        return BPETokenizer.load(_need(prep / "tokenizer.bpe", "tokenizer", "prepare"))

    def load(self, prep: Path) -> dict:
        return _load_tensors(_need(prep / "data.safetensors", "prepared data", "prepare"))

    def vocab(self, meta: dict) -> dict:
        return {"vocab_size": meta["vocab_size"]}

    def model(self, config: Any) -> torch.nn.Module:
        from course_lib.models import GPT

        return GPT(config)

    def batches(self, cfg: dict, data: dict, config: Any, split: str, seed: int, batch_size: int,
                dist: _Dist) -> Callable[[], Any]:
        from course_lib.training import lm_batch

        ids, gen = data[split], torch.Generator().manual_seed(seed)
        T = config.block_size
        if len(ids) < T + 1:
            raise ValueError(f"the {split} split has {len(ids)} tokens, fewer than block_size + 1 = {T + 1}; "
                             f"raise data.max_chars / data.val_chars or lower model.block_size")

        def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
            x, y = lm_batch(ids, batch_size, T, gen)  # the GLOBAL batch, same on every rank
            x, y = shard_batch((x, y), dist.rank, dist.world_size)
            return x.to(dist.device), y.to(dist.device)

        return next_batch

    def evaluate(self, cfg: dict, model: torch.nn.Module, data: dict, config: Any, device: torch.device,
                 show: bool) -> dict:
        from course_lib.metrics import perplexity
        from course_lib.training import compute_loss

        e = cfg["evaluate"]
        nb = self.batches(cfg, data, config, "val", e["seed"], e["batch_size"], _Dist(0, 1, device))
        losses = []
        with torch.no_grad():
            for _ in _progress(range(e["batches"]), show, desc="evaluate"):
                losses.append(compute_loss(model, nb()).item())
        loss = sum(losses) / len(losses)
        return {"val_loss": loss, "perplexity": perplexity(loss), "bits_per_token": loss / math.log(2),
                "tokens": e["batches"] * e["batch_size"] * config.block_size}

    def generate(self, cfg: dict, model: torch.nn.Module, prep: Path, device: torch.device) -> dict:
        from course_lib.generation import generate

        g, tok = cfg["generate"], self.tokenizer(prep)
        ids = tok.encode(g["prompt"]) or [0]
        idx = torch.tensor([ids], dtype=torch.long, device=device)
        out = generate(model, idx, g["max_new_tokens"], temperature=g["temperature"], top_k=g["top_k"],
                       top_p=g["top_p"], greedy=g["greedy"], generator=torch.Generator(device).manual_seed(g["seed"]))
        return {"prompt": g["prompt"], "text": tok.decode(out[0].tolist())}


# ----------------------------------------------------------------------------- tiny BERT on IMDB (MLM)
_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _clean(text: str) -> str:
    from course_lib.masking import clean_review

    return clean_review(text)


class _BertTask:
    def prepare(self, cfg: dict, prep: Path, show: bool) -> dict:
        from course_lib.data import load_imdb
        from course_lib.masking import pack_for_mlm
        from course_lib.tokenization import BPETokenizer

        d, tk = cfg["data"], cfg["tokenizer"]
        block = _model_config(cfg, _dummy_vocab("bert_mlm")).block_size
        bar = _progress(range(3), show, desc="prepare", total=3)
        it = iter(bar)
        train = [_clean(r.text) for r in load_imdb("train")[: d["max_reviews"]]]
        val = [_clean(r.text) for r in load_imdb("validation")[: d["val_reviews"]]]
        next(it)
        tok = BPETokenizer.train("\n".join(train)[: tk["train_chars"]], tk["vocab_size"], special_tokens=list(_SPECIALS))
        tok.save(prep / "tokenizer.bpe")
        next(it)
        sp = tok.special_tokens
        rows = {name: pack_for_mlm([tok.encode(t) for t in texts], block, sp["[CLS]"], sp["[SEP]"])
                for name, texts in (("train", train), ("val", val))}
        if rows["val"].size(0) == 0 or rows["train"].size(0) == 0:
            raise ValueError(f"too little text for rows of block_size={block}: raise data.max_reviews / data.val_reviews")
        _save_tensors(prep / "data.safetensors", rows)
        next(it, None)
        bar.close()
        return {"vocab_size": tok.vocab_size, "pad_id": sp["[PAD]"], "mask_id": sp["[MASK]"],
                "special_ids": sorted(sp.values()), "train_rows": rows["train"].size(0),
                "val_rows": rows["val"].size(0), "block_size": block, "tokenizer": "bpe"}

    def tokenizer(self, prep: Path) -> Any:
        from course_lib.tokenization import BPETokenizer

        return BPETokenizer.load(_need(prep / "tokenizer.bpe", "tokenizer", "prepare"))

    def load(self, prep: Path) -> dict:
        data = _load_tensors(_need(prep / "data.safetensors", "prepared data", "prepare"))
        data["meta"] = json.loads((prep / "meta.json").read_text())
        return data

    def vocab(self, meta: dict) -> dict:
        return {"vocab_size": meta["vocab_size"], "pad_id": meta["pad_id"], "block_size": meta["block_size"]}

    def model(self, config: Any) -> torch.nn.Module:
        from course_lib.models import BertForMaskedLM

        return BertForMaskedLM(config)

    def batches(self, cfg: dict, data: dict, config: Any, split: str, seed: int, batch_size: int,
                dist: _Dist) -> Callable[[], Any]:
        from course_lib.masking import mask_tokens

        rows, meta, gen = data[split], data["meta"], torch.Generator().manual_seed(seed)
        mask_prob = cfg["train"]["mask_prob"]

        def next_batch() -> dict[str, torch.Tensor]:
            pick = torch.randint(rows.size(0), (batch_size,), generator=gen)
            m = mask_tokens(rows[pick], meta["mask_id"], meta["vocab_size"], meta["special_ids"], mask_prob,
                            generator=gen)
            batch = shard_batch({"input_ids": m.input_ids, "labels": m.labels}, dist.rank, dist.world_size)
            return {k: v.to(dist.device) for k, v in batch.items()}

        return next_batch

    def evaluate(self, cfg: dict, model: torch.nn.Module, data: dict, config: Any, device: torch.device,
                 show: bool) -> dict:
        from course_lib.metrics import perplexity

        e, meta = cfg["evaluate"], data["meta"]
        nb = self.batches(cfg, data, config, "val", e["seed"], e["batch_size"], _Dist(0, 1, device))
        # the baseline: always guess the most frequent ordinary token of the training rows
        counts = torch.bincount(data["train"].flatten().long(), minlength=meta["vocab_size"])
        counts[meta["special_ids"]] = 0
        frequent = int(counts.argmax())
        total_loss, correct, base, n = 0.0, 0, 0, 0
        with torch.no_grad():
            for _ in _progress(range(e["batches"]), show, desc="evaluate"):
                b = nb()
                out = model(**b)
                chosen = b["labels"] != -100
                k = int(chosen.sum())
                total_loss += float(out.loss) * k
                correct += int((out.logits.argmax(-1)[chosen] == b["labels"][chosen]).sum())
                base += int((b["labels"][chosen] == frequent).sum())
                n += k
        loss = total_loss / max(n, 1)
        return {"val_loss": loss, "perplexity": perplexity(loss), "masked_accuracy": correct / max(n, 1),
                "masked_tokens": n, "baseline_accuracy": base / max(n, 1), "baseline_token_id": frequent}

    def generate(self, cfg: dict, model: torch.nn.Module, prep: Path, device: torch.device) -> dict:
        g, tok = cfg["generate"], self.tokenizer(prep)
        if "[MASK]" not in g["text"]:
            raise ValueError(f"generate.text must contain [MASK] (the word to fill in), got {g['text']!r}")
        sp = tok.special_tokens
        text = "[MASK]".join(_clean(part) for part in g["text"].split("[MASK]"))
        ids = [sp["[CLS]"]] + tok.encode(text, allowed_special={"[MASK]"}) + [sp["[SEP]"]]
        ids = ids[: model.config.block_size]
        x = torch.tensor([ids], device=device)
        with torch.no_grad():
            logits = model(x).logits[0]  # (T, V)
        fills = []
        for pos in (x[0] == sp["[MASK]"]).nonzero().flatten().tolist():
            probs = logits[pos].float().softmax(-1)
            probs[sorted(sp.values())] = 0  # never propose a special token
            top = probs.topk(g["top_k"])
            fills.append([(tok.decode([i]), round(float(p), 4)) for p, i in zip(top.values, top.indices.tolist())])
        return {"text": g["text"], "fills": fills}


# ----------------------------------------------------------------------------- G2P (encoder-decoder)
class _G2PTask:
    def prepare(self, cfg: dict, prep: Path, show: bool) -> dict:
        from course_lib.pronunciation import load_g2p_pairs, references

        d = cfg["data"]
        bar = _progress(range(2), show, desc="prepare", total=2)
        it = iter(bar)
        pairs = load_g2p_pairs("train")
        random.Random(0).shuffle(pairs)
        pairs = pairs[: d["max_train_pairs"]]
        next(it)
        refs = references(load_g2p_pairs("validation"))
        words = sorted(refs)
        random.Random(1).shuffle(words)
        words = words[: max(d["val_words"], cfg["evaluate"]["words"] or 0)]
        (prep / "pairs.json").write_text(json.dumps({"train": pairs, "val": {w: refs[w] for w in words}}))
        next(it, None)
        bar.close()
        return {"train_pairs": len(pairs), "val_words": len(words), "tokenizer": "letters-phonemes"}

    def load(self, prep: Path) -> dict:
        data = json.loads(_need(prep / "pairs.json", "prepared data", "prepare").read_text())
        data["train"] = [(w, p) for w, p in data["train"]]
        return data

    def vocab(self, meta: dict) -> dict:
        from course_lib.pronunciation import source_vocab, target_vocab

        return {"src_vocab_size": len(source_vocab()), "tgt_vocab_size": len(target_vocab())}

    def model(self, config: Any) -> torch.nn.Module:
        from course_lib.models import EncoderDecoder

        return EncoderDecoder(config)

    def batches(self, cfg: dict, data: dict, config: Any, split: str, seed: int, batch_size: int,
                dist: _Dist) -> Callable[[], Any]:
        from course_lib.pronunciation import G2PBatches

        if split == "train":
            pairs = data["train"]
        else:
            pairs = [(w, p) for w, refs in data["val"].items() for p in refs[:1]]
        source = G2PBatches(pairs, batch_size, seed=seed)

        def next_batch() -> dict[str, torch.Tensor]:
            batch = shard_batch(source(), dist.rank, dist.world_size)
            return {k: v.to(dist.device) for k, v in batch.items()}

        return next_batch

    def evaluate(self, cfg: dict, model: torch.nn.Module, data: dict, config: Any, device: torch.device,
                 show: bool) -> dict:
        from course_lib.pronunciation import evaluate_g2p, load_g2p_pairs, predict, predict_batch, references

        e = cfg["evaluate"]
        if e["split"] == "test":  # the held-out test words, as notebook 07 and benchmarks/train_g2p.py score them
            refs = references(load_g2p_pairs("test"))
            words = sorted(refs)
            if e["words"] is not None and e["words"] < len(words):
                words = words[:: max(1, len(words) // e["words"])][: e["words"]]  # evenly spaced, not only a-words
        else:  # the prepared validation sample (random words)
            refs = data["val"]
            words = list(refs)[: e["words"]]
        if e["beam_size"] == 1:
            preds = predict_batch(model, words)
        else:
            preds = [predict(model, w, beam_size=e["beam_size"]) for w in _progress(words, show, desc="beam search")]
        scores = evaluate_g2p(preds, [refs[w] for w in words])
        wrong = sum(p not in refs[w] for p, w in zip(preds, words))
        return {"wer": scores["wer"], "per": scores["per"], "bleu": scores["bleu"], "words": len(words),
                "wrong_words": wrong, "split": e["split"],
                "decoding": "greedy" if e["beam_size"] == 1 else f"beam {e['beam_size']}"}

    def generate(self, cfg: dict, model: torch.nn.Module, prep: Path, device: torch.device) -> dict:
        from course_lib.pronunciation import predict

        g = cfg["generate"]
        return {"pronunciations": {w: " ".join(predict(model, w, beam_size=g["beam_size"])) for w in g["words"]}}


_TASK_IMPL = {"gpt": _GPTTask(), "bert_mlm": _BertTask(), "g2p": _G2PTask()}


# ============================================================================= the commands
def _run_dir(cfg: dict, out: str | os.PathLike | None) -> Path:
    return Path(out) if out is not None else RUNS_DIR / cfg["name"]


def _show(path: Path) -> str:
    """A path as printed: relative to the repository root when inside it."""
    try:
        return str(Path(path).resolve().relative_to(_ROOT))
    except ValueError:
        return str(path)


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def cmd_prepare(cfg: dict, out: Path, quiet: bool = False) -> dict:
    """Load the corpus, train the tokenizer, encode the splits into out/prepared/."""
    prep = out / "prepared"
    prep.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    meta = _TASK_IMPL[cfg["task"]].prepare(cfg, prep, show=cfg["train"]["progress"] and not quiet)
    meta["seconds"] = round(time.perf_counter() - t0, 2)
    (prep / "meta.json").write_text(json.dumps(meta, indent=2))
    _say(f"prepared {cfg['name']} in {_show(prep)}: " + ", ".join(f"{k}={v}" for k, v in meta.items()
                                                             if not isinstance(v, list)), quiet)
    return meta


def _meta(out: Path) -> dict:
    return json.loads(_need(out / "prepared" / "meta.json", "prepared data", "prepare").read_text())


def cmd_train(cfg: dict, out: Path, quiet: bool = False) -> dict:
    """Train the model (data-parallel under torchrun) and save out/checkpoint/ and out/history.json."""
    from course_lib.training import save_checkpoint, train

    task, tr = _TASK_IMPL[cfg["task"]], cfg["train"]
    dist = _init_distributed()
    quiet = quiet or not dist.main
    meta = _meta(out)
    data = task.load(out / "prepared")
    config = _model_config(cfg, task.vocab(meta))
    if tr["batch_size"] % dist.world_size:
        raise ConfigError(f"train.batch_size={tr['batch_size']} must be divisible by the number of processes "
                          f"({dist.world_size})")
    torch.manual_seed(tr["seed"])  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = task.model(config).to(dist.device)
    net: torch.nn.Module = model
    if dist.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp = DDP(model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
        net = _GlobalMeanLoss(ddp, dist.world_size)
        if tr["max_seconds"] is not None and dist.main:
            print("note: train.max_seconds is ignored under DDP (every rank must run the same number of steps)")
    train_batches = task.batches(cfg, data, config, "train", tr["seed"], tr["batch_size"], dist)
    val_batches = task.batches(cfg, data, config, "val", tr["seed"] + 1, tr["batch_size"], _Dist(0, 1, dist.device))
    tcfg = _train_config(tr, max_seconds=tr["max_seconds"] if dist.world_size == 1 else None,
                         progress=tr["progress"] and not quiet)
    _say(f"training {cfg['name']}: {sum(p.numel() for p in model.parameters()):,} parameters, "
         f"{dist.world_size} process(es) on {dist.device}, global batch {tr['batch_size']}", quiet)
    hist = train(net, train_batches, tcfg, val_batches=val_batches)
    result = {"history": hist.to_dict(), "world_size": dist.world_size, "device": str(dist.device),
              "parameters": sum(p.numel() for p in model.parameters())}
    if dist.main:
        save_checkpoint(out / "checkpoint", model, config, step=len(hist.steps),
                        extra={"task": cfg["task"], "name": cfg["name"]})
        (out / "history.json").write_text(json.dumps(result, indent=1))
        (out / "config.json").write_text(json.dumps(cfg, indent=2))
        _say(f"trained {len(hist.steps)} steps in {hist.seconds:.1f} s: last train loss "
             f"{hist.train_loss[-1] if hist.train_loss else float('nan'):.4f}, val loss {hist.last_val_loss:.4f}; "
             f"checkpoint in {_show(out / 'checkpoint')}", quiet)
    if dist.world_size > 1:
        import torch.distributed as tdist

        tdist.barrier()
        tdist.destroy_process_group()
    return result


def _load_model(cfg: dict, out: Path) -> tuple[torch.nn.Module, Any, torch.device]:
    from course_lib.training import load_checkpoint
    from course_lib.utils import get_device

    task = _TASK_IMPL[cfg["task"]]
    ckpt = _need(out / "checkpoint" / "config.json", "checkpoint", "train").parent
    model = task.model(_model_config(cfg, task.vocab(_meta(out))))
    load_checkpoint(ckpt, model)  # a config that no longer matches the checkpoint -> ValueError naming the keys
    device = get_device()
    return model.to(device).eval(), model.config, device


def cmd_evaluate(cfg: dict, out: Path, quiet: bool = False) -> dict:
    """Score the checkpoint on held-out data; writes out/eval.json."""
    task = _TASK_IMPL[cfg["task"]]
    model, config, device = _load_model(cfg, out)
    data = task.load(out / "prepared")
    t0 = time.perf_counter()
    scores = task.evaluate(cfg, model, data, config, device, show=cfg["train"]["progress"] and not quiet)
    scores["seconds"] = round(time.perf_counter() - t0, 2)
    (out / "eval.json").write_text(json.dumps(scores, indent=2))
    _say(f"{cfg['name']}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in scores.items()), quiet)
    return scores


def cmd_generate(cfg: dict, out: Path, quiet: bool = False) -> dict:
    """Use the checkpoint: sample text (GPT), fill in [MASK] (BERT) or pronounce words (G2P)."""
    model, _, device = _load_model(cfg, out)
    result = _TASK_IMPL[cfg["task"]].generate(cfg, model, out / "prepared", device)
    if not quiet:
        if "text" in result and cfg["task"] == "gpt":
            print(result["text"])
        elif "fills" in result:
            print(result["text"])
            for i, f in enumerate(result["fills"]):
                print(f"  [MASK] #{i + 1}: " + ", ".join(f"{w!r} {p:.3f}" for w, p in f))
        else:
            for w, p in result["pronunciations"].items():
                print(f"  {w:>15} -> {p}")
    return result


_COMMAND_FUNCS = {"prepare": cmd_prepare, "train": cmd_train, "evaluate": cmd_evaluate, "generate": cmd_generate}


def run(
    command: str,
    config: str | os.PathLike | dict,
    overrides: Sequence[str] | dict[str, Any] | None = None,
    out: str | os.PathLike | None = None,
    quiet: bool = False,
) -> dict:
    """Run one subcommand from Python (what `python -m course_lib COMMAND` does) and return its result dict.

    >>> # run("train", "gpt_char", ["train.max_steps=50"], out="data/runs/demo")["history"]["train_loss"][-1]
    See notebook 11.
    """
    if command not in _COMMAND_FUNCS:
        raise ValueError(f"command must be one of {list(COMMANDS)}, got {command!r}")
    cfg = load_config(config, overrides)
    return _COMMAND_FUNCS[command](cfg, _run_dir(cfg, out), quiet=quiet)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m course_lib",
        description="Prepare data, train, evaluate and use the course's models from a config file. "
        "Data-parallel training: torchrun --nproc_per_node=N -m course_lib train --config ...",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{prepare,train,evaluate,generate,configs,chat}")
    for name, help_ in (("prepare", "load the corpus, train the tokenizer, encode the splits"),
                        ("train", "train the model (DDP under torchrun)"),
                        ("evaluate", "score the checkpoint on held-out data"),
                        ("generate", "use the checkpoint: text, fill-mask or pronunciations")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--config", required=True, help="a config file, or a packaged name: gpt_char, tiny_bert, g2p")
        s.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override one config value (repeatable), e.g. --set train.max_steps=50")
        s.add_argument("--out", default=None, help="run folder (default data/runs/<config name>)")
        s.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    sub.add_parser("configs", help="list the packaged configs")
    sub.add_parser("chat", help="talk to SmolLM2-135M-Instruct in the terminal (see python -m course_lib chat --help)",
                   add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0 ok, 2 for a bad config, a missing file or bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["chat"]:  # its own options: course_lib.assistant
        from course_lib.assistant import main as chat_main

        return chat_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "configs":
        for f in sorted(CONFIG_DIR.glob("*.json")):
            print(f"{f.stem:<12} {json.loads(f.read_text()).get('task', '?'):<9} {f}")
        return 0
    try:
        run(args.command, args.config, args.overrides, args.out, quiet=args.quiet)
    except (ConfigError, FileNotFoundError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
