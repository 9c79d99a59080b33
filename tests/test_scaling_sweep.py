"""The scaling sweep (course_lib.scaling.sweep): sizes, FLOPs against PyTorch's counter, runs and the cache."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from course_lib.models import GPT, GPTConfig, count_parameters
from course_lib.scaling import (
    SweepConfig,
    counted_flops,
    flops_per_token,
    gpt_config,
    non_embedding_parameters,
    run_sweep,
    shakespeare_ids,
    train_run,
)

TINY = dict(shapes=((1, 16), (2, 32)), token_budgets=(32, 64), block_size=8, batch_size=2, eval_windows=8)


@pytest.mark.parametrize("shape", [(1, 16), (2, 48), (3, 32)])
@pytest.mark.parametrize("block_size", [8, 64])
def test_flops_per_token_equals_pytorchs_flop_counter(shape, block_size, one_thread) -> None:
    cfg = gpt_config(*shape, vocab_size=77, block_size=block_size)
    assert flops_per_token(cfg) * 3 * block_size == counted_flops(cfg, batch_size=3)


def test_flops_per_token_counts_a_custom_feed_forward_width(one_thread) -> None:
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, d_model=32, d_ff=48)
    assert flops_per_token(cfg) * 2 * 16 == counted_flops(cfg)
    # by hand: 6 * (2 * (4*32*32 + 2*32*48) + 32*50) + 12 * 2 * 16 * 32
    assert flops_per_token(cfg) == 6 * (2 * (4 * 32 * 32 + 2 * 32 * 48) + 32 * 50) + 12 * 2 * 16 * 32


def test_flops_per_token_rejects_what_it_does_not_count() -> None:
    with pytest.raises(ValueError, match="swiglu"):
        flops_per_token(GPTConfig(vocab_size=10, d_model=32, n_head=2, activation="swiglu"))
    with pytest.raises(TypeError, match="GPTConfig"):
        flops_per_token({"d_model": 32})


def test_non_embedding_parameters_leave_out_both_tables() -> None:
    model = GPT(gpt_config(2, 32, vocab_size=77, block_size=8))
    N = non_embedding_parameters(model)
    assert N == count_parameters(model) - 77 * 32 - 8 * 32
    # 12 L d^2 weights, plus per block 4d + 4d + d + ... biases and two norms, plus the final norm
    d = 32
    per_block = 12 * d * d + (3 * d + d + 4 * d + d) + 2 * 2 * d
    assert N == 2 * per_block + 2 * d
    with pytest.raises(TypeError, match="GPT"):
        non_embedding_parameters(torch.nn.Linear(2, 2))


def test_gpt_config_uses_heads_of_width_16() -> None:
    cfg = gpt_config(3, 96, vocab_size=77)
    assert (cfg.n_layer, cfg.n_head, cfg.d_model, cfg.dropout) == (3, 6, 96, 0.0)
    with pytest.raises(ValueError, match="multiple of 16"):
        gpt_config(1, 40, vocab_size=77)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(shapes=()), "at least one shape"),
        (dict(shapes=((0, 32),)), "positive ints"),
        (dict(shapes=((1, -32),)), "positive ints"),
        (dict(shapes=((1, 40),)), "multiple of the head width"),
        (dict(token_budgets=(0,)), "at least one step"),
        (dict(token_budgets=(-64,)), "at least one step"),
        (dict(token_budgets=(8,)), "at least one step"),
        (dict(lr=0.0), "lr must be"),
        (dict(warmup_frac=1.0), "warmup_frac"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_sweep_config_rejects_bad_grids(change, message) -> None:
    with pytest.raises(ValueError, match=message):
        SweepConfig(**{**TINY, **change})


def test_sweep_config_survives_a_json_round_trip_and_orders_runs_by_compute() -> None:
    cfg = SweepConfig(**TINY)
    again = SweepConfig(**json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.to_dict() == cfg.to_dict()
    assert cfg.runs() == [((1, 16), 32), ((2, 32), 32), ((1, 16), 64), ((2, 32), 64)]


@pytest.fixture(scope="module")
def data():
    tok, train_ids, val_ids = shakespeare_ids()
    return tok.vocab_size, train_ids, val_ids


def test_shakespeare_ids_hold_out_the_validation_plays(data) -> None:
    vocab, train_ids, val_ids = data
    assert len(train_ids) > 4_000_000 and len(val_ids) > 500_000
    assert int(train_ids.max()) < vocab and int(val_ids.max()) < vocab


def test_train_run_is_deterministic_and_learns(data, one_thread) -> None:
    vocab, train_ids, val_ids = data
    cfg = SweepConfig(**{**TINY, "token_budgets": (16 * 60,)})
    a = train_run((1, 16), 16 * 60, cfg, train_ids, val_ids, vocab)
    b = train_run((1, 16), 16 * 60, cfg, train_ids, val_ids, vocab)
    assert a.val_loss == b.val_loss and a.train_loss == b.train_loss
    assert a.tokens == 960 and a.flops == flops_per_token(gpt_config(1, 16, vocab, 8)) * 960
    assert a.params == non_embedding_parameters(GPT(gpt_config(1, 16, vocab, 8)))
    assert len(a.train_loss) == 10 and a.train_loss[-1] < a.train_loss[0] - 0.5  # it learned something
    assert a.val_loss < torch.log(torch.tensor(float(vocab))).item()  # better than guessing uniformly
    assert a.name == "L1-d16"


def test_run_sweep_caches_and_refuses_a_cache_of_other_settings(data, tmp_path, capsys, one_thread) -> None:
    cache = tmp_path / "sweep.json"
    cfg = SweepConfig(**TINY)
    first = run_sweep(cfg, cache=cache, progress=False)
    assert [(r.n_layer, r.d_model, r.tokens) for r in first] == [(1, 16, 32), (2, 32, 32), (1, 16, 64), (2, 32, 64)]
    saved = json.loads(cache.read_text())
    assert saved["settings"] == cfg.to_dict() and len(saved["runs"]) == 4
    # the same settings: read back, not trained (prove it by planting a value no run would give)
    saved["runs"][0]["val_loss"] = 123.0
    cache.write_text(json.dumps(saved))
    again = run_sweep(cfg, cache=cache, progress=False)
    assert again[0].val_loss == 123.0 and [dataclasses.asdict(r) for r in again[1:]] == [dataclasses.asdict(r) for r in first[1:]]
    assert capsys.readouterr().out == ""
    # other settings: the file is not reused, the sweep says why and runs again
    other = SweepConfig(**{**TINY, "lr": 1e-3})
    redone = run_sweep(other, cache=cache, progress=False)
    out = capsys.readouterr().out
    assert "other settings" in out and "lr" in out and "running the sweep again" in out
    assert json.loads(cache.read_text())["settings"]["lr"] == 1e-3
    assert all(r.val_loss != 123.0 for r in redone)


def test_run_sweep_continues_an_interrupted_cache_and_rejects_a_broken_one(data, tmp_path, capsys, one_thread) -> None:
    cache = tmp_path / "sweep.json"
    cfg = SweepConfig(**TINY)
    full = run_sweep(cfg, cache=cache, progress=False)
    saved = json.loads(cache.read_text())
    saved["runs"] = saved["runs"][:2]  # as if stopped after two runs
    cache.write_text(json.dumps(saved))
    resumed = run_sweep(cfg, cache=cache, progress=False)
    assert [r.val_loss for r in resumed] == [r.val_loss for r in full]
    cache.write_text("{not json")
    run_sweep(cfg, cache=cache, progress=False)
    assert "is not a sweep cache" in capsys.readouterr().out
    with pytest.raises(TypeError, match="SweepConfig"):
        run_sweep({"shapes": ((1, 16),)})
