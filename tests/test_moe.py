"""Tests for course_lib.moe: routing invariants, equality with the dense layer, causality, the MoE GPT."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.layers import FeedForward
from course_lib.models import GPT, GPTConfig
from course_lib.moe import (
    ExpertChoiceMoE,
    MoEGPT,
    MoEGPTConfig,
    Routing,
    TokenChoiceMoE,
    expert_capacity,
    expert_choice_route,
    load_balancing_loss,
    moe_layers,
    token_choice_route,
)
from course_lib.training import TrainConfig, load_checkpoint, save_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny layers: one thread is faster, and a shared CPU cannot stall them

def _logits(n: int, e: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(n, e, generator=torch.Generator().manual_seed(seed)) * scale


# ----------------------------------------------------------------------------- expert_capacity
def test_expert_capacity_values():
    assert expert_capacity(64, 4, 1.25, k=2) == 40
    assert expert_capacity(64, 4, 1.0) == 16
    assert expert_capacity(64, 4, 4.0) == 64  # expert choice with cf = E: every expert takes every token
    assert expert_capacity(10, 4, 1.0) == 3  # ceil(2.5)
    assert expert_capacity(1, 8, 1.0) == 1  # at least one


@pytest.mark.parametrize("args", [(0, 4, 1.0), (8, 0, 1.0), (8, 4, 0.0), (8, 4, -1.0), (8, 4, 1.0, 0), (8.0, 4, 1.0)])
def test_expert_capacity_errors(args):
    with pytest.raises(ValueError):
        expert_capacity(*args)


# ----------------------------------------------------------------------------- token choice
@pytest.mark.parametrize("k, capacity", [(1, None), (2, None), (1, 5), (2, 7), (2, 1), (3, 20)])
def test_token_choice_invariants(k, capacity):
    N, E = 48, 6
    logits = _logits(N, E, seed=k * 100 + (capacity or 0), scale=2.0)
    r = token_choice_route(logits, k, capacity)
    assert isinstance(r, Routing) and r.dispatch.shape == (N, E) and r.combine.shape == (N, E)
    assert (r.experts_per_token <= k).all()  # every token goes to at most k experts
    if capacity is not None:
        assert (r.tokens_per_expert <= capacity).all()  # no expert exceeds its capacity
    assert r.dropped == N * k - int(r.dispatch.sum())  # dropped choices are counted
    assert ((r.combine > 0) == r.dispatch).all()  # weights only where dispatched
    top = logits.topk(k, dim=-1).indices  # routed experts are among the token's top k
    chosen = torch.zeros(N, E, dtype=torch.bool).scatter(1, top, True)
    assert (r.dispatch <= chosen).all()
    if capacity is None:
        assert r.dropped == 0 and (r.experts_per_token == k).all()
        assert torch.allclose(r.combine.sum(-1), torch.ones(N))  # renormalised gates sum to 1


def test_token_choice_gates_unnormalised_are_softmax_probs():
    logits = _logits(10, 4, seed=3)
    r = token_choice_route(logits, 2, normalize=False)
    probs = logits.softmax(-1)
    assert torch.allclose(r.combine[r.dispatch], probs[r.dispatch])


def test_token_choice_priority_first_choices_before_second():
    # every token's first choice is expert 0, second choice expert 1; capacity 2
    logits = torch.tensor([[3.0, 2.0, 0.0], [3.0, 2.0, 0.0], [3.0, 2.0, 0.0], [0.0, 3.0, 2.0]])
    r = token_choice_route(logits, k=2, capacity=2)
    # expert 0: tokens 0, 1 (first choices); token 2's first choice dropped
    assert r.dispatch[:, 0].tolist() == [True, True, False, False]
    # expert 1: token 3's FIRST choice goes in before any second choice, then token 0's second choice
    assert r.dispatch[:, 1].tolist() == [True, False, False, True]
    assert r.dropped == 8 - 5
    assert r.unrouted_tokens == 1  # token 2 lost both choices


def test_token_choice_route_errors():
    with pytest.raises(ValueError, match="k must be"):
        token_choice_route(_logits(4, 3), k=4)
    with pytest.raises(ValueError, match="capacity"):
        token_choice_route(_logits(4, 3), k=1, capacity=0)
    with pytest.raises(ValueError, match=r"\(N tokens, E experts\)"):
        token_choice_route(torch.zeros(2, 3, 4), k=1)
    with pytest.raises(TypeError):
        token_choice_route([[1.0, 2.0]], k=1)


# ----------------------------------------------------------------------------- expert choice
@pytest.mark.parametrize("capacity", [1, 5, 12, 48])
def test_expert_choice_every_expert_exactly_full(capacity):
    N, E = 48, 4
    logits = _logits(N, E, seed=capacity, scale=2.0)
    r = expert_choice_route(logits, capacity)
    assert (r.tokens_per_expert == capacity).all()  # every expert receives exactly its capacity
    assert int(r.experts_per_token.sum()) == E * capacity  # a token may get 0..E experts
    probs = logits.softmax(-1)
    for e in range(E):  # expert e took the tokens with the highest probability for it
        picked = set(torch.nonzero(r.dispatch[:, e]).squeeze(-1).tolist())
        assert picked == set(probs[:, e].topk(capacity).indices.tolist())
    assert torch.allclose(r.combine[r.dispatch], probs[r.dispatch])
    assert r.aux_loss is None and r.dropped == 0


def test_expert_choice_tokens_get_zero_or_several_experts():
    r = expert_choice_route(_logits(64, 4, seed=1, scale=3.0), capacity=16)  # one expert per token on average
    counts = r.experts_per_token
    assert counts.min() == 0 and counts.max() >= 2
    assert r.unrouted_tokens == int((counts == 0).sum())


def test_expert_choice_route_errors():
    with pytest.raises(ValueError, match="capacity"):
        expert_choice_route(_logits(4, 2), capacity=5)
    with pytest.raises(ValueError, match="capacity"):
        expert_choice_route(_logits(4, 2), capacity=0)


# ----------------------------------------------------------------------------- aux loss
def test_load_balancing_loss_formula():
    N, E, k = 32, 4, 2
    logits = _logits(N, E, seed=5).requires_grad_()
    probs = logits.softmax(-1)
    idx = probs.topk(k, -1).indices
    loss = load_balancing_loss(probs, idx)
    f = torch.stack([(idx == e).float().sum() for e in range(E)]) / (N * k)
    assert torch.allclose(loss, E * (f * probs.mean(0)).sum())
    loss.backward()  # differentiable through P_e
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_load_balancing_loss_balanced_is_one_and_collapsed_is_e():
    E = 4
    uniform = torch.full((8, E), 1 / E)
    assert math.isclose(load_balancing_loss(uniform, torch.arange(8)[:, None] % E).item(), 1.0, rel_tol=1e-6)
    collapsed = torch.zeros(8, E)
    collapsed[:, 0] = 1.0
    assert math.isclose(load_balancing_loss(collapsed, torch.zeros(8, 1, dtype=torch.long)).item(), E, rel_tol=1e-6)
    with pytest.raises(ValueError, match="expert_index"):
        load_balancing_loss(uniform, torch.zeros(3, 1, dtype=torch.long))


# ----------------------------------------------------------------------------- layers: equal to the dense layer
@pytest.mark.parametrize("k, cf", [(1, None), (2, None), (2, 2.0), (3, 4 / 3)])
def test_token_choice_with_shared_weights_equals_dense(k, cf):
    torch.manual_seed(0)
    dense = FeedForward(16, 32)
    moe = TokenChoiceMoE(16, 32, n_experts=4, k=k, capacity_factor=cf).load_from_dense(dense)
    x = torch.randn(3, 10, 16)
    moe.train()  # capacity applies in training mode; cf = E/k guarantees room for every choice
    assert torch.allclose(moe(x), dense(x), atol=1e-6)
    assert moe.last_routing.dropped == 0


def test_token_choice_with_tight_capacity_differs_from_dense():
    torch.manual_seed(0)
    dense = FeedForward(16, 32)
    moe = TokenChoiceMoE(16, 32, n_experts=4, k=1, capacity_factor=0.5).load_from_dense(dense)
    x = torch.randn(2, 16, 16)
    y = moe(x)
    assert moe.last_routing.dropped > 0
    rows = moe.last_routing.experts_per_token == 0
    assert torch.all(y.reshape(-1, 16)[rows] == 0)  # dropped tokens get 0 from the FFN
    assert not torch.allclose(y, dense(x), atol=1e-4)


def test_expert_choice_with_shared_weights_and_full_capacity_equals_dense():
    torch.manual_seed(0)
    dense = FeedForward(16, 32)
    moe = ExpertChoiceMoE(16, 32, n_experts=4, capacity_factor=4.0).load_from_dense(dense)  # C = N
    x = torch.randn(3, 10, 16)
    assert torch.allclose(moe(x), dense(x), atol=1e-6)
    assert (moe.last_routing.experts_per_token == 4).all()  # softmax gates over all experts sum to 1


def test_moe_layer_matches_explicit_sum():
    torch.manual_seed(1)
    moe = TokenChoiceMoE(8, 16, n_experts=3, k=2, capacity_factor=None)
    x = torch.randn(5, 8)
    y = moe(x)
    r = moe.last_routing
    manual = sum(r.combine[:, e, None] * moe.experts[e](x) for e in range(3))
    assert torch.allclose(y, manual, atol=1e-6)


def test_layer_errors_and_stats():
    with pytest.raises(ValueError, match="d_model=8"):
        TokenChoiceMoE(8, 16)(torch.zeros(2, 3, 9))
    with pytest.raises(ValueError, match="k must be"):
        TokenChoiceMoE(8, 16, n_experts=2, k=3)
    with pytest.raises(ValueError, match="inference"):
        ExpertChoiceMoE(8, 16, inference="greedy")
    with pytest.raises(ValueError, match="d_ff"):
        TokenChoiceMoE(8, 16).load_from_dense(FeedForward(8, 32))
    moe = TokenChoiceMoE(8, 16, n_experts=4, k=2, capacity_factor=1.0)
    moe(torch.randn(4, 8, 8))
    assert moe.stats["tokens"] == 32 and int(moe.load.sum()) + moe.stats["dropped"] == 64
    moe.eval()
    moe(torch.randn(4, 8, 8))  # eval mode: counters unchanged
    assert moe.stats["tokens"] == 32
    moe.reset_stats()
    assert moe.stats["tokens"] == 0 and int(moe.load.sum()) == 0


def test_gradients_reach_router_and_experts():
    torch.manual_seed(0)
    for moe in (TokenChoiceMoE(8, 16, 4, k=2), ExpertChoiceMoE(8, 16, 4, capacity_factor=2.0)):
        y = moe(torch.randn(2, 6, 8))
        (y.pow(2).sum() + moe.aux_loss).backward()
        assert moe.router.weight.grad.abs().sum() > 0
        assert any(e.fc1.weight.grad is not None for e in moe.experts)


# ----------------------------------------------------------------------------- demand, shared experts, bias-based balancing
def test_token_choice_demand_counts_choices_before_capacity():
    logits = _logits(40, 4, seed=7, scale=3.0)
    logits[:, 0] += 2.0  # a popular expert, so some choices overflow
    r = token_choice_route(logits, k=2, capacity=expert_capacity(40, 4, 1.0, 2))
    idx = logits.softmax(-1).topk(2, -1).indices
    assert r.demand.tolist() == [int((idx == e).sum()) for e in range(4)]
    assert int(r.demand.sum()) == 80 and r.dropped > 0
    assert int(r.demand.sum()) - int(r.dispatch.sum()) == r.dropped
    assert torch.equal(expert_choice_route(logits, 5).demand, torch.full((4,), 5))


def test_selection_bias_worked_example():
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()  # probs [0.5, 0.3, 0.2]
    bias = torch.tensor([-0.3, 0.0, 0.0])
    raw = token_choice_route(logits, k=1, normalize=False, selection_bias=bias)
    assert raw.dispatch[0].tolist() == [False, True, False]
    assert torch.allclose(raw.combine[0], torch.tensor([0.0, 0.3, 0.0]))
    assert torch.allclose(token_choice_route(logits, k=1, normalize=True, selection_bias=bias).combine[0], torch.tensor([0.0, 1.0, 0.0]))
    assert token_choice_route(logits, k=1).dispatch[0].tolist() == [True, False, False]  # without the bias


@pytest.mark.parametrize("normalize", [True, False])
def test_selection_bias_changes_choices_not_gate_values(normalize):
    N, E, k = 64, 4, 2
    logits = _logits(N, E, seed=11)
    probs = logits.softmax(-1)
    bias = torch.tensor([0.3, -0.2, 0.0, 0.1])
    r = token_choice_route(logits, k, normalize=normalize, selection_bias=bias)
    ref_idx = (probs + bias).topk(k, -1).indices  # reference: pick with the bias ...
    ref = torch.zeros(N, E).scatter(1, ref_idx, probs.gather(1, ref_idx))  # ... gate with the plain probabilities
    if normalize:
        ref = ref / ref.sum(-1, keepdim=True)
    assert torch.allclose(r.combine, ref, atol=1e-6)
    assert not torch.equal(r.dispatch, token_choice_route(logits, k).dispatch)  # the bias did move some choices
    assert torch.equal(token_choice_route(logits, k, selection_bias=torch.zeros(E)).combine, token_choice_route(logits, k).combine)
    with pytest.raises(ValueError, match="selection_bias"):
        token_choice_route(logits, k, selection_bias=torch.zeros(E + 1))


def _skewed_layer(speed: float, k: int = 2) -> TokenChoiceMoE:
    torch.manual_seed(0)
    layer = TokenChoiceMoE(8, 16, n_experts=4, k=k, capacity_factor=None, bias_update_speed=speed)
    with torch.no_grad():
        layer.router.weight[0] += 0.3  # inputs below have a positive mean: expert 0 is (nearly) everyone's favourite
    return layer


def _imbalance(layer: TokenChoiceMoE, x: torch.Tensor) -> float:
    layer(x)
    d = layer.last_routing.demand.float()
    return (d.max() / d.mean()).item()


def test_bias_balancing_drives_a_skewed_router_to_uniform_load():
    x = torch.randn(4, 32, 8, generator=torch.Generator().manual_seed(1)) + 1.0
    plain, balanced = _skewed_layer(0.0), _skewed_layer(0.01)
    assert torch.equal(plain.router.weight, balanced.router.weight)
    before = _imbalance(balanced, x)  # first forward: bias still 0
    assert before > 1.8  # expert 0 is chosen by (nearly) every token: max/mean near E/k = 2
    with torch.no_grad():
        for step in range(300):
            xs = torch.randn(4, 32, 8, generator=torch.Generator().manual_seed(100 + step)) + 1.0
            balanced(xs), plain(xs)
    assert _imbalance(balanced, x) < 1.3 < 1.8 < _imbalance(plain, x)  # the bias balanced the load, no aux loss, no gradient
    assert balanced.routing_bias[0] < 0 and torch.all(balanced.routing_bias[1:] > balanced.routing_bias[0])
    assert torch.all(plain.routing_bias == 0)
    assert torch.equal(plain.router.weight, balanced.router.weight)  # nothing but the bias changed


def test_bias_balancing_keeps_unbiased_gates_and_updates_only_in_training():
    layer = _skewed_layer(0.02, k=1)
    layer.normalize = False
    for step in range(50):
        layer(torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(step)) + 1.0)
    bias = layer.routing_bias.clone()
    assert bias.abs().sum() > 0
    layer.eval()
    x = torch.randn(2, 16, 8) + 1.0
    layer(x)
    r = layer.last_routing
    assert torch.equal(layer.routing_bias, bias)  # eval mode: no update
    probs = layer.router(x.reshape(-1, 8)).softmax(-1)
    assert torch.allclose(r.combine[r.dispatch], probs[r.dispatch], atol=1e-6)  # gate = the unbiased probability
    assert not torch.equal(r.dispatch, torch.nn.functional.one_hot(probs.argmax(-1), 4).bool())  # ... yet the choice moved
    assert "routing_bias" in layer.state_dict()  # saved in checkpoints: inference routes with it
    with pytest.raises(ValueError, match="bias_update_speed"):
        TokenChoiceMoE(8, 16, bias_update_speed=-0.1)


def test_shared_expert_adds_an_always_on_ffn():
    torch.manual_seed(2)
    moe = TokenChoiceMoE(8, 16, n_experts=3, k=1, capacity_factor=None, n_shared=1, shared_d_ff=24)
    assert moe.shared[0].d_ff == 24 and len(moe.experts) == 3
    x = torch.randn(5, 8)
    y = moe(x)
    r = moe.last_routing
    manual = sum(r.combine[:, e, None] * moe.experts[e](x) for e in range(3)) + moe.shared[0](x)
    assert torch.allclose(y, manual, atol=1e-6)
    (y.pow(2).sum()).backward()
    assert moe.shared[0].fc1.weight.grad.abs().sum() > 0
    ec = ExpertChoiceMoE(8, 16, n_experts=2, capacity_factor=1.0, n_shared=2)
    r_out = ec(x)
    manual = sum(ec.last_routing.combine[:, e, None] * ec.experts[e](x) for e in range(2)) + ec.shared[0](x) + ec.shared[1](x)
    assert torch.allclose(r_out, manual, atol=1e-6)
    with pytest.raises(ValueError, match="shared"):
        moe.load_from_dense(FeedForward(8, 16))
    with pytest.raises(ValueError, match="n_shared"):
        TokenChoiceMoE(8, 16, n_shared=-1)


def test_moegpt_with_shared_expert_and_bias_balancing():
    cfg = MoEGPTConfig.preset("tiny", top_k=1, normalize_gates=False, n_shared_experts=1, bias_update_speed=0.01, aux_loss_coef=0.0)
    model = MoEGPT(cfg)
    plain = MoEGPT(MoEGPTConfig.preset("tiny", top_k=1))
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == cfg.n_layer * sum(p.numel() for p in model.blocks[0].ffn.shared[0].parameters())
    x = torch.randint(0, 32, (2, 8))
    model(x, x)
    assert all(layer.routing_bias.abs().sum() > 0 for layer in moe_layers(model))  # one training step moved the bias
    with pytest.raises(ValueError, match="bias_update_speed"):
        MoEGPTConfig.preset("tiny", moe="expert_choice", capacity_factor=2.0, bias_update_speed=0.01)


# ----------------------------------------------------------------------------- causality
def test_token_choice_routing_of_a_token_depends_only_on_itself():
    torch.manual_seed(0)
    moe = TokenChoiceMoE(8, 16, 4, k=2).eval()  # eval: no capacity, nothing dropped
    x = torch.randn(1, 12, 8)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(1, 6, 8)  # change the "future" tokens
    y, d = moe(x), moe.last_routing.dispatch
    y2, d2 = moe(x2), moe.last_routing.dispatch
    assert torch.equal(d[:6], d2[:6]) and torch.allclose(y[:, :6], y2[:, :6], atol=1e-6)
    y1 = moe(x[:, :1])  # a single token alone gets the same output
    assert torch.allclose(y1[0, 0], y[0, 0], atol=1e-6)


def test_expert_choice_routing_depends_on_later_tokens():
    torch.manual_seed(0)
    moe = ExpertChoiceMoE(8, 16, 4, capacity_factor=1.0).eval()
    x = torch.randn(1, 32, 8)
    moe(x)
    d = moe.last_routing.dispatch
    changed = 0
    for seed in range(5):
        x2 = x.clone()
        x2[:, 16:] = torch.randn(1, 16, 8, generator=torch.Generator().manual_seed(seed)) * 3
        moe(x2)
        changed += int((moe.last_routing.dispatch[:16] != d[:16]).any())
    assert changed > 0  # some earlier token's experts changed because later tokens changed


def test_expert_choice_threshold_inference_is_causal():
    torch.manual_seed(0)
    moe = ExpertChoiceMoE(8, 16, 4, capacity_factor=2.0, inference="threshold")
    with pytest.raises(RuntimeError, match="train"):
        moe.eval()(torch.randn(1, 4, 8))
    moe.train()
    for _ in range(3):
        moe(torch.randn(4, 16, 8))
    assert not torch.isnan(moe.thresholds).any()
    moe.eval()
    x = torch.randn(1, 10, 8)
    y = moe(x)
    assert torch.allclose(moe(x[:, :3]), y[:, :3], atol=1e-6)
    r = moe.last_routing
    assert torch.equal(r.dispatch, r.probs >= moe.thresholds)


# ----------------------------------------------------------------------------- MoE GPT
def test_moegpt_config_defaults_and_errors():
    c = MoEGPTConfig.preset("tiny")
    assert c.expert_width == 4 * 32 // 2
    with pytest.raises(ValueError, match="moe must be"):
        MoEGPTConfig.preset("tiny", moe="soft")
    with pytest.raises(ValueError, match="capacity_factor"):
        MoEGPTConfig.preset("tiny", moe="expert_choice", capacity_factor=None)
    with pytest.raises(TypeError):
        MoEGPT(GPTConfig.preset("tiny"))


@pytest.mark.parametrize("kind", ["token_choice", "expert_choice"])
def test_moegpt_forward_loss_and_active_parameters(kind):
    torch.manual_seed(0)
    cfg = MoEGPTConfig.preset("tiny", moe=kind, capacity_factor=2.0 if kind == "expert_choice" else 1.25)
    model = MoEGPT(cfg)
    assert len(moe_layers(model)) == cfg.n_layer
    x = torch.randint(0, 32, (2, 8))
    out = model(x, x)
    assert out.logits.shape == (2, 8, 32)
    expected = model.last_lm_loss + cfg.aux_loss_coef * model.last_aux_loss
    assert torch.allclose(out.loss, expected)
    if kind == "token_choice":
        assert model.last_aux_loss > 0
    model.eval()
    assert torch.allclose(model(x, x).loss, model.last_lm_loss)  # eval: the LM loss only
    # same active FFN parameters per token as a dense GPT with d_ff = k * expert width
    dense = GPT(GPTConfig.preset("tiny"))
    e = model.blocks[0].ffn.experts[0]
    assert 2 * e.fc1.weight.numel() == dense.blocks[0].ffn.fc1.weight.numel()


def test_moegpt_trains_saves_loads_and_generates(tmp_path):
    torch.manual_seed(0)
    model = MoEGPT(MoEGPTConfig.preset("tiny", moe="expert_choice", capacity_factor=2.0, ec_inference="threshold"))
    data = torch.arange(8).repeat(2, 2)  # (2, 16), a repeating pattern
    hist = train(model, lambda: (data[:, :-1], data[:, 1:]), TrainConfig(max_steps=30, lr=1e-2, warmup_steps=0, progress=False, eval_every=0))
    assert hist.train_loss[-1] < hist.train_loss[0]
    save_checkpoint(tmp_path, model)
    info = load_checkpoint(tmp_path, MoEGPT)
    loaded = info["model"].eval()
    assert torch.equal(loaded.blocks[0].ffn.thresholds, model.blocks[0].ffn.thresholds)
    assert torch.allclose(loaded(data[:, :-1]).logits, model.eval()(data[:, :-1]).logits)
    out = loaded.generate(data[:1, :4], 6, greedy=True)
    assert out.shape == (1, 10)


# ----------------------------------------------------------------------------- exercise checkers (notebook 09)
def _todo(*args):
    raise NotImplementedError


def test_ch09_checkers_accept_solutions_and_reject_wrong_answers(capsys):
    import torch.nn.functional as F

    from course_lib.exercises import ExerciseError, ch09

    def top_k_gates(logits, k):
        probs = logits.softmax(-1)
        vals, idx = probs.topk(k, dim=-1)
        return torch.zeros_like(probs).scatter(1, idx, vals / vals.sum(-1, keepdim=True))

    def capacity(n, e, cf, k):
        return math.ceil(cf * n * k / e)

    def balancing(probs, idx):
        E = probs.shape[1]
        return E * (F.one_hot(idx, E).sum((0, 1)).float() / idx.numel() * probs.mean(0)).sum()

    def expert_choice(logits, c):
        probs = logits.softmax(-1)
        g, idx = probs.t().topk(c, dim=-1)
        return torch.zeros_like(probs).scatter(0, idx.t(), g.t())

    good = {
        ch09.check_top_k_gates: top_k_gates,
        ch09.check_capacity: capacity,
        ch09.check_load_balancing_loss: balancing,
        ch09.check_expert_choice: expert_choice,
    }
    wrong = {
        ch09.check_top_k_gates: lambda logits, k: logits.softmax(-1),  # no top-k
        ch09.check_capacity: lambda n, e, cf, k: int(cf * n / e),  # forgets k
        ch09.check_load_balancing_loss: lambda probs, idx: (probs.mean(0) ** 2).sum(),
        ch09.check_expert_choice: lambda logits, c: top_k_gates(logits, 1),  # token choice instead
    }
    for check, fn in good.items():
        assert check(fn) is True
        assert check(_todo) is None
        with pytest.raises(ExerciseError):
            check(wrong[check])
    assert "not attempted" in capsys.readouterr().out
