"""The command line (course_lib.cli): config validation, overrides, sharding, and each task end to end on tiny budgets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_lib import cli
from course_lib.cli import ConfigError, load_config, parse_override, shard_batch
from course_lib.models import EncoderDecoder
from course_lib.pronunciation import evaluate_g2p, load_g2p_pairs, predict_batch, references
from course_lib.training import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
TINY_GPT = [
    "data.max_chars=20000", "data.val_chars=3000", "model.block_size=16", "model.n_layer=1", "model.d_model=16",
    "model.n_head=2", "train.max_steps=6", "train.batch_size=4", "train.eval_every=3", "train.eval_steps=1",
    "train.warmup_steps=1", "train.progress=false", "evaluate.batches=2", "evaluate.batch_size=4",
    "generate.max_new_tokens=20",
]


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", ["gpt_char", "tiny_bert", "g2p"])
def test_packaged_configs_load(name):
    cfg = load_config(name)
    assert cfg["name"] == name and cfg["task"] in cli.TASKS
    assert set(cfg) == {"name", "task", "data", "tokenizer", "model", "train", "evaluate", "generate"}
    path = cli.config_path(name)
    assert path.parent == cli.CONFIG_DIR and json.loads(path.read_text())["name"] == name
    # a path works as well as a name, and the defaults are filled in
    assert load_config(str(path)) == cfg
    assert cli.config_path(f"course_lib/project_configs/{name}.json").resolve() == path  # relative to the repository root
    assert isinstance(cfg["train"]["weight_decay"], float)


def test_overrides_are_typed_and_applied():
    cfg = load_config("gpt_char", ["train.max_steps=7", "train.lr=1e-4", "generate.prompt=JULIET:", "train.max_seconds=null"])
    assert cfg["train"]["max_steps"] == 7 and cfg["train"]["lr"] == 1e-4 and cfg["train"]["max_seconds"] is None
    assert cfg["generate"]["prompt"] == "JULIET:"
    assert load_config("gpt_char", {"model.n_layer": 3})["model"]["n_layer"] == 3
    cfg = load_config("gpt_char", ["train.lr=1"])  # an int is accepted where a number is expected
    assert cfg["train"]["lr"] == 1.0 and isinstance(cfg["train"]["lr"], float)


def test_parse_override():
    assert parse_override("train.lr=3e-4") == (["train", "lr"], 3e-4)
    assert parse_override("generate.prompt=ROMEO:") == (["generate", "prompt"], "ROMEO:")
    assert parse_override('generate.words=["a", "b"]') == (["generate", "words"], ["a", "b"])
    assert parse_override("train.progress=false") == (["train", "progress"], False)
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("train.lr")
    with pytest.raises(ConfigError, match="section.key"):
        parse_override("lr=3")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.lrr=1e-3"], r"unknown key train\.'lrr' \(did you mean 'lr'\?\)"),
        (["model.n_layers=2"], r"unknown key model\.'n_layers' \(did you mean 'n_layer'\?\)"),
        (["train.max_steps=ten"], r"train\.max_steps must be an int, got 'ten' \(str\)"),
        (["train.max_steps=2.5"], r"train\.max_steps must be an int, got 2\.5 \(float\)"),
        (["train.lr=true"], r"train\.lr must be a number, got True \(bool\)"),
        (["train.max_seconds=soon"], r"train\.max_seconds must be a number or null, got 'soon'"),
        (["tokenizer.kind=word"], r"tokenizer\.kind must be one of \['char', 'bpe'\], got 'word'"),
        (["model.vocab_size=100"], r"model\.vocab_size is set from the data"),
        (["model.d_model=30"], r"model: .*divisible by n_head"),
        (["model.preset=huge"], r"model\.preset must be one of"),
        (["train.batch_size=0"], r"train\.batch_size must be >= 1, got 0"),
        (["train.lr=-1"], r"train: lr must be > 0"),
        (["train.warmup_steps=-3"], r"train: need warmup_steps >= 0"),
        (["train.grad_clip=-1"], r"train: grad_clip must be > 0"),
        (["train.weight_decay=-5"], r"train: weight_decay must be >= 0"),
        (["train.min_lr=-1.0"], r"train: min_lr must be between 0 and lr"),
        (["generate.temperature=0"], r"generate: temperature must be a finite number > 0"),
        (["generate.top_p=2"], r"generate: top_p must be in \(0, 1\]"),
        (["generate.max_new_tokens=0"], r"generate\.max_new_tokens must be >= 1"),
        (["data.max_chars=-5"], r"data\.max_chars must be >= 1 or null, got -5"),
    ],
)
def test_bad_values_name_the_key_type_and_value(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("gpt_char", overrides)


def test_g2p_evaluate_split_and_words_are_checked():
    assert load_config("g2p", ["evaluate.words=null"])["evaluate"]["words"] is None  # null = every word
    with pytest.raises(ConfigError, match=r"evaluate\.split must be one of \['val', 'test'\], got 'train'"):
        load_config("g2p", ["evaluate.split=train"])
    with pytest.raises(ConfigError, match=r"evaluate\.words must be >= 1 or null \(all words\), got 0"):
        load_config("g2p", ["evaluate.words=0"])
    for key in ("evaluate.beam_size=0", "generate.beam_size=-1"):
        with pytest.raises(ConfigError, match=r"beam_size must be >= 1"):
            load_config("g2p", [key])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match=r"config file not found: 'no_such\.json'.*gpt_char"):
        load_config("no_such.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"task": "gpt",\n "train": {"lr": }}')
    with pytest.raises(ConfigError, match=r"not valid JSON: .* line 2"):
        load_config(bad)
    bad.write_text('{"task": "gpt", "trian": {}}')
    with pytest.raises(ConfigError, match=r"unknown key 'trian' \(did you mean 'train'\?\)"):
        load_config(bad)
    bad.write_text('{"task": "llama"}')
    with pytest.raises(ConfigError, match=r"'task' must be one of \['gpt', 'bert_mlm', 'g2p'\], got 'llama'"):
        load_config(bad)
    bad.write_text('{"task": "gpt", "train": [1, 2]}')
    with pytest.raises(ConfigError, match=r"section 'train' must be an object"):
        load_config(bad)
    toml = tmp_path / "small.toml"
    toml.write_text('task = "gpt"\nname = "small"\n[train]\nmax_steps = 3\n')
    cfg = load_config(toml)
    assert cfg["name"] == "small" and cfg["train"]["max_steps"] == 3


def test_main_prints_a_clear_error(capsys, tmp_path):
    assert cli.main(["train", "--config", "gpt_char", "--set", "train.lr=fast", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train.lr must be a number, got 'fast' (str)") and "Traceback" not in err
    # training before prepare: a clear message naming the command to run
    assert cli.main(["train", "--config", "gpt_char", "--out", str(tmp_path / "empty"), "--quiet"]) == 2
    assert "run `python -m course_lib prepare" in capsys.readouterr().err
    assert cli.main(["configs"]) == 0
    assert "tiny_bert" in capsys.readouterr().out


# ----------------------------------------------------------------------------- sharding
def test_shard_batch():
    x = torch.arange(12).view(6, 2)
    parts = [shard_batch(x, r, 3) for r in range(3)]
    assert torch.equal(torch.cat(parts), x) and parts[1].tolist() == [[4, 5], [6, 7]]
    d = shard_batch({"a": x, "b": x[:, 0]}, 1, 2)
    assert d["a"].shape == (3, 2) and d["b"].tolist() == [6, 8, 10]
    xs, ys = shard_batch((x, x + 1), 0, 2)
    assert torch.equal(ys, xs + 1)
    assert torch.equal(shard_batch(x, 0, 1), x)
    with pytest.raises(ValueError, match="global batch size 6 must be divisible by the number of processes 4"):
        shard_batch(x, 0, 4)
    with pytest.raises(ValueError, match="rank"):
        shard_batch(x, 2, 2)
    with pytest.raises(TypeError, match="tensor"):
        shard_batch([[1, 2]], 0, 1)


# ----------------------------------------------------------------------------- each task end to end
def test_gpt_pipeline(tmp_path):
    out = tmp_path / "gpt"
    meta = cli.run("prepare", "gpt_char", TINY_GPT, out=out, quiet=True)
    assert meta["train_tokens"] == 20000 and meta["vocab_size"] > 50
    res = cli.run("train", "gpt_char", TINY_GPT, out=out, quiet=True)
    hist = res["history"]
    assert len(hist["train_loss"]) == 6 and hist["val_steps"] == [3, 6] and res["world_size"] == 1
    assert (out / "checkpoint" / "model.safetensors").is_file() and (out / "history.json").is_file()
    assert not list(out.rglob("*.pt")) and not list(out.rglob("*.pkl"))  # never pickle
    scores = cli.run("evaluate", "gpt_char", TINY_GPT, out=out, quiet=True)
    assert scores["perplexity"] == pytest.approx(torch.tensor(scores["val_loss"]).exp().item(), rel=1e-5)
    assert 1 < scores["perplexity"] < meta["vocab_size"] * 2
    assert json.loads((out / "eval.json").read_text())["val_loss"] == scores["val_loss"]
    gen = cli.run("generate", "gpt_char", TINY_GPT, out=out, quiet=True)
    assert gen["text"].startswith("ROMEO:\n") and len(gen["text"]) == len("ROMEO:\n") + 20
    again = cli.run("generate", "gpt_char", TINY_GPT, out=out, quiet=True)
    assert again == gen  # seeded
    # a config that no longer matches the checkpoint is refused with the key named
    with pytest.raises(ValueError, match="d_model"):
        cli.run("evaluate", "gpt_char", TINY_GPT + ["model.d_model=32"], out=out, quiet=True)


def test_gpt_bpe_tokenizer(tmp_path):
    s = TINY_GPT + ["tokenizer.kind=bpe", "tokenizer.vocab_size=300", "tokenizer.train_chars=5000", "train.max_steps=2",
                    "train.eval_every=0"]
    meta = cli.run("prepare", "gpt_char", s, out=tmp_path, quiet=True)
    assert meta["vocab_size"] == 300 and meta["train_tokens"] < 20000
    cli.run("train", "gpt_char", s, out=tmp_path, quiet=True)
    assert cli.run("generate", "gpt_char", s, out=tmp_path, quiet=True)["text"].startswith("ROMEO:")


def test_tiny_bert_pipeline(tmp_path):
    s = ["data.max_reviews=60", "data.val_reviews=20", "tokenizer.vocab_size=300", "tokenizer.train_chars=20000",
         "model.block_size=32", "model.d_model=16", "model.d_ff=32", "train.max_steps=4", "train.batch_size=4",
         "train.eval_every=0", "train.eval_steps=1", "train.progress=false", "evaluate.batches=2"]
    meta = cli.run("prepare", "tiny_bert", s, out=tmp_path, quiet=True)
    assert meta["vocab_size"] == 300 and meta["block_size"] == 32 and meta["train_rows"] > 10
    cli.run("train", "tiny_bert", s, out=tmp_path, quiet=True)
    scores = cli.run("evaluate", "tiny_bert", s, out=tmp_path, quiet=True)
    assert 0 <= scores["masked_accuracy"] <= 1 and scores["masked_tokens"] > 0
    # the baseline: the most frequent ordinary training token, scored on the same masked positions
    data = cli._TASK_IMPL["bert_mlm"].load(tmp_path / "prepared")
    counts = torch.bincount(data["train"].flatten().long(), minlength=meta["vocab_size"])
    counts[meta["special_ids"]] = 0
    assert scores["baseline_token_id"] == int(counts.argmax())
    cfg = load_config("tiny_bert", s)
    nb = cli._TASK_IMPL["bert_mlm"].batches(cfg, data, None, "val", cfg["evaluate"]["seed"], cfg["evaluate"]["batch_size"],
                                            cli._Dist(0, 1, torch.device("cpu")))
    labels = torch.cat([nb()["labels"].flatten() for _ in range(cfg["evaluate"]["batches"])])
    labels = labels[labels != -100]
    assert len(labels) == scores["masked_tokens"]
    assert scores["baseline_accuracy"] == pytest.approx(float((labels == int(counts.argmax())).float().mean()))
    fills = cli.run("generate", "tiny_bert", s, out=tmp_path, quiet=True)["fills"]
    assert len(fills) == 1 and len(fills[0]) == 5
    with pytest.raises(ValueError, match=r"must contain \[MASK\]"):
        cli.run("generate", "tiny_bert", s + ["generate.text=no mask here"], out=tmp_path, quiet=True)


def test_g2p_pipeline(tmp_path):
    s = ["data.max_train_pairs=300", "data.val_words=20", "evaluate.words=20", "model.d_model=16", "model.n_head=2",
         "train.max_steps=3", "train.batch_size=8", "train.eval_every=0", "train.progress=false",
         'generate.words=["cat", "dog"]', "generate.beam_size=2"]
    meta = cli.run("prepare", "g2p", s, out=tmp_path, quiet=True)
    assert meta == {**meta, "train_pairs": 300, "val_words": 20}
    cli.run("train", "g2p", s, out=tmp_path, quiet=True)
    scores = cli.run("evaluate", "g2p", s, out=tmp_path, quiet=True)
    assert scores["words"] == 20 and 0 <= scores["wer"] <= 1 and 0 <= scores["bleu"] <= 100
    assert scores["split"] == "val" and scores["wrong_words"] == round(scores["wer"] * 20)
    # split=test: evenly spaced words of the sorted test split, scored as notebook 07 and benchmarks/train_g2p.py do
    test = cli.run("evaluate", "g2p", s + ["evaluate.split=test", "evaluate.words=30"], out=tmp_path, quiet=True)
    refs = references(load_g2p_pairs("test"))
    words = sorted(refs)[:: len(refs) // 30][:30]
    model = load_checkpoint(tmp_path / "checkpoint", EncoderDecoder)["model"].eval()
    expected = evaluate_g2p(predict_batch(model, words), [refs[w] for w in words])
    assert (test["split"], test["words"], test["decoding"]) == ("test", 30, "greedy")
    assert test["wer"] == expected["wer"] and test["per"] == expected["per"] and test["bleu"] == expected["bleu"]
    assert test["wrong_words"] == round(expected["wer"] * 30)
    prons = cli.run("generate", "g2p", s, out=tmp_path, quiet=True)["pronunciations"]
    assert set(prons) == {"cat", "dog"}
    with pytest.raises(ValueError, match="digits"):
        cli.run("generate", "g2p", s + ['generate.words=["r2d2"]'], out=tmp_path, quiet=True)


def test_python_dash_m(tmp_path):
    """`python -m course_lib` is the entry point; a bad config exits with status 2 and one clear line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "course_lib", "prepare", "--config", str(tmp_path / "missing.json")],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "config file not found" in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- exercise checkers of notebook 11
