"""Tests for course_lib.training: schedule, batches, the loop, History, checkpoints and resume."""

import json
import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from course_lib.models import (
    BertConfig,
    BertForSequenceClassification,
    EncoderDecoder,
    EncoderDecoderConfig,
    GPT,
    GPTConfig,
)
from course_lib.training import (
    History,
    TrainConfig,
    checkpoint_exists,
    compute_loss,
    evaluate,
    lm_batch,
    load_checkpoint,
    lr_at,
    decayed_lr,
    make_optimizer,
    optimizer_step,
    save_checkpoint,
    train,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _gpt(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig.preset("tiny", **kw))


def _data(n=2000, seed=0):
    # A learnable sequence: a repeating pattern with a little noise.
    g = torch.Generator().manual_seed(seed)
    base = torch.arange(n) % 7
    noise = (torch.rand(n, generator=g) < 0.05).long() * torch.randint(0, 32, (n,), generator=g)
    return (base + noise) % 32


def test_lr_schedule():
    assert [round(lr_at(s, 100, 1.0, warmup_steps=10), 3) for s in (0, 9, 55, 100)] == [0.1, 1.0, 0.55, 0.1]
    assert lr_at(10, 100, 1.0, 10, min_lr=0.0) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, 10, min_lr=0.0) == pytest.approx(0.0)
    lrs = [lr_at(s, 50, 1.0, 5) for s in range(5, 50)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # cosine part never increases


def test_linear_decay_and_decayed_lr():
    lin = [lr_at(s, 110, 2.0, warmup_steps=10, min_lr=0.0, decay="linear") for s in range(10, 111)]
    assert lin[0] == pytest.approx(2.0) and lin[-1] == 0.0
    assert all(a - b == pytest.approx(0.02) for a, b in zip(lin, lin[1:]))  # a constant step down
    cos = [lr_at(s, 110, 2.0, warmup_steps=10, min_lr=0.0) for s in range(10, 111)]
    assert all(c >= li - 1e-12 for c, li in zip(cos[:51], lin[:51]))  # cosine stays higher in the first half
    assert decayed_lr(0.5, 1.0, 0.2, "linear") == pytest.approx(0.6) and decayed_lr(0.5, 1.0, 0.2) == pytest.approx(0.6)
    assert decayed_lr(1.5, 1.0, 0.2) == pytest.approx(0.2) and decayed_lr(-1.0, 1.0, 0.2, "linear") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="decay must be one of"):
        decayed_lr(0.5, 1.0, 0.0, "exponential")
    with pytest.raises(ValueError, match="decay must be one of"):
        TrainConfig(decay="step")


def test_train_follows_the_linear_decay():
    model = GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, d_model=16))
    batches = lambda: lm_batch(_data(), 4, 8)  # noqa: E731
    cfg = TrainConfig(max_steps=20, lr=1e-3, min_lr=0.0, warmup_steps=0, decay="linear", eval_every=0, progress=False)
    hist = train(model, batches, cfg)
    assert hist.lr == pytest.approx([1e-3 * (1 - s / 20) for s in range(20)])


def test_lm_batch_seeded_and_shifted():
    data = torch.arange(100)
    x1, y1 = lm_batch(data, 4, 8, torch.Generator().manual_seed(0))
    x2, _ = lm_batch(data, 4, 8, torch.Generator().manual_seed(0))
    assert x1.shape == y1.shape == (4, 8) and x1.dtype == torch.long
    assert torch.equal(x1, x2) and torch.equal(y1, x1 + 1)
    with pytest.raises(ValueError, match="at least block_size"):
        lm_batch(torch.arange(5), 2, 8)
    with pytest.raises(ValueError, match="1-D"):
        lm_batch(torch.zeros(2, 50), 2, 8)


def test_train_config_validation():
    with pytest.raises(ValueError, match="max_steps"):
        TrainConfig(max_steps=-1)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="grad_clip"):
        TrainConfig(grad_clip=0)


def test_make_optimizer_decays_matrices_only():
    opt = make_optimizer(_gpt(), lr=1e-3, weight_decay=0.1)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() < 2 for p in no_decay["params"])


