"""Post-training: learning from preferences (DPO) and from a checker's reward (GRPO).

A pre-trained (or instruction-tuned, see `course_lib.chat`) causal language model is tuned further
by feedback on its own outputs, not by more demonstrations. What is here:

- `sequence_logprobs`: the log-probability a causal LM gives to the response tokens of each row
  (prompt and padding masked), batched; per token or summed. Both DPO and GRPO use it.
- DPO (Rafailov et al., 2023): `dpo_loss` on the summed log-probabilities of a chosen and a rejected
  response under the policy and a frozen reference model,
      loss = -log sigmoid(beta * [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))]),
  with the implicit rewards beta * (log pi - log ref) and their margin.
- GRPO (Shao et al., 2024, DeepSeekMath): `group_advantages` (each sample's reward minus its group's
  mean, over the group's standard deviation) and `grpo_loss`, the clipped policy-ratio objective of
  PPO with a KL penalty to the reference model (the "k3" estimator `kl_k3`), on sampled tokens only.
- `sample_groups`: G sampled completions per prompt, with the mask of the completion tokens.
- `score`: run a reward function on every sample, with a clear error when it does not return one
  number per sample; `preference_pairs`: DPO pairs (a better and a worse sample of one prompt) from
  the rewards of sampled groups; `wilson_interval` (from course_lib.metrics): a 95% interval for an accuracy.
- A task a program can check, for notebook 14: `AdditionTask` (problems such as "123+456=", the
  character vocabulary, the demonstrations), its checker `AdditionTask.reward`, greedy accuracy
  `AdditionTask.evaluate`, and a deliberately flawed reward `AdditionTask.length_reward`.

Averaging of the GRPO loss: the per-token terms are averaged over all response tokens of the batch
(a "token mean", as DAPO and TRL's default do), so a long answer weighs by its number of tokens; the
original paper averages within each answer first. Both have the same fixed points.

Leaves out: PPO's value network and GAE, reward models learned from preferences (RLHF), IPO/KTO/ORPO
and the other DPO variants, label smoothing, reference-model syncing, importance-sampling corrections
for off-policy data beyond the clipped ratio, and distributed sampling (vLLM). See notebook 14.
"""

from __future__ import annotations

import math
import numbers
import random
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F

from course_lib.metrics import wilson_interval  # re-exported: notebook 14 imports it from here

__all__ = [
    "sequence_logprobs",
    "DPOOutput",
    "dpo_loss",
    "group_advantages",
    "kl_k3",
    "GRPOOutput",
    "grpo_loss",
    "sample_groups",
    "score",
    "preference_pairs",
    "wilson_interval",
    "AdditionTask",
]


