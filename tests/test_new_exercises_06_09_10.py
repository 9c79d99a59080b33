"""The exercises that build a new piece (issue 21): notebook 06's greedy decoding with the KV cache,
notebook 09's MoE forward pass and router gradient, notebook 10's packed rows and stop strings.

Each checker passes the solution (the same code as the solutions notebook) and fails typical wrong
answers with an ExerciseError that names the case, the expected and the given value.
"""

import pytest
import torch
import torch.nn.functional as F

from course_lib.chat import masked_targets, pack_conversations, sft_batch
from course_lib.exercises import ExerciseError, ch06, ch09, ch10
from course_lib.generation import generate
from course_lib.moe import token_choice_route


def _fails(checker, fn, *parts):
    with pytest.raises(ExerciseError) as err:
        checker(fn)
    message = str(err.value)
    for part in ("case ", *parts):
        assert part in message, message
    return message


# ============================================================================= 06, exercise 8: decoding with the cache
@torch.no_grad()
def generate_with_cache(model, ids, n):
    cache = model.new_cache()  # one KVCache per block, kept for the whole loop
    logits = model(ids, cache=cache).logits  # the prompt, once: (B, T, V)
    out = ids
    for step in range(n):
        nxt = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1) greedy
        out = torch.cat([out, nxt], dim=1)
        if step < n - 1:
            logits = model(nxt, cache=cache).logits  # only the newest token: (B, 1, V)
    return out


def test_06_solution_passes(capsys):
    assert ch06.check_generate_with_cache(generate_with_cache) is True
    assert "all 4 cases match" in capsys.readouterr().out


def test_06_one_wasted_call_at_the_end_is_allowed():
    @torch.no_grad()
    def one_more_call(model, ids, n):
        cache, out = model.new_cache(), ids
        logits = model(ids, cache=cache).logits
        for _ in range(n):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            out = torch.cat([out, nxt], dim=1)
            logits = model(nxt, cache=cache).logits
        return out

    assert ch06.check_generate_with_cache(one_more_call) is True


