"""Mixture of experts (混合专家, MoE): a feed-forward layer split into experts, and two ways to route tokens.

A router (路由器) scores every token against every expert; the scores decide which experts
process which tokens, and the experts' outputs are mixed with the scores as weights.

What is here:
- `expert_capacity`: how many tokens one expert may take in a batch.
- `Routing`: who goes where, as two (N, E) matrices: `dispatch` (bool) and `combine` (gate weights).
- `token_choice_route`: each token picks its top-k experts (softmax gate, optional renormalisation),
  experts have a capacity and the overflowing assignments are dropped and counted (Switch
  Transformer, GShard, Mixtral); an optional per-expert `selection_bias` shifts which experts are
  picked without changing the gate values (DeepSeek-V3's auxiliary-loss-free load balancing).
- `expert_choice_route`: each expert picks its top-C tokens of the batch (Zhou et al. 2022): every
  expert is exactly full, a token may get zero, one or several experts.
- `load_balancing_loss`: the auxiliary loss E * sum_e f_e * P_e of the Switch Transformer.
- `TokenChoiceMoE`, `ExpertChoiceMoE`: drop-in replacements for `course_lib.layers.FeedForward`,
  (B, T, d) -> (B, T, d); each expert is a `FeedForward`. Options: `n_shared` always-on shared
  experts that every token passes through with gate 1 (DeepSeekMoE), and, for token choice,
  `bias_update_speed` > 0: a routing bias nudged by +-speed after every training step towards
  a balanced load (DeepSeek-V3), instead of (or besides) the auxiliary loss.
- `MoEGPTConfig`, `MoEGPT`: the GPT of `course_lib.models` with MoE feed-forwards; in training mode
  its loss is the language-model loss plus `aux_loss_coef` times the auxiliary loss.

Leaves out: expert parallelism across devices, fine-grained expert segmentation, sigmoid router
scores (DeepSeek-V3 uses them with its bias), router z-loss and jitter noise,
grouped-GEMM kernels (the experts run one after the other in a Python loop, which is clear but
slow on a GPU). See notebook 09.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.layers import FeedForward
from course_lib.models import GPT, GPTConfig, ModelOutput, use_fast_kernels

__all__ = [
    "expert_capacity",
    "Routing",
    "token_choice_route",
    "expert_choice_route",
    "load_balancing_loss",
    "TokenChoiceMoE",
    "ExpertChoiceMoE",
    "MoEGPTConfig",
    "MoEGPT",
    "moe_layers",
]

MOE_KINDS = ("token_choice", "expert_choice")
EC_INFERENCE = ("batch", "threshold")


# ----------------------------------------------------------------------------- routing (pure functions)
def expert_capacity(n_tokens: int, n_experts: int, capacity_factor: float, k: int = 1) -> int:
    """Tokens one expert may take: ceil(capacity_factor * n_tokens * k / n_experts).

    Token choice: k = experts per token. Expert choice: k = 1, so capacity_factor is the average
    number of experts per token (capped at n_tokens: an expert cannot take a token twice).
    >>> expert_capacity(64, 4, 1.25, k=2)
    40

    See notebook 09.
    """
    for name, v in (("n_tokens", n_tokens), ("n_experts", n_experts), ("k", k)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not isinstance(capacity_factor, (int, float)) or not capacity_factor > 0:
        raise ValueError(f"capacity_factor must be a number > 0, got {capacity_factor!r}")
    return max(1, math.ceil(capacity_factor * n_tokens * k / n_experts - 1e-9))


@dataclass
class Routing:
    """A routing decision for N tokens and E experts. See notebook 09."""

    probs: torch.Tensor  # (N, E) router softmax over experts, per token
    dispatch: torch.Tensor  # (N, E) bool: token n is processed by expert e
    combine: torch.Tensor  # (N, E) gate weight of expert e's output for token n (0 where not dispatched)
    capacity: int | None  # tokens per expert allowed (None = unlimited)
    dropped: int = 0  # token choice: (token, expert) choices dropped because the expert was full
    aux_loss: torch.Tensor | None = None  # load-balancing loss (token choice), None for expert choice
    demand: torch.Tensor | None = None  # (E,) tokens that chose each expert, before capacity (token choice)

    @property
    def tokens_per_expert(self) -> torch.Tensor:
        """(E,) how many tokens each expert processes."""
        return self.dispatch.sum(0)

    @property
    def experts_per_token(self) -> torch.Tensor:
        """(N,) how many experts process each token."""
        return self.dispatch.sum(1)

    @property
    def unrouted_tokens(self) -> int:
        """Tokens that no expert processes (their FFN output is 0; the residual carries them on)."""
        return int((self.experts_per_token == 0).sum())

    def detach(self) -> "Routing":
        aux = None if self.aux_loss is None else self.aux_loss.detach()
        return Routing(self.probs.detach(), self.dispatch, self.combine.detach(), self.capacity, self.dropped, aux, self.demand)


def _check_logits(logits: Any) -> tuple[int, int]:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 2 or not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be a float tensor of shape (N tokens, E experts), got {tuple(logits.shape)} {logits.dtype}")
    return logits.shape[0], logits.shape[1]


def load_balancing_loss(probs: torch.Tensor, expert_index: torch.Tensor) -> torch.Tensor:
    """Switch Transformer auxiliary loss: E * sum_e f_e * P_e, equal to 1 when perfectly balanced.

    probs (N, E): router softmax; expert_index (N, k): the experts each token chose.
    f_e = fraction of the N*k choices that went to expert e (not differentiable),
    P_e = mean router probability of expert e (differentiable: this is what the gradient pushes).
    >>> load_balancing_loss(torch.full((4, 2), 0.5), torch.tensor([[0], [1], [0], [1]])).item()
    1.0
    """
    N, E = _check_logits(probs)
    if expert_index.dim() != 2 or expert_index.shape[0] != N:
        raise ValueError(f"expert_index must have shape (N={N}, k), got {tuple(expert_index.shape)}")
    f = F.one_hot(expert_index, E).sum((0, 1)).to(probs.dtype) / expert_index.numel()  # (E,)
    P = probs.mean(0)  # (E,)
    return E * (f * P).sum()


def token_choice_route(
    logits: torch.Tensor,
    k: int,
    capacity: int | None = None,
    normalize: bool = True,
    selection_bias: torch.Tensor | None = None,
) -> Routing:
    """Each token picks its top-k experts; an expert takes at most `capacity` choices, the rest are dropped.

    gates = softmax(logits) restricted to the top k (renormalised to sum to 1 if `normalize`).
    `selection_bias` (E,), if given, is added to the probabilities only to pick the top k; the gates
    keep the unbiased probabilities (DeepSeek-V3). E.g. probs [0.5, 0.3, 0.2], k=1, bias [-0.3, 0, 0]
    -> expert 1 is picked, with gate 0.3 (unnormalised) or 1.0 (normalised).
    Priority when an expert overflows: all first choices (in token order) before any second choice.
    logits (N, E) -> Routing with dispatch/combine (N, E), `dropped`, `demand` and the load-balancing
    `aux_loss`. See notebook 09.
    """
    N, E = _check_logits(logits)
    if not isinstance(k, int) or not 1 <= k <= E:
        raise ValueError(f"k must be an int in [1, n_experts={E}], got {k!r}")
    if capacity is not None and (not isinstance(capacity, int) or capacity < 1):
        raise ValueError(f"capacity must be a positive int or None, got {capacity!r}")
    if selection_bias is not None and (not isinstance(selection_bias, torch.Tensor) or selection_bias.shape != (E,)):
        raise ValueError(f"selection_bias must be a tensor of shape (n_experts={E},), got {tuple(getattr(selection_bias, 'shape', ()))}")
    probs = logits.float().softmax(-1)  # (N, E)
    if selection_bias is None:
        top_p, top_i = probs.topk(k, dim=-1)  # (N, k), best first
    else:
        top_i = (probs.detach() + selection_bias.to(probs)).topk(k, dim=-1).indices  # (N, k) picked with the bias
        top_p = probs.gather(-1, top_i)  # (N, k) gates from the unbiased probabilities
    gates = top_p / top_p.sum(-1, keepdim=True) if normalize else top_p  # (N, k)
    onehot = F.one_hot(top_i, E)  # (N, k, E)
    if capacity is None:
        keep = torch.ones(N, k, dtype=torch.bool, device=logits.device)
    else:
        order = onehot.transpose(0, 1).reshape(k * N, E)  # rank-major: every 1st choice, then every 2nd
        position = (order.cumsum(0) - 1) * order  # (k*N, E) place of each choice in its expert's queue
        keep = (position.sum(-1) < capacity).reshape(k, N).t()  # (N, k)
    kept = onehot * keep[..., None]  # (N, k, E)
    dispatch = kept.sum(1) > 0  # (N, E)
    combine = (kept * gates[..., None]).sum(1)  # (N, E)
    aux = load_balancing_loss(probs, top_i)
    demand = onehot.sum((0, 1))  # (E,) choices per expert before capacity
    return Routing(probs, dispatch, combine, capacity, int((~keep).sum()), aux, demand)


def expert_choice_route(logits: torch.Tensor, capacity: int) -> Routing:
    """Each expert picks the `capacity` tokens with the highest router probability for it.

    probs = softmax(logits) over experts (per token); expert e takes top-C of probs[:, e] over the
    N tokens and weights its output for token n by probs[n, e]. Every expert is exactly full;
    a token may be picked by 0..E experts. logits (N, E) -> Routing. See notebook 09.
    """
    N, E = _check_logits(logits)
    if not isinstance(capacity, int) or not 1 <= capacity <= N:
        raise ValueError(f"capacity must be an int in [1, n_tokens={N}], got {capacity!r}")
    probs = logits.float().softmax(-1)  # (N, E)
    g, idx = probs.t().topk(capacity, dim=-1)  # (E, C) gate values and token indices
    combine = torch.zeros_like(probs).scatter(0, idx.t(), g.t())  # (N, E)
    dispatch = torch.zeros(N, E, dtype=torch.bool, device=logits.device).scatter(0, idx.t(), True)
    return Routing(probs, dispatch, combine, capacity, 0, None, dispatch.sum(0))


# ----------------------------------------------------------------------------- layers
class _MoE(nn.Module):
    """Router + routed experts (+ shared experts) + the dispatch/combine loop; subclasses choose the routing."""

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        n_experts: int,
        activation: str = "gelu",
        bias: bool = True,
        n_shared: int = 0,
        shared_d_ff: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(n_experts, int) or n_experts < 1:
            raise ValueError(f"n_experts must be a positive int, got {n_experts!r}")
        if not isinstance(n_shared, int) or isinstance(n_shared, bool) or n_shared < 0:
            raise ValueError(f"n_shared must be an int >= 0, got {n_shared!r}")
        self.d_model, self.d_ff, self.n_experts, self.n_shared = d_model, d_ff, n_experts, n_shared
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(d_model, d_ff, activation, 0.0, bias) for _ in range(n_experts))
        # shared experts (DeepSeekMoE): every token, gate 1, no router
        self.shared = nn.ModuleList(FeedForward(d_model, shared_d_ff or d_ff, activation, 0.0, bias) for _ in range(n_shared))
        self.aux_loss: torch.Tensor = torch.zeros(())
        self.last_routing: Routing | None = None
        self.register_buffer("load", torch.zeros(n_experts, dtype=torch.long), persistent=False)
        self.register_buffer("demand", torch.zeros(n_experts, dtype=torch.long), persistent=False)
        self.stats: dict[str, int] = {}
        self.reset_stats()

    def reset_stats(self) -> None:
        """Zero the training counters: `load` (tokens processed per expert), `demand` (tokens that chose
        each expert, before capacity) and `stats` (tokens, dropped, unrouted)."""
        self.load.zero_()
        self.demand.zero_()
        self.stats = {"tokens": 0, "dropped": 0, "unrouted": 0}

    def route(self, logits: torch.Tensor) -> Routing:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape (..., d_model={self.d_model}), got {tuple(getattr(x, 'shape', ()))}")
        shape = x.shape
        xf = x.reshape(-1, self.d_model)  # (N, d)
        routing = self.route(self.router(xf))  # dispatch/combine (N, E)
        out = torch.zeros_like(xf)  # (N, d)
        for e, expert in enumerate(self.experts):
            idx = routing.dispatch[:, e].nonzero().squeeze(-1)  # (n_e,) tokens of expert e
            if idx.numel():
                y = expert(xf[idx])  # (n_e, d)
                out = out.index_add(0, idx, y * routing.combine[idx, e, None].to(y.dtype))
        for expert in self.shared:  # always on, gate 1
            out = out + expert(xf)  # (N, d)
        self.aux_loss = routing.aux_loss if routing.aux_loss is not None else xf.new_zeros(())
        self.last_routing = routing.detach()
        if self.training:
            self.load += routing.tokens_per_expert.to(self.load.device)
            if routing.demand is not None:
                self.demand += routing.demand.to(self.demand.device)
            self.stats["tokens"] += xf.shape[0]
            self.stats["dropped"] += routing.dropped
            self.stats["unrouted"] += routing.unrouted_tokens
        return out.reshape(shape)

    def load_from_dense(self, ffn: FeedForward) -> "_MoE":
        """Copy one dense `FeedForward`'s weights into every expert (then MoE = dense, see the tests)."""
        if self.n_shared:
            raise ValueError("load_from_dense needs a layer without shared experts (they would add a second copy)")
        if ffn.d_model != self.d_model or ffn.d_ff != self.d_ff:
            raise ValueError(
                f"need a FeedForward with d_model={self.d_model}, d_ff={self.d_ff}; got d_model={ffn.d_model}, d_ff={ffn.d_ff}"
            )
        for expert in self.experts:
            expert.load_state_dict(ffn.state_dict())
        return self


