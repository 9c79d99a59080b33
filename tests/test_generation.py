"""Tests for course_lib.generation: filters, sampling errors, cache == no cache, beam search."""

import math

import pytest
import torch

from course_lib.generation import (
    apply_temperature,
    beam_search,
    generate,
    sample_next,
    seq2seq_generate,
    top_k_filter,
    top_p_filter,
)
from course_lib.models import GPT, EncoderDecoder, EncoderDecoderConfig, GPTConfig


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("tiny")).eval()


@pytest.fixture(scope="module")
def seq2seq():
    torch.manual_seed(0)
    return EncoderDecoder(EncoderDecoderConfig.preset("tiny")).eval()


# ----------------------------------------------------------------------------- filters
def test_temperature_and_top_k():
    assert apply_temperature(torch.tensor([2.0, 4.0]), 2.0).tolist() == [1.0, 2.0]
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [4.0, 3.0, 2.0, 1.0]])
    out = top_k_filter(logits, 2)
    assert torch.isinf(out).sum(-1).tolist() == [2, 2]
    assert out[0].tolist() == [-math.inf, 3.0, 2.0, -math.inf]
    assert torch.equal(top_k_filter(logits, 10), logits)  # k larger than V keeps everything


def test_top_p_keeps_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = top_p_filter(probs.log(), 0.7).exp()
    assert out[0, :2].tolist() == pytest.approx([0.5, 0.3]) and out[0, 2:].tolist() == [0.0, 0.0]
    assert torch.isfinite(top_p_filter(probs.log(), 1.0)).all()  # p = 1 keeps all
    assert torch.isfinite(top_p_filter(probs.log(), 0.01)).sum() == 1  # the top token always survives
    # Order of the vocabulary does not matter.
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.equal(top_p_filter(probs.log()[:, perm], 0.7), top_p_filter(probs.log(), 0.7)[:, perm])


def test_top_p_matches_transformers_warper():
    from transformers.generation.logits_process import TopPLogitsWarper

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 50, generator=g) * 3
    for p in (0.3, 0.8, 0.95):
        ref = TopPLogitsWarper(p)(None, logits.clone())
        assert torch.equal(torch.isinf(ref), torch.isinf(top_p_filter(logits, p)))


def test_sampling_bad_arguments():
    logits = torch.zeros(1, 5)
    for t in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            sample_next(logits, temperature=t)
    for p in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
            sample_next(logits, top_p=p)
    with pytest.raises(ValueError, match="top_k"):
        sample_next(logits, top_k=0)
    with pytest.raises(ValueError, match=r"\(B, V\)"):
        sample_next(torch.zeros(5))


def test_sample_next_greedy_and_seeded():
    logits = torch.tensor([[0.0, 5.0, 1.0]])
    assert sample_next(logits, greedy=True).tolist() == [1]
    a = [sample_next(logits, generator=torch.Generator().manual_seed(3)).item() for _ in range(3)]
    b = [sample_next(logits, generator=torch.Generator().manual_seed(3)).item() for _ in range(3)]
    assert a == b
    assert sample_next(torch.tensor([[0.0, 5.0, 4.9]]), top_k=1).item() == 1


# ----------------------------------------------------------------------------- cache equivalence
@pytest.mark.parametrize("kwargs", [dict(greedy=True), dict(temperature=0.8, top_k=10), dict(top_p=0.9)])
def test_generate_cache_equals_no_cache(gpt, kwargs):
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    n = 40  # well past the context of 16: exercises the window rule too
    out = {}
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(123)
        out[use_cache] = generate(gpt, prompt, n, use_cache=use_cache, generator=g, **kwargs)
    assert out[True].shape == (2, 3 + n)
    assert torch.equal(out[True], out[False])
    assert torch.equal(out[True][:, :3], prompt)


@pytest.mark.parametrize("kwargs", [dict(greedy=True), dict(temperature=0.8, top_k=10)])
def test_generate_without_the_gpt_decoder_gives_the_same_tokens(gpt, kwargs, monkeypatch):
    """generate decodes a GPT with its GPTDecoder; fast=False or a hooked model uses forward with a KVCache."""
    from course_lib.models import GPTDecoder

    calls = []
    real_call = GPTDecoder.__call__
    monkeypatch.setattr(GPTDecoder, "__call__", lambda self, idx: calls.append(idx.shape) or real_call(self, idx))
    prompt, n = torch.tensor([[1, 2, 3], [4, 5, 6]]), 40
    fast = generate(gpt, prompt, n, use_cache=True, generator=torch.Generator().manual_seed(5), **kwargs)
    assert len(calls) == n and calls[0] == (2, 3) and calls[1] == (2, 1)  # the prompt, then one token a step
    calls.clear()
    hooked = []  # a forward hook runs on the KVCache path (the reason a hooked model gets no GPTDecoder)
    handle = gpt.blocks[0].register_forward_hook(lambda mod, args, out: hooked.append(args[0].shape[1]))
    try:
        hooked_out = generate(gpt, prompt, n, generator=torch.Generator().manual_seed(5), **kwargs)
    finally:
        handle.remove()
    assert not calls and len(hooked) == n and hooked[:2] == [3, 1]
    plain = generate(gpt, prompt, n, fast=False, generator=torch.Generator().manual_seed(5), **kwargs)
    assert not calls  # fast=False: forward with a KVCache, no GPTDecoder
    assert torch.equal(fast, hooked_out) and torch.equal(fast, plain)
    with pytest.raises(TypeError, match="fast must be True or False"):
        generate(gpt, prompt, 2, fast="yes")


