"""Tests for course_lib.post_training: sequence log-probabilities, DPO, GRPO, scoring and the addition task.

The DPO loss is proven two ways: against TRL's sigmoid-loss formula written out independently here
(TRL is not installed), and on a bandit, where minimising it must reach the analytical optimum
pi*(y) ∝ pi_ref(y) exp(r(y) / beta). GRPO is checked against the plain policy-gradient loss.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.models import GPT, GPTConfig
from course_lib.post_training import (
    AdditionTask,
    dpo_loss,
    group_advantages,
    grpo_loss,
    kl_k3,
    preference_pairs,
    sample_groups,
    score,
    sequence_logprobs,
    wilson_interval,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("tiny")).eval()


# ----------------------------------------------------------------------------- sequence_logprobs
def test_sequence_logprobs_equals_a_token_by_token_computation(gpt):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 32, (3, 9), generator=g)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0, 1]])
    got = sequence_logprobs(gpt, ids, mask)
    per_tok = sequence_logprobs(gpt, ids, mask, per_token=True)
    assert got.shape == (3,) and per_tok.shape == (3, 8)
    with torch.no_grad():
        for b in range(3):
            expected = 0.0
            for t in range(1, 9):
                if mask[b, t]:
                    logits = gpt(ids[b : b + 1, :t]).logits[0, -1]  # only the context before token t
                    lp = torch.log_softmax(logits, -1)[ids[b, t]]
                    expected += float(lp)
                    assert per_tok[b, t - 1].item() == pytest.approx(float(lp), abs=1e-5)
                else:
                    assert per_tok[b, t - 1].item() == 0.0
            assert got[b].item() == pytest.approx(expected, abs=1e-4)


def test_sequence_logprobs_ignores_padding_and_batches(gpt):
    ids = torch.tensor([[1, 2, 3, 4, 0, 0]])
    mask = torch.tensor([[0, 0, 1, 1, 0, 0]])
    other = ids.clone()
    other[0, 4:] = torch.tensor([7, 9])  # different padding after the response
    a, b = sequence_logprobs(gpt, ids, mask), sequence_logprobs(gpt, other, mask)
    assert torch.allclose(a, b, atol=1e-6)
    both = sequence_logprobs(gpt, torch.cat([ids, other]), torch.cat([mask, mask]))
    assert torch.allclose(both, torch.cat([a, b]), atol=1e-5)


def test_sequence_logprobs_bad_input(gpt):
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="same shape"):
        sequence_logprobs(gpt, ids, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="context of 16"):
        sequence_logprobs(gpt, torch.zeros(1, 17, dtype=torch.long), torch.zeros(1, 17))
    with pytest.raises(ValueError, match="first token"):
        sequence_logprobs(gpt, ids, torch.ones(2, 5))
    with pytest.raises(TypeError, match="integer"):
        sequence_logprobs(gpt, ids.float(), torch.zeros(2, 5))


# ----------------------------------------------------------------------------- DPO
def trl_sigmoid_dpo(pc, pr, rc, rr, beta, label_smoothing=0.0):
    """TRL's DPOTrainer.dpo_loss for loss_type="sigmoid", written out from its documentation."""
    pi_logratios = pc - pr
    ref_logratios = rc - rr
    logits = pi_logratios - ref_logratios
    losses = -F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing
    chosen_rewards = beta * (pc - rc)
    rejected_rewards = beta * (pr - rr)
    return losses, chosen_rewards, rejected_rewards