class TokenChoiceMoE(_MoE):
    """MoE feed-forward where each token picks its top-k experts. (B, T, d) -> (B, T, d).

    capacity = ceil(capacity_factor * N * k / E) for N tokens in the batch (None = unlimited);
    `eval_capacity_factor` is used in eval mode (default None: no token is dropped at inference,
    so a token's output depends only on itself). After each forward: `aux_loss`, `last_routing`.
    `n_shared` shared experts (width `shared_d_ff`, default `d_ff`) process every token with gate 1.
    `bias_update_speed` (gamma) > 0 turns on auxiliary-loss-free balancing (DeepSeek-V3): the
    buffer `routing_bias` (E,) is added to the probabilities to pick the top k (not to the gates),
    and after every training-mode forward (one per step in `course_lib.training.train`) the layer
    sets b_e += gamma * sign(mean demand - demand_e): overloaded experts become less attractive,
    underloaded ones more. No gradient flows through the bias.
    >>> TokenChoiceMoE(8, 16, n_experts=4, k=2)(torch.zeros(2, 3, 8)).shape
    torch.Size([2, 3, 8])

    See notebook 09.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        n_experts: int = 4,
        k: int = 2,
        capacity_factor: float | None = 1.25,
        eval_capacity_factor: float | None = None,
        normalize: bool = True,
        activation: str = "gelu",
        bias: bool = True,
        n_shared: int = 0,
        shared_d_ff: int | None = None,
        bias_update_speed: float = 0.0,
    ) -> None:
        super().__init__(d_model, d_ff, n_experts, activation, bias, n_shared, shared_d_ff)
        if not isinstance(k, int) or not 1 <= k <= n_experts:
            raise ValueError(f"k must be an int in [1, n_experts={n_experts}], got {k!r}")
        if not isinstance(bias_update_speed, (int, float)) or not bias_update_speed >= 0:
            raise ValueError(f"bias_update_speed must be a number >= 0, got {bias_update_speed!r}")
        self.k, self.normalize, self.bias_update_speed = k, normalize, float(bias_update_speed)
        self.capacity_factor, self.eval_capacity_factor = capacity_factor, eval_capacity_factor
        self.register_buffer("routing_bias", torch.zeros(n_experts))  # (E,) saved in checkpoints

    def route(self, logits: torch.Tensor) -> Routing:
        cf = self.capacity_factor if self.training else self.eval_capacity_factor
        cap = None if cf is None else expert_capacity(logits.shape[0], self.n_experts, cf, self.k)
        balancing = self.bias_update_speed > 0
        routing = token_choice_route(logits, self.k, cap, self.normalize, self.routing_bias if balancing else None)
        if balancing and self.training:  # after the step: overloaded experts down, underloaded up
            with torch.no_grad():
                demand = routing.demand.float()  # (E,)
                self.routing_bias += self.bias_update_speed * torch.sign(demand.mean() - demand)
        return routing

    def extra_repr(self) -> str:
        return (f"n_experts={self.n_experts}, k={self.k}, capacity_factor={self.capacity_factor}, normalize={self.normalize}, "
                f"n_shared={self.n_shared}, bias_update_speed={self.bias_update_speed}")


class ExpertChoiceMoE(_MoE):
    """MoE feed-forward where each expert picks its top-C tokens of the batch. (B, T, d) -> (B, T, d).

    C = ceil(capacity_factor * N / E): on average each token gets `capacity_factor` experts.
    inference="batch" routes the same way in eval mode (needs the whole batch, future tokens
    included); "threshold" lets each token take expert e when probs[e] >= threshold[e], a running
    mean of the C-th best score seen in training: a causal approximation for generation.
    >>> ExpertChoiceMoE(8, 16, n_experts=4, capacity_factor=2.0)(torch.zeros(2, 3, 8)).shape
    torch.Size([2, 3, 8])

    See notebook 09.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        n_experts: int = 4,
        capacity_factor: float = 2.0,
        inference: str = "batch",
        threshold_momentum: float = 0.99,
        activation: str = "gelu",
        bias: bool = True,
        n_shared: int = 0,
        shared_d_ff: int | None = None,
    ) -> None:
        super().__init__(d_model, d_ff, n_experts, activation, bias, n_shared, shared_d_ff)
        if not isinstance(capacity_factor, (int, float)) or not capacity_factor > 0:
            raise ValueError(f"capacity_factor must be a number > 0, got {capacity_factor!r}")
        if inference not in EC_INFERENCE:
            raise ValueError(f"inference must be one of {EC_INFERENCE}, got {inference!r}")
        self.capacity_factor, self.inference, self.threshold_momentum = capacity_factor, inference, threshold_momentum
        self.register_buffer("thresholds", torch.full((n_experts,), float("nan")))  # (E,) saved in checkpoints

    def route(self, logits: torch.Tensor) -> Routing:
        N = logits.shape[0]
        if not self.training and self.inference == "threshold":
            if torch.isnan(self.thresholds).any():
                raise RuntimeError("threshold inference needs thresholds: train the layer first (in train mode)")
            probs = logits.float().softmax(-1)  # (N, E)
            dispatch = probs >= self.thresholds  # (N, E): each token decides alone
            return Routing(probs, dispatch, probs * dispatch, None, 0, None, dispatch.sum(0))
        cap = min(N, expert_capacity(N, self.n_experts, self.capacity_factor))
        routing = expert_choice_route(logits, cap)
        if self.training:  # running mean of each expert's C-th best probability
            with torch.no_grad():
                kth = routing.probs.t().topk(cap, dim=-1).values[:, -1]  # (E,)
                m = self.threshold_momentum
                first = torch.isnan(self.thresholds)
                self.thresholds.copy_(torch.where(first, kth, m * self.thresholds + (1 - m) * kth))
        return routing

    def extra_repr(self) -> str:
        return f"n_experts={self.n_experts}, capacity_factor={self.capacity_factor}, inference={self.inference!r}"