def test_train_reduces_loss_and_records_history():
    model, data = _gpt(), _data()
    g = torch.Generator().manual_seed(0)
    cfg = TrainConfig(max_steps=60, lr=3e-3, warmup_steps=5, eval_every=20, eval_steps=3, progress=False)
    hist = train(model, lambda: lm_batch(data, 8, 16, g), cfg, val_batches=lambda: lm_batch(data, 8, 16, g))
    assert isinstance(hist, History)
    assert hist.steps == list(range(1, 61)) and len(hist.train_loss) == len(hist.time) == len(hist.lr) == 60
    assert hist.val_steps == [20, 40, 60]
    assert hist.val_loss[-1] < hist.val_loss[0] < math.log(32) + 0.5
    assert hist.tokens_seen == 60 * 8 * 16 and hist.tokens_per_second > 0
    assert hist.stopped_by == "max_steps" and not model.training
    ax = hist.plot()
    assert ax.get_xlabel() == "step"
    assert "val loss" in repr(hist)


def test_train_wall_clock_budget_and_iterables():
    model, data = _gpt(), _data()
    batches = [lm_batch(data, 4, 16, torch.Generator().manual_seed(i)) for i in range(3)]  # a list is cycled
    hist = train(model, batches, TrainConfig(max_steps=10_000, max_seconds=0.5, eval_every=0, progress=False))
    assert hist.stopped_by == "max_seconds" and hist.steps[-1] < 10_000
    assert hist.val_loss == []  # nothing to evaluate on
    val = evaluate(model, batches, steps=2)
    assert val == pytest.approx(sum(compute_loss(model, b).item() for b in batches[:2]) / 2, rel=1e-5)


def test_train_with_eval_fn_and_dict_batches():
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig.preset("tiny"))
    ids = torch.randint(5, 64, (8, 10))
    batch = {"input_ids": ids, "labels": torch.arange(8) % 2, "attention_mask": torch.ones_like(ids)}
    calls = []
    hist = train(model, lambda: batch, TrainConfig(max_steps=30, lr=3e-3, warmup_steps=0, eval_every=15, progress=False),
                 eval_fn=lambda m: calls.append(1) or 0.5)
    assert hist.val_steps == [15, 30] and hist.val_loss == [0.5, 0.5] and len(calls) == 2
    assert hist.train_loss[-1] < hist.train_loss[0]
    with pytest.raises(ValueError, match="scalar loss"):
        compute_loss(model, {"input_ids": ids})


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("tied", [True, False])
def test_checkpoint_round_trip(tmp_path, tied):
    model = _gpt(tie_weights=tied)
    save_checkpoint(tmp_path, model, step=7, extra={"note": "hi"})
    assert checkpoint_exists(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["model_class"] == "GPT" and meta["config"]["tie_weights"] is tied
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.bin"))  # never pickle
    info = load_checkpoint(tmp_path, GPT)  # build from the class
    loaded = info["model"]
    assert info["step"] == 7 and info["extra"] == {"note": "hi"}
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    if tied:
        assert loaded.lm_head.weight is loaded.tok_emb.weight
    x = torch.randint(0, 32, (2, 8))
    assert torch.equal(model.eval()(x).logits, loaded.eval()(x).logits)


def test_checkpoint_other_models(tmp_path):
    torch.manual_seed(0)
    model = EncoderDecoder(EncoderDecoderConfig.preset("tiny"))
    save_checkpoint(tmp_path, model)
    loaded = load_checkpoint(tmp_path, EncoderDecoder)["model"]
    src, tgt = torch.randint(0, 16, (1, 5)), torch.randint(0, 16, (1, 4))
    assert torch.equal(model.eval()(src, tgt).logits, loaded.eval()(src, tgt).logits)


def test_checkpoint_config_mismatch_lists_keys(tmp_path):
    save_checkpoint(tmp_path, _gpt())
    other = _gpt(n_layer=3, d_model=64)
    with pytest.raises(ValueError, match=r"mismatched keys: d_model \(checkpoint 32 != model 64\); n_layer"):
        load_checkpoint(tmp_path, other)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["config"]["n_layers"] = 2
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="n_layers"):
        load_checkpoint(tmp_path, GPT)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing", GPT)