def test_dpo_loss_matches_trl_formula_and_worked_example():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (-20 * torch.rand(7, generator=g, dtype=torch.float64) for _ in range(4))
    for beta in (0.05, 0.1, 1.0):
        out = dpo_loss(pc, pr, rc, rr, beta)
        losses, cr, rj = trl_sigmoid_dpo(pc, pr, rc, rr, beta)
        assert torch.allclose(out.loss, losses.mean(), atol=1e-12)
        assert torch.allclose(out.chosen_rewards, cr) and torch.allclose(out.rejected_rewards, rj)
        assert torch.allclose(out.margin, cr - rj)
    one = dpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5]), 1.0)
    assert one.margin.item() == pytest.approx(1.0)
    assert one.loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_dpo_gradient_raises_chosen_and_lowers_rejected():
    pc = torch.tensor([-3.0], requires_grad=True)
    pr = torch.tensor([-3.0], requires_grad=True)
    dpo_loss(pc, pr, torch.tensor([-3.0]), torch.tensor([-3.0]), beta=0.5).loss.backward()
    assert pc.grad.item() == pytest.approx(-0.25)  # -beta * sigmoid(-0) = -0.25: descent raises log pi(y_w)
    assert pr.grad.item() == pytest.approx(0.25)


def _bandit(K=5, beta=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.softmax(torch.randn(K, generator=g, dtype=torch.float64), 0)  # pi_ref over K answers
    r = torch.rand(K, generator=g, dtype=torch.float64) * 2.0  # known reward of each answer
    optimum = ref * torch.exp(r / beta)
    return ref, r, optimum / optimum.sum(), g


def _fit_dpo(ref, pairs_w, pairs_l, beta, weights=None, steps=3000):
    """Minimise the DPO loss over a categorical policy (free logits), full batch, with L-BFGS."""
    logits = ref.log().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([logits], lr=1.0, max_iter=steps, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")
    ref_logp = ref.log()

    def closure():
        opt.zero_grad()
        logp = torch.log_softmax(logits, 0)
        if weights is None:  # sampled pairs: the mean loss
            loss = dpo_loss(logp[pairs_w], logp[pairs_l], ref_logp[pairs_w], ref_logp[pairs_l], beta).loss
        else:  # every pair once, weighted by how often it would be drawn and labelled so
            loss = sum(wt * dpo_loss(logp[[i]], logp[[j]], ref_logp[[i]], ref_logp[[j]], beta).loss
                       for wt, i, j in zip(weights, pairs_w.tolist(), pairs_l.tolist()))
        loss.backward()
        return loss

    opt.step(closure)
    return torch.softmax(logits.detach(), 0)


def test_dpo_on_a_bandit_reaches_the_analytical_optimum_exactly():
    """Population DPO loss (every ordered pair weighted by its Bradley-Terry probability): TV < 1e-4."""
    beta = 0.5
    ref, r, optimum, _ = _bandit(beta=beta)
    K = len(ref)
    w, l = zip(*[(i, j) for i in range(K) for j in range(K) if i != j])
    w, l = torch.tensor(w), torch.tensor(l)
    weights = ref[w] * ref[l] * torch.sigmoid(r[w] - r[l])  # P(pair drawn from ref) * P(w preferred)
    policy = _fit_dpo(ref, w, l, beta, weights=weights)
    tv = 0.5 * (policy - optimum).abs().sum().item()
    assert tv < 1e-4, (policy, optimum)
    assert 0.5 * (ref - optimum).abs().sum().item() > 0.1  # the optimum is far from the reference


def test_dpo_on_sampled_bradley_terry_preferences_converges_to_the_optimum():
    """200,000 pairs drawn from pi_ref, labelled by Bradley-Terry on r: total variation to pi* < 0.02."""
    beta = 0.5
    ref, r, optimum, g = _bandit(beta=beta)
    n = 200_000
    y1 = torch.multinomial(ref, n, replacement=True, generator=g)
    y2 = torch.multinomial(ref, n, replacement=True, generator=g)
    keep = y1 != y2
    y1, y2 = y1[keep], y2[keep]
    first_wins = torch.rand(len(y1), generator=g, dtype=torch.float64) < torch.sigmoid(r[y1] - r[y2])
    w = torch.where(first_wins, y1, y2)
    l = torch.where(first_wins, y2, y1)
    policy = _fit_dpo(ref, w, l, beta)
    tv = 0.5 * (policy - optimum).abs().sum().item()
    assert tv < 0.02, (policy, optimum, tv)


def test_dpo_bad_input():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="one batch size"):
        dpo_loss(x, torch.zeros(4), x, torch.zeros(4), 0.1)
    with pytest.raises(ValueError, match="one batch size"):
        dpo_loss(x, x, torch.zeros(2), x, 0.1)
    for beta in (0, -0.1, float("inf"), True):
        with pytest.raises(ValueError, match="beta"):
            dpo_loss(x, x, x, x, beta)
    with pytest.raises(ValueError, match="1 dimension"):
        dpo_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), 0.1)