# ----------------------------------------------------------------------------- a GPT with MoE feed-forwards
@dataclass
class MoEGPTConfig(GPTConfig):
    """A GPT whose feed-forward layers are mixtures of experts. See notebook 09."""

    moe: str = "token_choice"  # routing: "token_choice" or "expert_choice"
    n_experts: int = 4  # experts per MoE layer
    top_k: int = 2  # token choice: experts per token
    expert_d_ff: int | None = None  # width of each expert; None = (d_ff or 4 * d_model) // top_k
    capacity_factor: float | None = 1.25  # token choice: C = ceil(cf * N * k / E); expert choice: experts per token
    eval_capacity_factor: float | None = None  # token choice in eval mode (None = no drops)
    normalize_gates: bool = True  # token choice: renormalise the top-k gates to sum to 1
    ec_inference: str = "batch"  # expert choice in eval mode: "batch" or "threshold"
    aux_loss_coef: float = 0.01  # weight of the load-balancing loss (token choice) in the training loss
    n_shared_experts: int = 0  # always-on shared experts per layer (DeepSeekMoE), gate 1
    shared_d_ff: int | None = None  # width of each shared expert; None = expert_width
    bias_update_speed: float = 0.0  # token choice: aux-loss-free balancing speed gamma (DeepSeek-V3); 0 = off

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.moe not in MOE_KINDS:
            raise ValueError(f"moe must be one of {MOE_KINDS}, got {self.moe!r}")
        if self.moe == "expert_choice" and self.capacity_factor is None:
            raise ValueError("expert choice needs a capacity_factor (the average number of experts per token)")
        if self.ec_inference not in EC_INFERENCE:
            raise ValueError(f"ec_inference must be one of {EC_INFERENCE}, got {self.ec_inference!r}")
        if self.bias_update_speed and self.moe != "token_choice":
            raise ValueError("bias_update_speed (bias-based balancing) needs moe='token_choice'; expert choice is balanced by construction")

    @property
    def expert_width(self) -> int:
        return self.expert_d_ff or (self.d_ff or 4 * self.d_model) // self.top_k