@pytest.mark.parametrize("damage", ["truncated weights", "config not json", "config a list", "state not json"])
def test_damaged_checkpoint_names_the_file(tmp_path, damage):
    model = _gpt()
    save_checkpoint(tmp_path, model, step=3)
    if damage == "truncated weights":
        file = tmp_path / "model.safetensors"
        file.write_bytes(file.read_bytes()[:100])
    elif damage == "config not json":
        file = tmp_path / "config.json"
        file.write_text("{ not json")
    elif damage == "config a list":
        file = tmp_path / "config.json"
        file.write_text("[1, 2]")
    else:
        file = tmp_path / "trainer_state.json"
        assert file.is_file()
        file.write_text("\x00\x01 garbage")
    with pytest.raises(ValueError, match="is damaged or was not written by save_checkpoint") as info:
        load_checkpoint(tmp_path, GPT)
    assert str(file) in str(info.value)


def test_optimizer_betas_stay_a_tuple_after_a_round_trip(tmp_path):
    model = _gpt()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    model(torch.randint(0, 32, (2, 8)), torch.randint(0, 32, (2, 8))).loss.backward()
    opt.step()
    save_checkpoint(tmp_path, model, optimizer=opt, step=1)
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    load_checkpoint(tmp_path, model, optimizer=opt2)
    assert opt2.param_groups[0]["betas"] == (0.9, 0.95) and isinstance(opt2.param_groups[0]["betas"], tuple)


def test_resume_continues_where_it_stopped(tmp_path):
    data = _data()

    def batches(seed):
        g = torch.Generator().manual_seed(seed)
        return lambda: lm_batch(data, 4, 16, g)

    cfg = dict(lr=3e-3, warmup_steps=3, eval_every=0, progress=False, checkpoint_dir=str(tmp_path))
    first = _gpt()
    hist1 = train(first, batches(0), TrainConfig(max_steps=10, **cfg))
    assert checkpoint_exists(tmp_path) and (tmp_path / "optimizer.safetensors").exists()
    resumed = _gpt(seed=5)  # different init: everything must come from the checkpoint
    hist2 = train(resumed, batches(1), TrainConfig(max_steps=15, resume=True, **cfg))
    assert hist2.steps[:10] == hist1.steps and hist2.steps[-1] == 15 and len(hist2.train_loss) == 15
    # The optimizer state was restored too: one more identical step from the checkpoint agrees.
    a, b = _gpt(seed=1), _gpt(seed=2)
    opt_a, opt_b = make_optimizer(a), make_optimizer(b)
    info = load_checkpoint(tmp_path, a, optimizer=opt_a)
    load_checkpoint(tmp_path, b, optimizer=opt_b)
    assert info["step"] == 15
    x, y = lm_batch(data, 4, 16, torch.Generator().manual_seed(9))
    for m, o in ((a, opt_a), (b, opt_b)):
        m.train()
        compute_loss(m, (x, y)).backward()
        o.step()
    assert torch.equal(a.lm_head.weight, b.lm_head.weight)
    assert opt_a.state_dict()["param_groups"][0]["lr"] == pytest.approx(hist2.lr[-1])