# ----------------------------------------------------------------------------- GRPO
def test_group_advantages_sum_to_zero_and_match_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    rewards = torch.randint(0, 2, (6, 8), generator=g).float()
    rewards[0] = 1.0  # a group with one reward for all: advantages 0
    adv = group_advantages(rewards)
    assert adv.shape == (6, 8)
    assert torch.allclose(adv.sum(1), torch.zeros(6), atol=1e-5)
    assert torch.equal(adv[0], torch.zeros(8))
    for i in range(6):
        row = rewards[i].tolist()
        mean = sum(row) / 8
        std = math.sqrt(sum((x - mean) ** 2 for x in row) / 7)
        for j in range(8):
            assert adv[i, j].item() == pytest.approx((row[j] - mean) / (std + 1e-4), abs=1e-5)
    assert group_advantages(torch.tensor([[1.0, 0, 0, 1]]))[0].tolist() == pytest.approx([0.866, -0.866, -0.866, 0.866], abs=1e-3)
    assert torch.allclose(group_advantages(rewards, scale=False).sum(1), torch.zeros(6), atol=1e-6)


def test_group_advantages_bad_input():
    with pytest.raises(ValueError, match="undefined"):
        group_advantages(torch.ones(4, 1))
    with pytest.raises(ValueError, match="2 dimension"):
        group_advantages(torch.ones(8))
    with pytest.raises(ValueError, match="finite"):
        group_advantages(torch.tensor([[1.0, float("nan")]]))


def test_kl_k3_is_nonnegative_zero_when_equal_and_unbiased():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, generator=g), torch.randn(1000, generator=g)
    assert bool((kl_k3(a, b) >= 0).all())
    assert torch.equal(kl_k3(a, a), torch.zeros(1000))
    assert kl_k3(torch.tensor(math.log(0.5)), torch.tensor(math.log(0.25))).item() == pytest.approx(0.5 - math.log(0.5) - 1)
    # unbiased: the mean over samples from p approaches KL(p || q)
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    q = torch.tensor([0.2, 0.2, 0.6], dtype=torch.float64)
    y = torch.multinomial(p, 400_000, replacement=True, generator=g)
    estimate = kl_k3(p.log()[y], q.log()[y]).mean().item()
    assert estimate == pytest.approx((p * (p / q).log()).sum().item(), abs=0.01)


def _grpo_inputs(seed=0, B=6, T=7):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, 5, generator=g, dtype=torch.float64)
    tokens = torch.randint(0, 5, (B, T), generator=g)
    mask = torch.zeros(B, T)
    for b in range(B):
        start, end = 2, 3 + b % (T - 2)
        mask[b, start:end] = 1
    ref = torch.log_softmax(torch.randn(B, T, 5, generator=g, dtype=torch.float64), -1).gather(-1, tokens[..., None])[..., 0]
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    return logits, tokens, mask.double(), ref, adv