def _make_moe(c: MoEGPTConfig) -> _MoE:
    if c.moe == "token_choice":
        return TokenChoiceMoE(
            c.d_model, c.expert_width, c.n_experts, c.top_k, c.capacity_factor, c.eval_capacity_factor,
            c.normalize_gates, c.activation, c.bias, c.n_shared_experts, c.shared_d_ff, c.bias_update_speed,
        )
    return ExpertChoiceMoE(c.d_model, c.expert_width, c.n_experts, c.capacity_factor, c.ec_inference,
                           activation=c.activation, bias=c.bias, n_shared=c.n_shared_experts, shared_d_ff=c.shared_d_ff)


def moe_layers(model: nn.Module) -> list[_MoE]:
    """The MoE layers of a model, in order."""
    return [m for m in model.modules() if isinstance(m, _MoE)]


class MoEGPT(GPT):
    """`course_lib.models.GPT` with every block's feed-forward replaced by a MoE layer.

    forward(idx, targets) -> ModelOutput; in training mode loss = LM loss + aux_loss_coef * sum of
    the layers' aux losses (in eval mode: the LM loss only). `last_lm_loss`, `last_aux_loss` hold both.
    >>> m = MoEGPT(MoEGPTConfig.preset("tiny")); m(torch.zeros(1, 5, dtype=torch.long)).logits.shape
    torch.Size([1, 5, 32])

    See notebook 09.
    """

    config_class = MoEGPTConfig

    def __init__(self, config: MoEGPTConfig) -> None:
        if not isinstance(config, MoEGPTConfig):
            raise TypeError(f"config must be a MoEGPTConfig, got {type(config).__name__}")
        super().__init__(config)
        for block in self.blocks:
            block.ffn = moe = _make_moe(config)
            for m in moe.modules():  # GPT-2 initialisation, as course_lib.models
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, mean=0.0, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
            for expert in [*moe.experts, *moe.shared]:
                nn.init.normal_(expert.fc2.weight, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if config.fused:
            use_fast_kernels(self)
        self.last_lm_loss: torch.Tensor | None = None
        self.last_aux_loss: torch.Tensor | None = None

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, **kwargs: Any) -> ModelOutput:
        out = super().forward(idx, targets, **kwargs)
        aux = sum((m.aux_loss for m in moe_layers(self)), torch.zeros((), device=idx.device))
        self.last_lm_loss, self.last_aux_loss = out.loss, aux.detach()
        if out.loss is not None and self.training and self.config.aux_loss_coef:
            out.loss = out.loss + self.config.aux_loss_coef * aux
        return out

    def reset_stats(self) -> None:
        """Zero every MoE layer's load counters."""
        for m in moe_layers(self):
            m.reset_stats()