def test_compute_loss_of_micro_batches_is_token_weighted():
    """A list of dict batches is one batch in pieces: the loss is the mean over all labelled tokens."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny")).eval()
    ids = torch.randint(0, model.config.vocab_size, (4, 8))
    labels = ids.clone()
    labels[0, 5:] = -100  # rows with different numbers of labelled tokens
    labels[3, 2:] = -100
    whole = compute_loss(model, {"idx": ids, "targets": labels})
    parts = [{"idx": ids[:1], "targets": labels[:1]}, {"idx": ids[1:], "targets": labels[1:]}]
    with pytest.raises(ValueError, match="labels"):
        compute_loss(model, parts)  # the weights are counted from a 'labels' key
    enc_dec = EncoderDecoder(EncoderDecoderConfig.preset("tiny")).eval()
    src, tgt = torch.randint(3, 16, (4, 5)), torch.randint(3, 16, (4, 6))
    lab = tgt.clone()
    lab[1, 3:] = -100
    lab[2, 1:] = -100
    full = compute_loss(enc_dec, {"src": src, "tgt": tgt, "labels": lab})
    pieces = [{"src": src[i : i + 2], "tgt": tgt[i : i + 2], "labels": lab[i : i + 2]} for i in (0, 2)]
    assert torch.allclose(compute_loss(enc_dec, pieces), full, atol=1e-6)
    assert not torch.allclose(sum(compute_loss(enc_dec, p) for p in pieces) / 2, full, atol=1e-4)  # a plain mean is not it
    assert whole.dim() == 0
    with pytest.raises(ValueError, match="micro-batch"):
        compute_loss(enc_dec, [])


def test_optimizer_step_equals_the_manual_update_and_clips():
    """optimizer_step = zero_grad + backward + clip_grad_norm_ + step, the lines of every training loop."""
    torch.manual_seed(0)
    a = GPT(GPTConfig.preset("tiny"))
    b = GPT(GPTConfig.preset("tiny"))
    b.load_state_dict(a.state_dict())
    oa, ob = make_optimizer(a, lr=1e-2), make_optimizer(b, lr=1e-2)
    x = torch.randint(0, a.config.vocab_size, (2, 8))
    for _ in range(2):
        optimizer_step(a, oa, a(x, targets=x).loss, grad_clip=0.1)
        loss = b(x, targets=x).loss
        ob.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(b.parameters(), 0.1)
        ob.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    grads_norm = torch.norm(torch.stack([p.grad.norm() for p in a.parameters() if p.grad is not None]))
    assert grads_norm <= 0.1 + 1e-5  # clipped
    optimizer_step(a, oa, a(x, targets=x).loss, grad_clip=None)  # no clipping: allowed


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(min_lr=-1.0), ValueError, "min_lr"),
    (dict(lr=1e-3, min_lr=1e-2), ValueError, "min_lr"),
    (dict(weight_decay=-5), ValueError, "weight_decay"),
    (dict(betas=(0.9, 1.5)), ValueError, "betas"),
    (dict(betas=(0.9,)), ValueError, "betas"),
    (dict(lr="1e-3"), TypeError, "lr must be a number"),
    (dict(warmup_steps=2.5), TypeError, "warmup_steps must be an int"),
    (dict(checkpoint_every=-1), ValueError, "checkpoint_every"),
])
def test_train_config_rejects_values_that_would_train_wrongly(kwargs, error, message):
    with pytest.raises(error, match=message):
        TrainConfig(**kwargs)


def test_train_config_betas_become_a_tuple_again():
    assert TrainConfig(betas=[0.9, 0.95]).betas == (0.9, 0.95)


def test_lr_at_rejects_negative_steps_and_bad_rates():
    with pytest.raises(ValueError, match="step must be an int >= 0"):
        lr_at(-1, 100, 1e-3)
    with pytest.raises(ValueError, match="min_lr"):
        lr_at(5, 100, 1e-3, min_lr=-1.0)
    import numpy as np

    assert lr_at(np.int64(5), 100, 1.0, warmup_steps=10) == 0.6  # step 5 of a 10-step warm-up: (5 + 1) / 10


@pytest.mark.parametrize("batch_size,block_size", [(4, 0), (0, 8), (2, -1), (2.0, 4)])
def test_lm_batch_rejects_empty_or_odd_sizes(batch_size, block_size):
    with pytest.raises(ValueError, match="must be an int >= 1"):
        lm_batch(torch.arange(100), batch_size, block_size)


def test_empty_batches_and_bad_steps_are_clear_errors():
    from course_lib.training import evaluate

    model = _gpt()
    with pytest.raises(ValueError, match="empty iterable of batches"):
        evaluate(model, [], 5)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        evaluate(model, lambda: lm_batch(_data(), 2, 8), 0)
    with pytest.raises(TypeError, match="function giving a batch or an iterable"):
        evaluate(model, 42)
    with pytest.raises(ValueError, match="training batches is empty"):
        train(model, [], TrainConfig(max_steps=2, progress=False))
    assert model.training  # evaluate put the mode back even though it raised


def test_shard_batch_lives_with_training_and_the_cli_reexports_it():
    from course_lib import cli, training

    assert cli.shard_batch is training.shard_batch
    x = torch.arange(8).view(8, 1)
    assert [training.shard_batch(x, r, 4).flatten().tolist() for r in range(4)] == [[0, 1], [2, 3], [4, 5], [6, 7]]