def test_grpo_with_one_update_is_the_policy_gradient_loss():
    logits, tokens, mask, ref, adv = _grpo_inputs()
    logits = logits.requires_grad_(True)
    new = torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]  # (B, T)
    out = grpo_loss(new, new.detach(), ref, adv, mask, clip_eps=0.2, kl_beta=0.0)
    (g_grpo,) = torch.autograd.grad(out.loss, logits, retain_graph=True)
    pg = -((adv[:, None] * new) * mask).sum() / mask.sum()  # -(A * log pi) averaged over response tokens
    (g_pg,) = torch.autograd.grad(pg, logits)
    assert out.loss.item() == pytest.approx((-(adv[:, None] * mask).sum() / mask.sum()).item(), abs=1e-12)  # ratio = 1
    assert torch.allclose(g_grpo, g_pg, atol=1e-12)
    assert out.clip_fraction.item() == 0.0 and out.kl.item() > 0


def test_grpo_clipping_and_kl_term():
    logits, tokens, mask, ref, adv = _grpo_inputs(1)
    new = torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
    old = new + 0.5  # ratio = exp(-0.5) = 0.61 < 0.8: clipped where the advantage is negative
    out = grpo_loss(new, old, ref, adv, mask, clip_eps=0.2, kl_beta=0.1)
    ratio = torch.exp(new - old)
    per_token = -torch.minimum(ratio * adv[:, None], ratio.clamp(0.8, 1.2) * adv[:, None]) + 0.1 * kl_k3(new, ref)
    assert out.loss.item() == pytest.approx(((per_token * mask).sum() / mask.sum()).item(), abs=1e-12)
    assert 0 < out.clip_fraction.item() < 1


def test_grpo_masked_tokens_contribute_nothing():
    logits, tokens, mask, ref, adv = _grpo_inputs(2)
    logits = logits.requires_grad_(True)
    new = torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
    out = grpo_loss(new, new.detach() - 0.1, ref, adv, mask, kl_beta=0.04)
    (grad,) = torch.autograd.grad(out.loss, logits)
    assert torch.equal(grad[mask == 0], torch.zeros_like(grad[mask == 0]))  # no gradient through masked tokens
    # change every masked value (even to -inf): the same loss
    junk = torch.where(mask.bool(), new.detach(), torch.full_like(new, -float("inf")))
    old2 = torch.where(mask.bool(), new.detach() - 0.1, torch.full_like(new, 123.0))
    ref2 = torch.where(mask.bool(), ref, torch.full_like(ref, -50.0))
    out2 = grpo_loss(junk, old2, ref2, adv, mask, kl_beta=0.04)
    assert out2.loss.item() == pytest.approx(out.loss.item(), abs=1e-12)
    assert torch.isfinite(out2.loss)


def test_grpo_bad_input():
    x = torch.zeros(2, 3)
    m = torch.ones(2, 3)
    with pytest.raises(ValueError, match="one shape"):
        grpo_loss(x, torch.zeros(2, 4), x, torch.zeros(2), m)
    with pytest.raises(ValueError, match="one entry per sample"):
        grpo_loss(x, x, x, torch.zeros(3), m)
    with pytest.raises(ValueError, match="clip_eps"):
        grpo_loss(x, x, x, torch.zeros(2), m, clip_eps=0)
    with pytest.raises(ValueError, match="kl_beta"):
        grpo_loss(x, x, x, torch.zeros(2), m, kl_beta=-1)
    with pytest.raises(ValueError, match="no response tokens"):
        grpo_loss(x, x, x, torch.zeros(2), torch.zeros(2, 3))


# ----------------------------------------------------------------------------- sampling, scoring, the task
def test_sample_groups_masks_prompt_and_after_eos(gpt):
    prompts = torch.tensor([[1, 2, 3], [4, 5, 6]])
    ids, mask = sample_groups(gpt, prompts, group_size=4, max_new_tokens=8, eos_id=7,
                              temperature=3.0, generator=torch.Generator().manual_seed(0))
    assert ids.shape == mask.shape == (8, 11)
    assert torch.equal(ids[:4, :3], prompts[:1].expand(4, 3)) and torch.equal(ids[4:, :3], prompts[1:].expand(4, 3))
    assert int(mask[:, :3].sum()) == 0
    for row, m in zip(ids.tolist(), mask.tolist()):
        new, mnew = row[3:], m[3:]
        n_kept = new.index(7) + 1 if 7 in new else len(new)
        assert mnew == [1] * n_kept + [0] * (len(new) - n_kept)
    with pytest.raises(ValueError, match="context of 16"):
        sample_groups(gpt, prompts, 2, 14, eos_id=7)


