"""Tests for course_lib.sampling_playground: text sampling, the temperature helpers and the widget."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from course_lib.generation import generate
from course_lib.models import GPT, GPTConfig
from course_lib.sampling_playground import (
    MAX_LENGTH,
    check_playground_args,
    next_token_logits,
    plot_temperature,
    sample_text,
    sampling_playground,
    temperature_probs,
)
from course_lib.tokenization import CharTokenizer

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\nJULIET:\nO Romeo, Romeo!\n"


class OneCharTokenizer(CharTokenizer):
    """A CharTokenizer whose unknown id decodes to one character, so text length = token count."""

    def decode(self, ids):
        return "".join("?" if i == self.unk_id else self.itos[i] for i in ids)


pytestmark = pytest.mark.usefixtures("one_thread")  # token-by-token decoding of a tiny model


@pytest.fixture(scope="module")
def tok() -> CharTokenizer:
    return OneCharTokenizer.train(TEXT)


@pytest.fixture(scope="module")
def model(tok) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("tiny", vocab_size=tok.vocab_size)).eval()


# ----------------------------------------------------------------------------- sample_text
def test_sample_text_returns_new_text_of_the_right_length(model, tok):
    text = sample_text(model, tok, "ROMEO:\n", temperature=0.8, top_k=5, top_p=0.9, length=30, seed=1)
    assert isinstance(text, str) and len(text) == 30  # one character per token, prompt not repeated
    assert set(text) <= set(tok.itos) | {"?"}


def test_sample_text_is_reproducible_and_seed_dependent(model, tok):
    a = sample_text(model, tok, "O", length=40, seed=3)
    b = sample_text(model, tok, "O", length=40, seed=3)
    c = sample_text(model, tok, "O", length=40, seed=4)
    assert a == b and a != c


def test_sample_text_leaves_global_rng_alone(model, tok):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    sample_text(model, tok, "O", length=10, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_greedy_matches_generate_and_cache_does_not_matter(model, tok):
    ids = torch.tensor([tok.encode("JULIET:")])
    ref = tok.decode(generate(model, ids, 25, greedy=True)[0, ids.size(1):].tolist())
    assert sample_text(model, tok, "JULIET:", greedy=True, length=25) == ref
    assert sample_text(model, tok, "JULIET:", greedy=True, length=25, use_cache=False) == ref
    # top_k=1 sampling is greedy too
    assert sample_text(model, tok, "JULIET:", top_k=1, length=25, seed=9) == ref


def test_long_prompt_and_long_output_past_the_context(model, tok):
    prompt = TEXT * 2  # longer than the tiny model's 16-token context
    assert len(sample_text(model, tok, prompt, length=40, seed=0)) == 40


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(prompt=""), "prompt must not be empty"),
        (dict(temperature=0.0), "temperature must be a finite number > 0"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=0), "top_k must be a positive int"),
        (dict(top_k=2.5), "top_k"),
        (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
        (dict(top_p=1.5), "top_p"),
        (dict(length=0), r"length must be an int in \[1, "),
        (dict(length=MAX_LENGTH + 1), "length"),
        (dict(seed=-1), "seed must be an int >= 0"),
    ],
)
def test_bad_parameters_give_clear_errors(model, tok, kwargs, match):
    args = dict(prompt="ROMEO:", temperature=1.0, top_k=None, top_p=None, length=10, seed=0) | kwargs
    with pytest.raises(ValueError, match=match):
        sample_text(model, tok, **args)


def test_bad_types_give_clear_errors(model, tok):
    with pytest.raises(TypeError, match="prompt must be a string"):
        sample_text(model, tok, 42)
    with pytest.raises(TypeError, match="model must be"):
        sample_text("not a model", tok, "O")
    with pytest.raises(TypeError, match="tokenizer must have encode"):
        sample_text(model, object(), "O")
    check_playground_args("ok", 0.7, 3, 0.5, 5, 0)  # fine settings pass silently


# ----------------------------------------------------------------------------- temperature
def test_temperature_probs_values_and_sharpening():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    probs = temperature_probs(logits, [0.5, 1.0, 2.0])
    assert probs.shape == (3, 4)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))
    torch.testing.assert_close(probs[1], torch.softmax(logits, -1))
    torch.testing.assert_close(probs[0], torch.softmax(logits / 0.5, -1))
    entropy = -(probs * probs.log()).sum(-1)
    assert entropy[0] < entropy[1] < entropy[2]  # higher temperature = flatter
    assert torch.equal(probs.argmax(-1), torch.zeros(3, dtype=torch.long))  # the ranking never changes
    assert math.isclose(temperature_probs(torch.tensor([0.0, math.log(3.0)]), [1.0])[0, 1].item(), 0.75, rel_tol=1e-6)


def test_temperature_probs_errors():
    with pytest.raises(ValueError, match="1-D tensor"):
        temperature_probs(torch.zeros(2, 3), [1.0])
    with pytest.raises(ValueError, match="temperature"):
        temperature_probs(torch.zeros(3), [1.0, 0.0])
    with pytest.raises(ValueError, match="at least one"):
        temperature_probs(torch.zeros(3), [])


def test_next_token_logits_and_plot(model, tok):
    logits = next_token_logits(model, tok, "ROMEO:\n")
    assert logits.shape == (tok.vocab_size,)
    ids = torch.tensor([tok.encode("ROMEO:\n")])
    torch.testing.assert_close(logits, model(ids).logits[0, -1].detach())
    ax = plot_temperature(logits, (0.5, 1.0, 2.0), tokenizer=tok, top_n=6)
    assert len(ax.patches) == 18  # 3 temperatures x 6 tokens
    assert len(ax.get_legend().get_texts()) == 3 and "bits" in ax.get_legend().get_texts()[0].get_text()
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="top_n"):
        plot_temperature(logits, top_n=0)


# ----------------------------------------------------------------------------- widget
def test_widget_builds_with_labelled_controls(model, tok):
    box = sampling_playground(model, tok, prompt="ROMEO:\n", length=20, seed=0)
    c = box.controls
    for name in ("prompt", "temperature", "top_k", "top_p", "length", "seed", "greedy"):
        assert c[name].description, f"control {name} has no label"
    assert len(box.last_text) == 20
    assert "ROMEO:" in c["text"].value  # the prompt is shown before the continuation
    plt.close("all")


def test_widget_callbacks_produce_text(model, tok):
    box = sampling_playground(model, tok, prompt="O", length=15, seed=0, show_distribution=False)
    c = box.controls
    first = box.last_text
    c["seed"].value = 1  # a control change regenerates
    assert len(box.last_text) == 15 and box.last_text != first
    c["length"].value = 7
    assert len(box.last_text) == 7
    c["greedy"].value = True
    greedy = box.last_text
    assert greedy == sample_text(model, tok, "O", greedy=True, length=7)
    c["top_k"].value = 3
    c["top_p"].value = 0.5
    c["temperature"].value = 1.5
    assert box.last_text == greedy  # greedy ignores the sampling knobs
    c["greedy"].value = False
    c["button"].click()
    assert box.last_text == sample_text(model, tok, "O", temperature=1.5, top_k=3, top_p=0.5, length=7, seed=1)
    assert box.generate() == box.last_text


def test_widget_reports_bad_settings_in_the_panel(model, tok):
    box = sampling_playground(model, tok, prompt="O", length=5, show_distribution=False)
    box.controls["prompt"].value = ""
    assert "prompt must not be empty" in box.last_error
    assert "Cannot generate" in box.controls["text"].value
    box.controls["prompt"].value = "J"
    assert box.last_error == "" and len(box.last_text) == 5


def test_widget_rejects_bad_initial_settings(model, tok):
    with pytest.raises(ValueError, match="temperature"):
        sampling_playground(model, tok, temperature=0)
    with pytest.raises(ValueError, match="length"):
        sampling_playground(model, tok, length=0)
    with pytest.raises(TypeError, match="tokenizer"):
        sampling_playground(model, None)
