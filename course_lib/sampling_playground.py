"""The sampling playground: type a prompt, pick a decoding strategy, read what a language model writes.

What is here:
- `sample_text`: prompt string -> continuation string, with temperature, top-k, top-p, length,
  seed and greedy decoding; every setting is checked and a wrong one gives a clear ValueError.
- `next_token_logits`: the model's logits (V,) for the token after a prompt.
- `temperature_probs` / `plot_temperature`: how dividing the logits by a temperature reshapes the
  next-token distribution (sharper below 1, flatter above 1), as numbers and as a bar chart.
- `sampling_playground`: an ipywidgets panel with labelled controls (prompt, temperature, top-k,
  top-p, length, seed, greedy) that regenerates text and shows the filtered next-token distribution.

The model is any decoder-only model that `course_lib.generation.generate` drives (our `GPT`);
the tokenizer is anything with `encode(str) -> list[int]` and `decode(list[int]) -> str`
(e.g. `course_lib.tokenization.CharTokenizer`).
Leaves out: batched prompts, streaming output, repetition penalties. See notebook 06.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from course_lib.generation import check_sampling_args, generate, top_k_filter, top_p_filter

__all__ = [
    "MAX_LENGTH",
    "check_playground_args",
    "sample_text",
    "next_token_logits",
    "temperature_probs",
    "plot_temperature",
    "sampling_playground",
]

MAX_LENGTH = 2000  # the most new tokens one call may ask for (keeps a slider slip from freezing a notebook)


# ----------------------------------------------------------------------------- checks
def _check_model_and_tokenizer(model: Any, tokenizer: Any) -> None:
    if not isinstance(model, torch.nn.Module) or not hasattr(getattr(model, "config", None), "block_size"):
        raise TypeError(f"model must be a decoder-only course_lib model (e.g. GPT) with .config.block_size, got {type(model).__name__}")
    for name in ("encode", "decode"):
        if not callable(getattr(tokenizer, name, None)):
            raise TypeError(f"tokenizer must have encode() and decode() methods (e.g. CharTokenizer), got {type(tokenizer).__name__}")


def check_playground_args(
    prompt: Any,
    temperature: Any = 1.0,
    top_k: Any = None,
    top_p: Any = None,
    length: Any = 200,
    seed: Any = 0,
) -> None:
    """Raise TypeError/ValueError naming the bad setting, the expected values and the value given.

    >>> check_playground_args("ROMEO:", temperature=0.8, top_k=10, top_p=0.9, length=100, seed=0)
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt:
        raise ValueError("prompt must not be empty: the model needs at least one token to continue from")
    check_sampling_args(temperature, top_k, top_p)  # temperature > 0, top_k >= 1 or None, top_p in (0, 1] or None
    if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= MAX_LENGTH:
        raise ValueError(f"length must be an int in [1, {MAX_LENGTH}] (new tokens to generate), got {length!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")


def _encode_prompt(model: Any, tokenizer: Any, prompt: str) -> torch.Tensor:
    ids = list(tokenizer.encode(prompt))
    if not ids:
        raise ValueError(f"the tokenizer turned the prompt {prompt!r} into no tokens")
    device = next(model.parameters()).device
    return torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)


# ----------------------------------------------------------------------------- text
def sample_text(
    model: torch.nn.Module,
    tokenizer: Any,
    prompt: str,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    length: int = 200,
    seed: int = 0,
    greedy: bool = False,
    use_cache: bool = True,
) -> str:
    """Continue `prompt` by `length` tokens and return only the new text (the prompt is not repeated).

    Sampling uses its own `torch.Generator` seeded with `seed`, so the same settings give the
    same text and the global random state is left alone. `greedy=True` ignores the sampling knobs.
    >>> # sample_text(gpt, tok, "ROMEO:\\n", temperature=0.8, top_k=20, length=100)
    See notebook 06.
    """
    _check_model_and_tokenizer(model, tokenizer)
    check_playground_args(prompt, temperature, top_k, top_p, length, seed)
    idx = _encode_prompt(model, tokenizer, prompt)  # (1, T)
    gen = torch.Generator(device=idx.device).manual_seed(seed)
    out = generate(model, idx, length, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                   use_cache=use_cache, generator=gen)  # (1, T + length)
    return tokenizer.decode(out[0, idx.size(1):].tolist())


