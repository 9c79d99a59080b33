"""Checkers for notebook 07 (the encoder-decoder Transformer on spelling -> pronunciation).

Each `check_*` runs the learner's function against a reference on a few cases and keeps the
contract of `course_lib.exercises`: not attempted -> hint, returns None; wrong -> ExerciseError;
right -> True. References: `course_lib.attention.causal_mask`, the top-k step inside
`course_lib.generation.beam_search`, and `course_lib.metrics.sequence_error_rate`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from course_lib.attention import causal_mask
from course_lib.exercises import check_function, checker_hint, show_hint
from course_lib.metrics import sequence_error_rate

__all__ = [
    "check_causal_mask",
    "check_teacher_forcing",
    "check_beam_step",
    "check_word_error_rate",
    "reference_teacher_forcing",
    "reference_beam_step",
    "hint",
    "HINTS",
]

#: exercise number -> hints, first what to think about, then closer to the method (never the code).
HINTS: dict[int, tuple[str, ...]] = {
    1: (
        "row i is query i, column j is key j. The decoder's query i may see itself and every earlier key "
        "(j <= i) but no later one: a triangle of True values in the lower left of a (T, T) bool tensor, the "
        "diagonal included.",
        "start from a (T, T) tensor of True values and keep only its lower triangle, diagonal included (torch "
        "has a function named tril for that); or compare a column of positions 0..T-1 with a row of them.",
    ),
    2: (
        "teacher forcing feeds the decoder the right answer shifted by one: at each step it reads the "
        "phonemes so far and must predict the next one. So the input starts with BOS, the labels end with "
        "EOS, and both are one longer than the phonemes.",
        "turn the phoneme ids into a plain list first (they may come as a tuple or a tensor); the decoder "
        "input is BOS followed by those ids, the labels are the same ids followed by EOS; give back the two "
        "lists as a tuple. An empty word gives just BOS and just EOS.",
    ),
    3: (
        "each live beam can continue with any of the V tokens, and a continuation's score is its beam's "
        "score plus that token's log-probability. Rank all nb times V candidates together, not beam by beam, "
        "and keep the beam_size best, best first.",
        "add the scores as a column to logp (broadcasting gives an (nb, V) grid), flatten the grid into one "
        "row, take its beam_size largest values with topk, then recover each beam from the flat index by "
        "integer division by V and each token by the remainder.",
    ),
    4: (
        "a word is right when its prediction equals ANY ONE of its acceptable pronunciations, and wrong only "
        "when it matches none of them. The error rate is the number of wrong words divided by the number of "
        "words.",
        "walk through the predictions and their lists of references together; a word is wrong when its "
        "prediction (as a list of phonemes) differs from every reference (all of them, not any); count those "
        "words and divide by the number of predictions, giving a float.",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1 to 4 up to `level` (1: what to think about, 2: the method), printed and returned."""
    return show_hint(HINTS, exercise, level, chapter="ch07")


def check_causal_mask(fn: Callable) -> bool | None:
    """Exercise 1: fn(T) -> bool (T, T), True where query i may attend to key j (j <= i)."""
    return check_function(
        fn, lambda t: causal_mask(t), [(1,), (3,), (6,)], name="causal mask",
        hint=checker_hint(HINTS, 1, "ch07"),
    )


def reference_teacher_forcing(phoneme_ids: Sequence[int], bos_id: int, eos_id: int) -> tuple[list[int], list[int]]:
    """Decoder input [BOS] + y and labels y + [EOS]: [5, 7] with bos 1, eos 2 -> ([1, 5, 7], [5, 7, 2])."""
    ids = [int(i) for i in phoneme_ids]
    return [bos_id] + ids, ids + [eos_id]


def check_teacher_forcing(fn: Callable) -> bool | None:
    """Exercise 2: fn(phoneme_ids, bos_id, eos_id) -> (decoder input, labels) as two lists."""
    cases = [([5, 7], 1, 2), ([9], 1, 2), ([3, 4, 5, 6], 0, 40), ([], 1, 2)]
    return check_function(
        fn, reference_teacher_forcing, cases, name="teacher forcing",
        hint=checker_hint(HINTS, 2, "ch07"),
    )


def reference_beam_step(scores: torch.Tensor, logp: torch.Tensor, beam_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One beam-search step: the `beam_size` best (beam, token) continuations.

    scores (nb,) summed log-probabilities of the live beams, logp (nb, V) next-token
    log-probabilities -> (beam index (k,), token id (k,), new score (k,)), best first.
    """
    V = logp.size(-1)
    cand = (scores[:, None] + logp).reshape(-1)  # (nb * V,)
    top = torch.topk(cand, min(beam_size, cand.numel()))
    return top.indices // V, top.indices % V, top.values


def _beam_cases() -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    g = torch.Generator().manual_seed(7)
    cases = [(torch.zeros(1), torch.log_softmax(torch.tensor([[0.1, 2.0, -1.0, 0.5]]), -1), 2)]
    for nb, V, k in ((2, 5, 2), (3, 7, 3), (4, 11, 4)):
        scores = -torch.rand(nb, generator=g) * 3
        logp = torch.log_softmax(torch.randn(nb, V, generator=g) * 2, dim=-1)
        cases.append((scores, logp, k))
    return cases


def check_beam_step(fn: Callable) -> bool | None:
    """Exercise 3: fn(scores (nb,), logp (nb, V), beam_size) -> (beam_idx, token_idx, new_scores), best first."""
    return check_function(
        fn, reference_beam_step, _beam_cases(), name="beam step", atol=1e-6,
        hint=checker_hint(HINTS, 3, "ch07"),
    )


def check_word_error_rate(fn: Callable) -> bool | None:
    """Exercise 4: fn(predictions, references) -> fraction of words matching NONE of their pronunciations."""
    preds = [["R", "IY", "D"], ["K", "AE", "T"], ["D", "AO", "G"], ["T", "AH", "M", "EY", "T", "OW"]]
    refs = [
        [["R", "IY", "D"], ["R", "EH", "D"]],
        [["K", "AE", "T"]],
        [["D", "AA", "G"]],
        [["T", "AH", "M", "EY", "T", "OW"], ["T", "AH", "M", "AA", "T", "OW"]],
    ]
    cases = [(preds, refs), (preds[2:], refs[2:]), (preds[:1], [[["R", "EH", "D"]]]), ([["R", "EH", "D"]], refs[:1])]
    return check_function(
        fn, sequence_error_rate, cases, name="word error rate", atol=1e-9,
        hint=checker_hint(HINTS, 4, "ch07"),
    )