def test_06_recomputing_everything_gives_the_tokens_but_fails_on_the_calls():
    @torch.no_grad()
    def no_cache(model, ids, n):
        out = ids
        for _ in range(n):
            out = torch.cat([out, model(out).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        return out

    message = _fails(ch06.check_generate_with_cache, no_cache, "expected:", "got:")
    assert "[3, 1, 1, 1" in message and "[3, 4, 5, 6" in message  # the calls: T then 1s, against a growing T


def test_06_new_token_without_the_cache_fails():
    @torch.no_grad()
    def forgets_the_cache(model, ids, n):  # the new token alone, at position 0, with no context
        out = ids
        logits = model(ids).logits
        for _ in range(n):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            out = torch.cat([out, nxt], dim=1)
            logits = model(nxt).logits
        return out

    _fails(ch06.check_generate_with_cache, forgets_the_cache, "expected:", "got:")


def test_06_argmax_at_the_first_position_fails():
    @torch.no_grad()
    def first_position(model, ids, n):
        cache, out = model.new_cache(), ids
        logits = model(ids, cache=cache).logits
        for _ in range(n):
            nxt = logits[:, 0].argmax(-1, keepdim=True)
            out = torch.cat([out, nxt], dim=1)
            logits = model(nxt, cache=cache).logits
        return out

    _fails(ch06.check_generate_with_cache, first_position, "expected:", "got:")


def test_06_whole_sequence_into_the_cache_is_reported():
    @torch.no_grad()
    def refeeds(model, ids, n):
        cache, out = model.new_cache(), ids
        for _ in range(n):
            out = torch.cat([out, model(out, cache=cache).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        return out

    with pytest.raises(ExerciseError, match="case 1 of 4"):
        ch06.check_generate_with_cache(refeeds)


@pytest.mark.parametrize("seed,B,T,n", ch06._GENERATE_CASES)
def test_06_checker_models_decide_clearly_and_all_paths_agree(seed, B, T, n):
    model = ch06.checker_model(seed)
    ids = torch.randint(0, 24, (B, T), generator=torch.Generator().manual_seed(100 + seed))
    out = generate(model, ids, n, greedy=True)
    assert torch.equal(out, generate(model, ids, n, greedy=True, use_cache=False))
    assert torch.equal(out, generate(model, ids, n, greedy=True, fast=False))
    with torch.no_grad():
        top2 = model(out[:, :-1]).logits[:, T - 1:].topk(2, dim=-1).values  # the positions that chose a new token
    assert (top2[..., 0] - top2[..., 1]).min() > 1e-3  # no near-tie that rounding could flip
    assert len(set(out[:, T:].flatten().tolist())) > 1 or n == 1  # not one token repeated


# ============================================================================= 09, exercise 5: the MoE forward pass
def top_k_gates(logits, k):
    probs = logits.softmax(-1)
    vals, idx = probs.topk(k, dim=-1)
    return torch.zeros_like(probs).scatter(1, idx, vals / vals.sum(-1, keepdim=True))


def moe_forward(x, router_weight, experts, k):
    gates = top_k_gates(x @ router_weight.t(), k)  # (N, E)
    out = torch.zeros_like(x)  # (N, d)
    for e, expert in enumerate(experts):
        rows = gates[:, e].nonzero().squeeze(-1)  # the tokens that chose expert e
        if rows.numel():
            out = out.index_add(0, rows, expert(x[rows]) * gates[rows, e, None])
    return out


def test_09_moe_forward_solution_passes():
    assert ch09.check_moe_forward(moe_forward) is True


def test_09_every_expert_on_every_token_is_also_right():
    def dense_compute(x, router_weight, experts, k):  # the same numbers, E times the compute
        gates = top_k_gates(x @ router_weight.t(), k)
        return sum(gates[:, e, None] * expert(x) for e, expert in enumerate(experts))

    assert ch09.check_moe_forward(dense_compute) is True


@pytest.mark.parametrize("wrong", [
    lambda x, w, experts, k: sum((x @ w.t()).softmax(-1)[:, e, None] * ex(x) for e, ex in enumerate(experts)),  # no top-k
    lambda x, w, experts, k: sum(  # top-k, not renormalised
        ((x @ w.t()).softmax(-1) * F.one_hot((x @ w.t()).topk(k, -1).indices, len(experts)).sum(1))[:, e, None] * ex(x)
        for e, ex in enumerate(experts)),
    lambda x, w, experts, k: sum((top_k_gates(x @ w.t(), k)[:, e, None] > 0) * ex(x) for e, ex in enumerate(experts)),  # no gates
    lambda x, w, experts, k: sum(top_k_gates(x @ w, k)[:, e, None] * ex(x) for e, ex in enumerate(experts)),  # W not transposed
], ids=["dense softmax", "not renormalised", "gates forgotten", "router weight not transposed"])
def test_09_moe_forward_wrong_answers_fail(wrong):
    with pytest.raises(ExerciseError, match="case"):
        ch09.check_moe_forward(wrong)


# ============================================================================= 09, exercise 6: what trains the router
def router_gradient(logits, scores, k, normalize):
    leaf = logits.clone().requires_grad_(True)
    combine = token_choice_route(leaf, k, normalize=normalize).combine  # (N, E)
    (grad,) = torch.autograd.grad((combine * scores).sum(), leaf)
    return grad


def test_09_router_gradient_solution_passes_and_k1_normalised_is_zero():
    assert ch09.check_router_gradient(router_gradient) is True
    logits, scores = torch.randn(6, 4), torch.randn(6, 4)
    assert router_gradient(logits, scores, 1, True).abs().max() < 1e-6  # p / p: zero up to rounding, the lesson
    assert router_gradient(logits, scores, 1, False).abs().max() > 0


@pytest.mark.parametrize("wrong", [
    lambda logits, scores, k, normalize: torch.zeros_like(logits),
    lambda logits, scores, k, normalize: router_gradient(logits, torch.ones_like(scores), k, normalize),  # scores ignored
    lambda logits, scores, k, normalize: router_gradient(logits, scores, k, not normalize),
    lambda logits, scores, k, normalize: torch.func.grad(lambda z: (z.softmax(-1) * scores).sum())(logits),  # no top-k
], ids=["zeros", "scores ignored", "normalisation flipped", "no top-k"])
def test_09_router_gradient_wrong_answers_fail(wrong):
    with pytest.raises(ExerciseError, match="case"):
        ch09.check_router_gradient(wrong)


# ============================================================================= 10, exercise 4: packed rows with the loss mask
def pack_rows(encoded, block_size):
    ids = torch.tensor([t for a, _ in encoded for t in a], dtype=torch.long)  # one stream
    mask = torch.tensor([v for _, m in encoded for v in m], dtype=torch.bool)
    xs, ys = [], []
    for r in range((len(ids) - 1) // block_size):
        w = ids[r * block_size: r * block_size + block_size + 1]  # T + 1 tokens
        m = mask[r * block_size: r * block_size + block_size + 1]
        y = w[1:].clone()
        y[~m[1:]] = -100
        xs.append(w[:-1])
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


def test_10_pack_rows_solution_passes():
    assert ch10.check_pack_rows(pack_rows) is True


def test_10_reference_agrees_with_the_course_packing():
    encoded = [ch10._CONV_A, ch10._CONV_C, ch10._CONV_B]
    ids, mask, starts = pack_conversations(encoded)
    _, y_stream = masked_targets(ids, mask)  # the labels of the whole stream
    T = 6
    x, y = ch10.reference_pack_rows(encoded, T)
    assert x.shape == y.shape == ((len(ids) - 1) // T, T)
    assert torch.equal(x.flatten(), ids[: x.numel()]) and torch.equal(y.flatten(), y_stream[: y.numel()])
    bx, by = sft_batch(ids, mask, starts, 16, T, torch.Generator().manual_seed(0))  # windows at conversation starts
    for row_x, row_y in zip(bx, by):
        s = next(int(s) for s in starts if torch.equal(ids[s: s + T], row_x))
        assert torch.equal(row_y, y_stream[s: s + T])  # the same label rule as sft_batch
    boundary = starts[1] - 1  # the last token of the first conversation: its label is the next one's start
    assert y_stream[boundary] == -100


def _shifted_mask(encoded, T):  # the mask of the input token, not of the label
    x, _ = ch10.reference_pack_rows(encoded, T)
    ids, mask, _ = pack_conversations(encoded)
    rows = x.shape[0]
    idx = torch.arange(rows)[:, None] * T + torch.arange(T + 1)
    y = ids[idx][:, 1:].clone()
    y[~mask[idx][:, :-1]] = -100
    return x, y


def _stride_t_plus_1(encoded, T):  # rows that do not share a token: a label is lost at every row boundary
    ids, mask, _ = pack_conversations(encoded)
    rows = len(ids) // (T + 1)
    w, m = ids[: rows * (T + 1)].view(rows, T + 1), mask[: rows * (T + 1)].view(rows, T + 1)
    y = w[:, 1:].clone()
    y[~m[:, 1:]] = -100
    return w[:, :-1], y


def _per_conversation(encoded, T):  # shift each conversation alone, then glue: the boundary token is never an input
    xs, ys = zip(*(masked_targets(a, m) for a, m in encoded))
    x, y = torch.cat(xs), torch.cat(ys)
    rows = len(x) // T
    return x[: rows * T].view(rows, T), y[: rows * T].view(rows, T)


def _no_mask(encoded, T):  # labels on every token
    x, _ = ch10.reference_pack_rows(encoded, T)
    ids, _, _ = pack_conversations(encoded)
    return x, torch.stack([ids[r * T + 1: r * T + T + 1] for r in range(len(x))])


@pytest.mark.parametrize("wrong", [_shifted_mask, _stride_t_plus_1, _per_conversation, _no_mask],
                         ids=["mask of the input token", "stride T + 1", "shifted per conversation", "no mask"])
def test_10_pack_rows_wrong_answers_fail(wrong):
    _fails(ch10.check_pack_rows, wrong, "expected:", "got:")


# ============================================================================= 10, exercise 5: where a reply stops
def cut_reply(text, stops):
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    if not hits:
        return text, False
    return text[: min(hits)], True


def test_10_cut_reply_solution_passes():
    assert ch10.check_cut_reply(cut_reply) is True


def _first_stop_in_list_order(text, stops):
    for s in stops:
        if s in text:
            return text.split(s)[0], True
    return text, False


@pytest.mark.parametrize("wrong", [
    _first_stop_in_list_order,
    lambda text, stops: (text.split(stops[0])[0], stops[0] in text),  # only the first stop string
    lambda text, stops: cut_reply(text, stops)[0].strip(),  # the reply alone, no flag
    lambda text, stops: (cut_reply(text, stops)[0].strip(), cut_reply(text, stops)[1]),  # whitespace changed
], ids=["first stop in list order", "only the first stop", "no flag", "stripped"])
def test_10_cut_reply_wrong_answers_fail(wrong):
    _fails(ch10.check_cut_reply, wrong, "expected:", "got:")