@torch.no_grad()
def next_token_logits(model: torch.nn.Module, tokenizer: Any, prompt: str) -> torch.Tensor:
    """The model's logits (V,) for the token that follows `prompt` (only its last block_size tokens are read)."""
    _check_model_and_tokenizer(model, tokenizer)
    check_playground_args(prompt)
    idx = _encode_prompt(model, tokenizer, prompt)[:, -int(model.config.block_size):]  # (1, T)
    was_training = model.training
    model.eval()
    try:
        out = model(idx)
    finally:
        model.train(was_training)
    logits = out.logits if hasattr(out, "logits") else out[0]
    return logits[0, -1].float().cpu()  # (V,)


# ----------------------------------------------------------------------------- temperature
def temperature_probs(logits: torch.Tensor, temperatures: Sequence[float]) -> torch.Tensor:
    """softmax(logits / T) for every temperature T: logits (V,) -> probabilities (len(temperatures), V).

    >>> temperature_probs(torch.tensor([0.0, math.log(3.0)]), [1.0]).tolist()
    [[0.25, 0.75]]
    See notebook 06.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 1 or logits.numel() == 0:
        raise ValueError(f"logits must be a non-empty 1-D tensor (V,), got {type(logits).__name__} {tuple(getattr(logits, 'shape', ()))}")
    temperatures = list(temperatures)
    if not temperatures:
        raise ValueError("temperatures must hold at least one value")
    for t in temperatures:
        check_sampling_args(temperature=t)
    ts = torch.tensor(temperatures, dtype=torch.float32)[:, None]  # (n, 1)
    return torch.softmax(logits.float()[None, :] / ts, dim=-1)  # (n, V)


def _token_label(tokenizer: Any, i: int) -> str:
    s = tokenizer.decode([i]) if tokenizer is not None else str(i)
    return {"\n": "\\n", " ": "␣", "\t": "\\t"}.get(s, s)


def plot_temperature(
    logits: torch.Tensor,
    temperatures: Sequence[float] = (0.5, 1.0, 2.0),
    tokenizer: Any = None,
    top_n: int = 15,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Grouped bars: the probability of the `top_n` most likely tokens at each temperature; returns the Axes.

    The legend gives each distribution's entropy in bits (higher = flatter = more random).
    See notebook 06.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    probs = temperature_probs(logits, temperatures)  # (n, V)
    if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1:
        raise ValueError(f"top_n must be a positive int, got {top_n!r}")
    top_n = min(top_n, logits.numel())
    order = torch.argsort(logits.float(), descending=True)[:top_n]  # most likely first (same at every T)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.5 * top_n + 2), 3.8))
    n = len(temperatures)
    width = 0.8 / n
    x = np.arange(top_n)
    for j, (t, p) in enumerate(zip(temperatures, probs)):
        entropy = float(-(p * torch.log2(p.clamp_min(1e-30))).sum())
        ax.bar(x + (j - (n - 1) / 2) * width, p[order].numpy(), width, label=f"T = {t:g}  (entropy {entropy:.2f} bits)")
    ax.set_xticks(x)
    ax.set_xticklabels([_token_label(tokenizer, int(i)) for i in order])
    ax.set_xlabel("next token (most likely first)")
    ax.set_ylabel("probability")
    ax.set_title(title or "Temperature reshapes the next-token distribution")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return ax


def _filtered_probs(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """The distribution `sample_next` draws from: temperature, then top-k, then top-p. (V,) -> (V,)."""
    z = logits.float()[None, :] / temperature  # (1, V)
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None and top_p < 1.0:
        z = top_p_filter(z, top_p)
    return torch.softmax(z, dim=-1)[0]


# ----------------------------------------------------------------------------- the widget
def sampling_playground(
    model: torch.nn.Module,
    tokenizer: Any,
    prompt: str = "ROMEO:\n",
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    length: int = 200,
    seed: int = 0,
    greedy: bool = False,
    show_distribution: bool = True,
    top_n: int = 12,
) -> Any:
    """An ipywidgets panel: prompt, temperature, top-k, top-p, length, seed and greedy -> generated text.

    top-k = 0 and top-p = 1.0 on the sliders mean "off". The text regenerates when a control
    changes (sliders on release) or on the Generate button; a bad setting (an empty prompt)
    is reported in the panel, not raised. With `show_distribution`, a bar chart shows the
    next-token probabilities after the prompt before (grey) and after (colour) the filters.
    Returns the VBox, with `.controls` (name -> widget), `.generate()` (run now, returns the
    text) and `.last_text`. See notebook 06.
    """
    import html

    import ipywidgets as widgets

    _check_model_and_tokenizer(model, tokenizer)
    check_playground_args(prompt, temperature, top_k, top_p, length, seed)
    vocab = int(model.config.vocab_size) if hasattr(model.config, "vocab_size") else 1000
    style = {"description_width": "initial"}
    prompt_w = widgets.Textarea(value=prompt, description="Prompt:", style=style, continuous_update=False,
                                layout=widgets.Layout(width="95%", height="70px"))
    temp_w = widgets.FloatSlider(value=float(temperature), min=0.05, max=2.5, step=0.05, description="Temperature:",
                                 style=style, continuous_update=False, readout_format=".2f")
    k_w = widgets.IntSlider(value=int(top_k or 0), min=0, max=vocab, step=1, description="Top-k (0 = off):",
                            style=style, continuous_update=False)
    p_w = widgets.FloatSlider(value=float(top_p if top_p is not None else 1.0), min=0.05, max=1.0, step=0.05,
                              description="Top-p (1 = off):", style=style, continuous_update=False, readout_format=".2f")
    len_w = widgets.IntSlider(value=int(length), min=1, max=min(1000, MAX_LENGTH), step=1,
                              description="Length (tokens):", style=style, continuous_update=False)
    seed_w = widgets.BoundedIntText(value=int(seed), min=0, max=2**31 - 1, description="Seed:", style=style,
                                    layout=widgets.Layout(width="160px"))
    greedy_w = widgets.Checkbox(value=bool(greedy), description="Greedy (always the most likely token)", indent=False)
    button = widgets.Button(description="Generate", button_style="primary", tooltip="generate again with these settings")
    text_out = widgets.HTML()
    plot_out = widgets.Output()
    box = widgets.VBox([
        prompt_w,
        widgets.HBox([temp_w, len_w]),
        widgets.HBox([k_w, p_w]),
        widgets.HBox([seed_w, greedy_w, button]),
        text_out,
        plot_out,
    ])
    box.controls = {"prompt": prompt_w, "temperature": temp_w, "top_k": k_w, "top_p": p_w, "length": len_w,
                    "seed": seed_w, "greedy": greedy_w, "button": button, "text": text_out, "plot": plot_out}
    box.last_text = ""
    box.last_error = ""

    def settings() -> dict:
        return dict(temperature=float(temp_w.value), top_k=int(k_w.value) or None,
                    top_p=None if p_w.value >= 1.0 else float(p_w.value), length=int(len_w.value), seed=int(seed_w.value))

    def draw_distribution(s: dict) -> None:
        import matplotlib.pyplot as plt

        logits = next_token_logits(model, tokenizer, prompt_w.value)
        n = min(top_n, logits.numel())
        before = torch.softmax(logits / s["temperature"], dim=-1)
        after = _filtered_probs(logits, s["temperature"], s["top_k"], s["top_p"])
        if greedy_w.value:
            after = torch.zeros_like(after)
            after[int(logits.argmax())] = 1.0
        order = torch.argsort(logits, descending=True)[:n]
        with plot_out:
            plot_out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(7, 2.6))
            xs = range(n)
            ax.bar(xs, before[order].numpy(), color="lightgrey", label="softmax(logits / T)")
            ax.bar(xs, after[order].numpy(), width=0.5, color="C0", label="after top-k / top-p (what is sampled)")
            ax.set_xticks(list(xs))
            ax.set_xticklabels([_token_label(tokenizer, int(i)) for i in order])
            ax.set_ylabel("probability")
            ax.set_title(f"next token after the prompt: {int((after > 0).sum())} of {logits.numel()} tokens can be drawn")
            ax.legend(fontsize=8)
            plt.show()
            plt.close(fig)

    def run(*_: Any) -> str:
        s = settings()
        try:
            text = sample_text(model, tokenizer, prompt_w.value, greedy=bool(greedy_w.value), **s)
        except (TypeError, ValueError) as exc:
            box.last_error = str(exc)
            text_out.value = f"<b style='color:#b00'>Cannot generate:</b> {html.escape(str(exc))}"
            with plot_out:
                plot_out.clear_output()
            return ""
        box.last_error = ""
        box.last_text = text
        mode = "greedy" if greedy_w.value else (
            f"T={s['temperature']:.2f}, top-k={s['top_k'] or 'off'}, top-p={s['top_p'] if s['top_p'] else 'off'}, seed={s['seed']}")
        text_out.value = (
            f"<div style='font-size:0.85em;color:#555'>{mode}, {s['length']} new tokens</div>"
            f"<pre style='white-space:pre-wrap;margin:4px 0'><span style='color:#888'>{html.escape(prompt_w.value)}</span>"
            f"<b>{html.escape(text)}</b></pre>"
        )
        if show_distribution:
            draw_distribution(s)
        return text

    for w in (prompt_w, temp_w, k_w, p_w, len_w, seed_w, greedy_w):
        w.observe(run, names="value")
    button.on_click(run)
    box.generate = run
    run()
    return box