# ----------------------------------------------------------------------------- helpers
def _check_tensor(name: str, x: Any, dim: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if dim is not None and x.dim() != dim:
        raise ValueError(f"{name} must have {dim} dimension(s), got shape {tuple(x.shape)}")
    return x


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(f"expected tensors of one shape, got {listed}")


def _check_positive(name: str, v: Any) -> float:
    if not isinstance(v, numbers.Real) or isinstance(v, bool) or not v > 0 or math.isinf(v):
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    return float(v)


# ----------------------------------------------------------------------------- log-probabilities
def sequence_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    response_mask: torch.Tensor,
    per_token: bool = False,
) -> torch.Tensor:
    """Log-probability of each row's response tokens under a causal LM: (B,) summed, or (B, T - 1) per token.

    `input_ids` (B, T) hold prompt + response (+ padding); `response_mask` (B, T) is 1 on response
    tokens and 0 on prompt and padding. Token t is scored by the logits at position t - 1, so the
    first token is never scored. Per token, entry [b, t - 1] is log p(ids[b, t] | ids[b, :t]) where
    mask[b, t] is 1 and 0 elsewhere. The model's forward must return an object with `.logits`
    (B, T, V) (the course's GPT does) or the logits themselves.

    ids [[p, p, r1, r2, pad]], mask [[0, 0, 1, 1, 0]] -> log p(r1 | p p) + log p(r2 | p p r1).
    See notebook 14.
    """
    _check_tensor("input_ids", input_ids, 2)
    _check_tensor("response_mask", response_mask, 2)
    if input_ids.shape != response_mask.shape:
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)} and response_mask {tuple(response_mask.shape)} must have the same shape"
        )
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    block = getattr(getattr(model, "config", None), "block_size", None)
    if block is not None and input_ids.size(1) > block:
        raise ValueError(
            f"prompt + response has {input_ids.size(1)} tokens, longer than the model's context of {block}: "
            "shorten the prompts or max_new_tokens"
        )
    if input_ids.size(1) < 2:
        raise ValueError(f"need at least 2 tokens per row (a prompt token and a response token), got {tuple(input_ids.shape)}")
    if bool(response_mask[:, 0].bool().any()):
        raise ValueError("response_mask[:, 0] must be 0: the first token has no context to be scored from")
    out = model(input_ids)
    logits = out.logits if hasattr(out, "logits") else (out[0] if isinstance(out, tuple) else out)  # (B, T, V)
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V) predictions for tokens 1..T-1
    token_logp = logp.gather(-1, input_ids[:, 1:].long().unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    mask = response_mask[:, 1:].to(token_logp.dtype)  # (B, T-1)
    token_logp = token_logp * mask  # masked positions are exactly 0 (and carry no gradient)
    return token_logp if per_token else token_logp.sum(-1)


# ----------------------------------------------------------------------------- DPO
class DPOOutput(NamedTuple):
    """What `dpo_loss` returns: the mean loss and, per pair, the implicit rewards and their margin."""

    loss: torch.Tensor  # () mean over pairs of -log sigmoid(margin)
    chosen_rewards: torch.Tensor  # (B,) beta * (log pi(y_w) - log ref(y_w)), detached
    rejected_rewards: torch.Tensor  # (B,) beta * (log pi(y_l) - log ref(y_l)), detached
    margin: torch.Tensor  # (B,) chosen_rewards - rejected_rewards, detached


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> DPOOutput:
    """The DPO loss of B preference pairs from summed response log-probabilities (each (B,)).

    loss = mean_b -log sigmoid(beta * [(pc - rc) - (pr - rr)]), with p/r the policy/reference and
    c/r the chosen/rejected response. Its minimiser over all policies is pi* ∝ ref * exp(reward / beta)
    (tested on a bandit). One pair with pc=-1, pr=-2, rc=rr=-1.5, beta=1: margin 1, loss log(1 + e^-1) = 0.3133.
    See notebook 14.
    """
    beta = _check_positive("beta", beta)
    names = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
    args = (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    for n, a in zip(names, args):
        _check_tensor(n, a, 1)
    sizes = {n: a.size(0) for n, a in zip(names, args)}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"chosen and rejected log-probabilities must have one batch size (one entry per pair), got {sizes}")
    if policy_chosen_logps.numel() == 0:
        raise ValueError("dpo_loss needs at least one preference pair, got 0")
    chosen = beta * (policy_chosen_logps - ref_chosen_logps.detach())  # (B,) implicit reward of y_w
    rejected = beta * (policy_rejected_logps - ref_rejected_logps.detach())  # (B,) implicit reward of y_l
    margin = chosen - rejected
    loss = -F.logsigmoid(margin).mean()
    return DPOOutput(loss, chosen.detach(), rejected.detach(), margin.detach())


# ----------------------------------------------------------------------------- GRPO
def group_advantages(rewards: torch.Tensor, eps: float = 1e-4, scale: bool = True) -> torch.Tensor:
    """Group-relative advantages: (reward - group mean) / (group std + eps), rewards (n_prompts, G) -> (n_prompts, G).

    Each row holds the G samples of one prompt; std is the sample standard deviation (n - 1, as
    TRL). A group whose rewards are all equal gets advantages 0 (nothing to learn from it).
    `scale=False` skips the division (Dr. GRPO). rewards [[1, 0, 0, 1]] -> [[0.866, -0.866, -0.866, 0.866]].
    See notebook 14.
    """
    _check_tensor("rewards", rewards, 2)
    if rewards.size(1) < 2:
        raise ValueError(
            f"rewards must be (n_prompts, G) with a group of G >= 2 samples per prompt, got {tuple(rewards.shape)}: "
            "with one sample the group mean is the reward itself and the advantages are undefined"
        )
    rewards = rewards.float()
    if not bool(torch.isfinite(rewards).all()):
        raise ValueError("rewards must be finite numbers, got NaN or inf")
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # (n, G)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True) + eps)


def kl_k3(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from sampled tokens: exp(ref - new) - (ref - new) - 1 (Schulman's k3).

    Always >= 0, zero where the two log-probabilities are equal, unbiased when the tokens are sampled
    from pi. logps=log 0.5, ref_logps=log 0.25 -> 0.5 - log 0.5 - 1 = 0.1931. See notebook 14.
    """
    d = ref_logps - logps
    return torch.exp(d) - d - 1.0


class GRPOOutput(NamedTuple):
    """What `grpo_loss` returns: the loss to minimise and numbers to watch, detached."""

    loss: torch.Tensor  # () policy loss + kl_beta * KL, mean over response tokens
    policy_loss: torch.Tensor  # () the clipped-ratio part
    kl: torch.Tensor  # () mean k3 estimate of KL(pi || ref) per response token
    clip_fraction: torch.Tensor  # () share of response tokens whose gradient the clip switched off


def grpo_loss(
    logps_new: torch.Tensor,
    logps_old: torch.Tensor,
    logps_ref: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    kl_beta: float = 0.04,
) -> GRPOOutput:
    """The GRPO loss on per-token log-probabilities (B, T) of sampled responses, masked to response tokens.

    Per token: ratio = exp(new - old), term = -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)
    + kl_beta * k3(new, ref); the loss is the mean of the terms over the tokens where mask is 1
    (all response tokens of the batch together). `advantages` is (B,) (one per sample, from
    `group_advantages(...).flatten()`) or (B, T). `logps_old` (the sampling policy) and `logps_ref`
    are constants (detached). With one update per batch, old == new: the ratio is 1 and the gradient
    is the policy gradient of -mean(A * log pi). See notebook 14.
    """
    for n, t in (("logps_new", logps_new), ("logps_old", logps_old), ("logps_ref", logps_ref), ("mask", mask)):
        _check_tensor(n, t, 2)
    _check_same_shape(logps_new=logps_new, logps_old=logps_old, logps_ref=logps_ref, mask=mask)
    _check_tensor("advantages", advantages)
    if advantages.dim() == 1:
        if advantages.size(0) != logps_new.size(0):
            raise ValueError(
                f"advantages (B,) must have one entry per sample: got {advantages.size(0)} for B={logps_new.size(0)}"
            )
        advantages = advantages[:, None]  # (B, 1) the same for every token of a sample
    elif advantages.shape != logps_new.shape:
        raise ValueError(f"advantages must be (B,) or (B, T) = {tuple(logps_new.shape)}, got {tuple(advantages.shape)}")
    clip_eps = _check_positive("clip_eps", clip_eps)
    if not isinstance(kl_beta, numbers.Real) or isinstance(kl_beta, bool) or kl_beta < 0:
        raise ValueError(f"kl_beta must be a number >= 0, got {kl_beta!r}")
    m = mask.to(logps_new.dtype)
    n_tokens = m.sum()
    if n_tokens == 0:
        raise ValueError("mask selects no response tokens: nothing to learn from")
    advantages = advantages.detach().to(logps_new.dtype)
    # masked positions may hold anything (even -inf): replace them before exp so they give 0 and no NaN gradients
    keep = mask.bool()
    new = torch.where(keep, logps_new, torch.zeros_like(logps_new))
    old = torch.where(keep, logps_old.detach(), torch.zeros_like(logps_new))
    ref = torch.where(keep, logps_ref.detach(), torch.zeros_like(logps_new))
    ratio = torch.exp(new - old)  # (B, T) pi_new / pi_old per sampled token
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    policy_terms = -torch.minimum(ratio * advantages, clipped * advantages)  # (B, T)
    kl_terms = kl_k3(new, ref)  # (B, T)
    policy_loss = (policy_terms * m).sum() / n_tokens
    kl = (kl_terms * m).sum() / n_tokens
    loss = policy_loss + float(kl_beta) * kl
    # tokens whose gradient the clip switched off: ratio pushed below 1 - eps for A < 0, above 1 + eps for A > 0
    was_clipped = ((ratio < 1.0 - clip_eps) & (advantages < 0)) | ((ratio > 1.0 + clip_eps) & (advantages > 0))
    clip_fraction = (was_clipped.to(m.dtype) * m).sum() / n_tokens
    return GRPOOutput(loss, policy_loss.detach(), kl.detach(), clip_fraction.detach())


# ----------------------------------------------------------------------------- sampling and scoring
@torch.no_grad()
def sample_groups(
    model: torch.nn.Module,
    prompts: torch.Tensor,
    group_size: int,
    max_new_tokens: int,
    eos_id: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample `group_size` completions of each prompt (n, P) -> ids (n * G, P + new) and response_mask (n * G, P + new).

    Rows are grouped by prompt (rows i*G .. i*G + G - 1 belong to prompt i), so
    `rewards.view(n, G)` gives the groups. The mask is 1 on the generated tokens up to and including
    the first `eos_id` and 0 on the prompt and on what follows (padding). Prompts must share one
    length (pad them on the left yourself otherwise) and fit in the context with the new tokens.
    See notebook 14.
    """
    from course_lib.generation import generate

    _check_tensor("prompts", prompts, 2)
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 1:
        raise ValueError(f"group_size must be an int >= 1, got {group_size!r}")
    block = int(model.config.block_size)
    if prompts.size(1) + max_new_tokens > block:
        raise ValueError(
            f"prompts of {prompts.size(1)} tokens + max_new_tokens={max_new_tokens} exceed the model's context of {block}"
        )
    P = prompts.size(1)
    rows = prompts.repeat_interleave(group_size, dim=0)  # (n * G, P)
    ids = generate(model, rows, max_new_tokens, temperature=temperature, eos_id=eos_id, generator=generator)
    new = ids[:, P:]  # (n * G, new)
    is_eos = (new == eos_id).long()
    after_eos = (is_eos.cumsum(1) - is_eos) > 0  # strictly after the first eos
    mask = torch.zeros_like(ids)
    mask[:, P:] = (~after_eos).long()
    return ids, mask


def score(reward_fn: Callable[[Any], Any], samples: Sequence[Any]) -> torch.Tensor:
    """Apply `reward_fn` to every sample and return the rewards as a float tensor (len(samples),).

    `reward_fn(sample)` must return one real number (int, float, bool, or a 0-d tensor / NumPy scalar);
    anything else (a list, None, a string, NaN) is a clear TypeError/ValueError naming the sample.
    >>> score(len, ["ab", "abc"]).tolist()
    [2.0, 3.0]

    See notebook 14.
    """
    if not callable(reward_fn):
        raise TypeError(f"reward_fn must be callable, got {type(reward_fn).__name__}")
    out = []
    for i, s in enumerate(samples):
        r = reward_fn(s)
        if isinstance(r, torch.Tensor) and r.numel() == 1 and r.dim() == 0:
            r = r.item()
        elif hasattr(r, "item") and getattr(r, "shape", None) == ():  # NumPy scalar
            r = r.item()
        if not isinstance(r, numbers.Real):
            raise TypeError(
                f"reward_fn must return one number per sample; for sample {i} ({s!r:.60}) it returned "
                f"{type(r).__name__} {r!r:.60}"
            )
        if not math.isfinite(float(r)):
            raise ValueError(f"reward_fn returned {r} for sample {i} ({s!r:.60}): rewards must be finite")
        out.append(float(r))
    return torch.tensor(out, dtype=torch.float32)


def preference_pairs(rewards: torch.Tensor, max_pairs_per_prompt: int | None = None) -> list[tuple[int, int]]:
    """(chosen, rejected) row indices of flattened groups: within each prompt's group, a higher-reward
    sample paired with a lower-reward one, each sample used at most once (best with worst first).

    rewards (n_prompts, G) -> indices into the n_prompts * G rows. [[1, 0, 1, 0]] -> [(0, 3), (2, 1)];
    a group whose rewards are all equal gives no pair. See notebook 14.
    """
    _check_tensor("rewards", rewards, 2)
    G = rewards.size(1)
    pairs: list[tuple[int, int]] = []
    for i, row in enumerate(rewards.tolist()):
        order = sorted(range(G), key=lambda j: (-row[j], j))  # best first, ties by position
        k = 0
        while k < G // 2 and (max_pairs_per_prompt is None or k < max_pairs_per_prompt):
            hi, lo = order[k], order[G - 1 - k]
            if row[hi] <= row[lo]:
                break
            pairs.append((i * G + hi, i * G + lo))
            k += 1
    return pairs


# ----------------------------------------------------------------------------- the task: addition
@dataclass
class AdditionTask:
    """Multi-digit addition as a checkable task: prompt "042+175=", answer "217" then the end token.

    Operands are zero-padded to `n_digits` so every prompt has the same length; the answer is
    written with `n_digits + 1` digits (zero-padded), most significant first, unless `reverse` is
    True (least significant first, which is easier to learn left to right). Characters are the
    tokens: "0"-"9", "+", "=" and "$" (end of answer).
    >>> t = AdditionTask(3); t.prompt(42, 175), t.answer(42, 175)
    ('042+175=', '0217')

    See notebook 14.
    """

    n_digits: int = 3  # digits of each operand
    reverse: bool = False  # write the answer least significant digit first
    chars: str = "0123456789+=$"  # the vocabulary; "$" ends an answer

    def __post_init__(self) -> None:
        if not isinstance(self.n_digits, int) or isinstance(self.n_digits, bool) or not 1 <= self.n_digits <= 9:
            raise ValueError(f"n_digits must be an int in [1, 9], got {self.n_digits!r}")
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.eos_id = self.stoi["$"]

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def prompt_len(self) -> int:
        return 2 * self.n_digits + 2

    @property
    def answer_len(self) -> int:
        """Tokens of a correct answer, the end token included."""
        return self.n_digits + 2

    def prompt(self, a: int, b: int) -> str:
        n = self.n_digits
        if not (0 <= a < 10**n and 0 <= b < 10**n):
            raise ValueError(f"operands must be in [0, {10**n}) for n_digits={n}, got {a} and {b}")
        return f"{a:0{n}d}+{b:0{n}d}="

    def answer(self, a: int, b: int) -> str:
        s = f"{a + b:0{self.n_digits + 1}d}"
        return s[::-1] if self.reverse else s

    def encode(self, text: str) -> list[int]:
        bad = sorted(set(text) - set(self.stoi))
        if bad:
            raise ValueError(f"characters {bad} are not in the task's vocabulary {self.chars!r}")
        return [self.stoi[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def problems(self, n: int, seed: int, exclude: set[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
        """n distinct random problems (a, b), none of them in `exclude`; the same for the same seed."""
        space = 10 ** (2 * self.n_digits) - len(exclude or ())
        if n > space:
            raise ValueError(f"asked for {n} distinct problems, only {space} exist")
        rng, out, seen = random.Random(seed), [], set(exclude or ())
        while len(out) < n:
            p = (rng.randrange(10**self.n_digits), rng.randrange(10**self.n_digits))
            if p not in seen:
                seen.add(p)
                out.append(p)
        return out

    def prompt_ids(self, problems: Sequence[tuple[int, int]]) -> torch.Tensor:
        """(n, prompt_len) token ids of the prompts."""
        return torch.tensor([self.encode(self.prompt(a, b)) for a, b in problems], dtype=torch.long)

    def demonstrations(self, problems: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt + correct answer + end token for each problem: ids (n, L) and response_mask (n, L)."""
        ids = [self.encode(self.prompt(a, b) + self.answer(a, b) + "$") for a, b in problems]
        x = torch.tensor(ids, dtype=torch.long)
        mask = torch.zeros_like(x)
        mask[:, self.prompt_len :] = 1
        return x, mask

    def completion_text(self, completion_ids: Sequence[int]) -> str:
        """The generated text up to (not including) the first end token."""
        text = self.decode(completion_ids)
        return text.split("$", 1)[0]

    def is_correct(self, problem: tuple[int, int], completion_ids: Sequence[int]) -> bool:
        """True when the completion is exactly the answer followed by the end token."""
        text = self.decode(completion_ids)
        return "$" in text and text.split("$", 1)[0] == self.answer(*problem)

    def reward(self, sample: tuple[tuple[int, int], Sequence[int]]) -> float:
        """The checker as a reward: 1.0 for ((a, b), completion_ids) with the exact answer, else 0.0."""
        problem, completion = sample
        return float(self.is_correct(problem, completion))

    def length_reward(self, sample: tuple[tuple[int, int], Sequence[int]]) -> float:
        """A flawed reward, on purpose: the share of the generated tokens that are digits, ignoring correctness.

        A judge that likes long, confident-looking answers; the policy can raise it without adding
        correctly (by never writing the end token). See notebook 14, section 6.
        """
        _, completion = sample
        text = self.decode(completion)
        return sum(c.isdigit() for c in text) / max(1, len(text))

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, problems: Sequence[tuple[int, int]]) -> list[bool]:
        """Greedy answers of `model` to each problem, checked: one bool per problem."""
        from course_lib.generation import generate

        prompts = self.prompt_ids(problems).to(next(model.parameters()).device)
        out = generate(model, prompts, self.answer_len, greedy=True)[:, self.prompt_len :].tolist()
        return [self.is_correct(p, o) for p, o in zip(problems, out)]