def test_score_demands_one_number_per_sample():
    assert score(len, ["ab", "abc"]).tolist() == [2.0, 3.0]
    assert score(lambda s: s == "x", ["x", "y"]).tolist() == [1.0, 0.0]
    assert score(lambda s: torch.tensor(0.5), ["x"]).tolist() == [0.5]
    for bad in (lambda s: [1.0, 2.0], lambda s: None, lambda s: "1", lambda s: torch.ones(2)):
        with pytest.raises(TypeError, match="one number per sample"):
            score(bad, ["a", "b"])
    with pytest.raises(ValueError, match="finite"):
        score(lambda s: float("nan"), ["a"])
    with pytest.raises(TypeError, match="callable"):
        score(3, ["a"])


def test_addition_task_and_its_checker():
    t = AdditionTask(3)
    assert (t.prompt(42, 175), t.answer(42, 175)) == ("042+175=", "0217")
    assert AdditionTask(3, reverse=True).answer(42, 175) == "7120"
    assert t.decode(t.encode("12+3=$")) == "12+3=$"
    ids, mask = t.demonstrations([(42, 175), (999, 999)])
    assert ids.shape == (2, t.prompt_len + t.answer_len) and t.decode(ids[1].tolist()) == "999+999=1998$"
    assert mask[0].tolist() == [0] * 8 + [1] * 5
    assert t.reward(((42, 175), t.encode("0217$"))) == 1.0
    assert t.reward(((42, 175), t.encode("0217$99"))) == 1.0  # what follows the end token is ignored
    assert t.reward(((42, 175), t.encode("0217"))) == 0.0  # no end token
    assert t.reward(((42, 175), t.encode("217$"))) == 0.0
    train = t.problems(300, seed=0)
    test = t.problems(200, seed=1, exclude=set(train))
    assert len(set(train)) == 300 and not set(train) & set(test) and t.problems(300, seed=0) == train
    assert t.prompt_ids(train[:4]).shape == (4, 8)
    with pytest.raises(ValueError, match="vocabulary"):
        t.encode("1-2")
    with pytest.raises(ValueError, match="operands"):
        t.prompt(1000, 1)
    with pytest.raises(ValueError, match="n_digits"):
        AdditionTask(0)


def test_addition_task_length_reward_and_evaluate(gpt):
    t = AdditionTask(2)
    assert t.length_reward(((1, 2), t.encode("003$"))) == 0.75
    assert t.length_reward(((1, 2), t.encode("99999"))) == 1.0  # the flaw: no end token, no correctness
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=t.vocab_size, block_size=16, n_layer=1, n_head=2, d_model=16))
    res = t.evaluate(model, [(1, 2), (30, 40)])
    assert len(res) == 2 and all(isinstance(r, bool) for r in res)


def test_preference_pairs():
    assert preference_pairs(torch.tensor([[1.0, 0, 1, 0]])) == [(0, 3), (2, 1)]
    assert preference_pairs(torch.tensor([[1.0, 1, 1, 1], [0.0, 0.5, 1, 0]])) == [(6, 7), (5, 4)]
    assert preference_pairs(torch.tensor([[1.0, 0, 1, 0]]), max_pairs_per_prompt=1) == [(0, 3)]


def test_wilson_interval():
    lo, hi = wilson_interval(50, 100)
    assert (round(lo, 3), round(hi, 3)) == (0.404, 0.596)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(5, 3)