def test_generate_keep_and_eos(gpt):
    prompt = torch.tensor([[1, 2]])
    a = generate(gpt, prompt, 30, greedy=True, keep=15, use_cache=True)  # slide by one (nanoGPT)
    b = generate(gpt, prompt, 30, greedy=True, keep=15, use_cache=False)
    assert torch.equal(a, b)
    first = generate(gpt, prompt, 1, greedy=True)[0, -1].item()
    stopped = generate(gpt, prompt, 20, greedy=True, eos_id=first)
    assert stopped.shape == (1, 3)  # stops right after producing eos
    with pytest.raises(ValueError, match="keep"):
        generate(gpt, prompt, 5, keep=16)
    for bad in (gpt.config.vocab_size, -1, 2.0):
        with pytest.raises(ValueError, match="eos_id must be a token id"):
            generate(gpt, prompt, 5, eos_id=bad)
    with pytest.raises(ValueError, match="temperature"):
        generate(gpt, prompt, 5, temperature=0.0)
    with pytest.raises(ValueError, match="top_p"):
        generate(gpt, prompt, 5, top_p=2.0)
    with pytest.raises(ValueError, match="vocab_size"):
        generate(gpt, torch.tensor([[99]]), 5)
    assert gpt.generate(prompt, 3, greedy=True).shape == (1, 5)


def test_seq2seq_generate_cache_equals_no_cache(seq2seq):
    src = torch.randint(3, 16, (3, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(src)
    mask[0, 5:] = 0
    a = seq2seq_generate(seq2seq, src, 10, bos_id=1, src_mask=mask, use_cache=True)
    b = seq2seq_generate(seq2seq, src, 10, bos_id=1, src_mask=mask, use_cache=False)
    assert a.shape == (3, 11) and torch.equal(a, b)
    with pytest.raises(ValueError, match="block_size"):
        seq2seq_generate(seq2seq, src, 12, bos_id=1)


# ----------------------------------------------------------------------------- beam search
def _seq_logprob(model, src, seq):
    """Sum of log-probabilities of seq[1:] given [BOS] (teacher forcing)."""
    logits = model(src, seq[:, :-1]).logits
    return torch.log_softmax(logits, -1).gather(-1, seq[:, 1:, None]).sum().item()


def test_beam_search_width_one_is_greedy(seq2seq, gpt):
    src = torch.tensor([[3, 4, 5, 6]])
    greedy = seq2seq_generate(seq2seq, src, 8, bos_id=1)
    assert torch.equal(beam_search(seq2seq, src, beam_size=1, max_new_tokens=8, bos_id=1), greedy)
    prompt = torch.tensor([[1, 2, 3]])
    assert torch.equal(beam_search(gpt, prompt, beam_size=1, max_new_tokens=6), generate(gpt, prompt, 6, greedy=True))


def test_beam_search_finds_likelier_sequences(seq2seq):
    src = torch.tensor([[3, 9, 5, 6, 7]])
    greedy = seq2seq_generate(seq2seq, src, 8, bos_id=1)
    beam = beam_search(seq2seq, src, beam_size=4, max_new_tokens=8, bos_id=1, length_penalty=0.0)
    with torch.no_grad():
        assert _seq_logprob(seq2seq, src, beam) >= _seq_logprob(seq2seq, src, greedy) - 1e-5
    cached = beam_search(seq2seq, src, beam_size=4, max_new_tokens=8, bos_id=1, use_cache=True, return_all=True)
    plain = beam_search(seq2seq, src, beam_size=4, max_new_tokens=8, bos_id=1, use_cache=False, return_all=True)
    assert [s for s, _ in cached] == pytest.approx([s for s, _ in plain], abs=1e-4)
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(cached, plain))
    scores = [s for s, _ in cached]
    assert scores == sorted(scores, reverse=True)


def test_beam_search_length_penalty_and_eos(seq2seq):
    src = torch.tensor([[3, 4, 5]])
    # Whatever the model's favourite first token is, calling it EOS ends that hypothesis at length 1.
    first = seq2seq_generate(seq2seq, src, 1, bos_id=1)[0, 1].item()
    short = beam_search(seq2seq, src, beam_size=3, max_new_tokens=8, bos_id=1, eos_id=first, length_penalty=0.0)
    assert short.tolist() == [[1, first]]  # raw log-prob sum favours the short hypothesis
    hyps = beam_search(seq2seq, src, beam_size=3, max_new_tokens=8, bos_id=1, eos_id=first, length_penalty=2.0, return_all=True)
    assert len(hyps) >= 3
    with pytest.raises(ValueError, match="one sequence"):
        beam_search(seq2seq, torch.zeros(2, 3, dtype=torch.long), bos_id=1)
    with pytest.raises(ValueError, match="bos_id"):
        beam_search(seq2seq, src)


def test_generated_ids_can_train_the_model(gpt):
    """generate runs under inference_mode for speed; what it returns must still be usable for training."""
    out = generate(gpt, torch.zeros(2, 1, dtype=torch.long), 8, greedy=True)
    assert not out.is_inference()
    gpt.train()
    loss = gpt(out[:, :-1], out[:, 1:]).loss
    loss.backward()  # would raise "Inference tensors cannot be saved for backward" without the clone
    assert gpt.tok_emb.weight.grad is not None
    gpt.zero_grad(set_to_none=True)
    gpt.eval()


def test_filters_reject_what_is_not_a_float_tensor():
    from course_lib.generation import top_p_filter

    with pytest.raises(TypeError, match="logits must be a float tensor.*got list"):
        top_k_filter([1.0, 3.0, 2.0], 2)
    with pytest.raises(TypeError, match="logits must be a float tensor.*torch.int64"):
        top_p_filter(torch.tensor([1, 3, 2]), 0.5)