def test_ch11_checkers(capsys):
    import json as _json
    import math

    import torch.nn.functional as F

    from course_lib.exercises import ExerciseError, ch11

    def todo(*args):
        raise NotImplementedError

    for check in (ch11.check_shard, ch11.check_parse_override, ch11.check_nearest, ch11.check_corpus_perplexity):
        assert check(todo) is None
    assert "not attempted" in capsys.readouterr().out

    assert ch11.check_shard(lambda b, r, w: b[r * (len(b) // w): (r + 1) * (len(b) // w)])
    assert ch11.check_parse_override(cli.parse_override)
    assert ch11.check_nearest(lambda q, idx, k: (F.normalize(idx, dim=-1) @ F.normalize(q, dim=0)).topk(k).indices)
    assert ch11.check_corpus_perplexity(ch11.reference_corpus_perplexity)

    assert ch11.check_shard(lambda b, r, w: b[r::w])  # interleaved rows: a valid split too, not only the reference's
    with pytest.raises(ExerciseError, match="parse_override"):
        ch11.check_parse_override(lambda t: (t.split("=")[0].split("."), _json.loads(t.split("=")[1])))
    with pytest.raises(ExerciseError, match="nearest"):
        ch11.check_nearest(lambda q, idx, k: (idx @ q).topk(k).indices)  # dot product, not cosine
    with pytest.raises(ExerciseError, match="corpus perplexity"):
        ch11.check_corpus_perplexity(lambda l, n: math.exp(sum(l) / len(l)))  # unweighted mean


def test_ch11_check_shard_accepts_any_valid_split_and_names_what_is_wrong(capsys):
    """Any split passes where each rank gets B / world_size rows and every row goes to exactly one rank (issue 21)."""
    from course_lib.exercises import ExerciseError, ch11

    def block(b, r, w):
        n = len(b) // w
        return b[r * n: (r + 1) * n]

    def perm(b, seed):
        return b[torch.randperm(len(b), generator=torch.Generator().manual_seed(seed))]

    def uneven(b, r, w):  # rank 0 takes one of rank 1's rows: every row once, but sizes n + 1 and n - 1
        cuts = [min(len(b), k * (len(b) // w) + (k == 1)) for k in range(w)] + [len(b)]
        return b[cuts[r]: cuts[r + 1]]

    valid = {
        "contiguous blocks": shard_batch,
        "interleaved rows": lambda b, r, w: b[r::w],
        "blocks in reverse rank order": lambda b, r, w: block(b, w - 1 - r, w),
        "rows reversed inside a block": lambda b, r, w: block(b, r, w).flip(0),
        "the same permutation on every rank": lambda b, r, w: perm(b, 0)[r::w],
    }
    for name, fn in valid.items():
        assert ch11.check_shard(fn) is True, name
    assert capsys.readouterr().out.count("✅ shard") == len(valid)

    wrong = {
        "to rank 0 and to rank 1": lambda b, r, w: b[: len(b) // w],  # every rank takes the first block
        "twice to rank 0": lambda b, r, w: block(b, r, w)[[0] * (len(b) // w)],  # one row again and again
        r"rows \[1, 2, 3, 4, 5, 6, 7\] .* go to no process": lambda b, r, w: block(b, r, w)[:1],  # rows missing
        r"got \[5, 3\] rows, expected 4 each": uneven,
        "(go to no process|to rank)": lambda b, r, w: perm(b, r)[r::w],  # each rank shuffles differently
        r"rank 1 \(.*raised ZeroDivisionError": lambda b, r, w: block(b, r, w) if r == 0 else 1 / 0,  # crash on rank 1
        "not rows of the global batch": lambda b, r, w: block(b, r, w) + 1,
        "a stack of whole rows": lambda b, r, w: block(b, r, w).flatten(),
        "not a tensor": lambda b, r, w: None,
    }
    for message, fn in wrong.items():
        with pytest.raises(ExerciseError, match=f"shard: .*{message}"):
            ch11.check_shard(fn)
    assert "✅" not in capsys.readouterr().out
