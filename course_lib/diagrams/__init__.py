"""Concept diagrams: pictures of the ideas the notebooks teach, drawn by code in the project.

What it does:
- one function per diagram (`pipeline()`, `queries_keys_values()`, ...), each returning a `Diagram`
  that Jupyter shows as inline SVG with `id="diagram-<name>"`;
- `DIAGRAMS`: every diagram's name -> (its function, the notebook that shows it), which the tests use to
  prove that each notebook stores its pictures and that the static site shows them;
- `draw(name)`: the diagram of that name.

The shapes and the palette live in `course_lib.diagrams.kit`; the pictures of notebooks 00-04 in
`foundations`, those of 05-11 and 13 in `architectures`, what training costs (12) and the stages
after pretraining (10) in `training`.

Leaves out: data plots (those are in `course_lib.viz` and the notebooks).

See notebook 00.
"""

from __future__ import annotations

from typing import Callable

from course_lib.diagrams.architectures import (
    bert_input_stack,
    causal_mask_and_kv_cache,
    chat_template_loss_mask,
    encoder_decoder,
    grouped_query_attention,
    lora_and_prompt_tuning,
    moe_routing,
    project_flow,
)
from course_lib.diagrams.foundations import (
    multi_head_attention,
    pipeline,
    queries_keys_values,
    tokens_to_vectors,
    transformer_block,
)
from course_lib.diagrams.kit import COLOURS, Diagram
from course_lib.diagrams.training import post_training_stages, training_cost

__all__ = [
    "COLOURS", "DIAGRAMS", "Diagram", "draw",
    "pipeline", "tokens_to_vectors", "queries_keys_values", "multi_head_attention", "transformer_block",
    "bert_input_stack", "causal_mask_and_kv_cache", "encoder_decoder", "lora_and_prompt_tuning", "moe_routing",
    "chat_template_loss_mask", "project_flow", "grouped_query_attention", "training_cost", "post_training_stages",
]

#: diagram name -> (function that draws it, the notebooks that show it)
DIAGRAMS: dict[str, tuple[Callable[[], Diagram], tuple[str, ...]]] = {
    "pipeline": (pipeline, ("00_welcome_and_setup", "01_tokenization")),
    "tokens-to-vectors": (tokens_to_vectors, ("02_embeddings_and_positions",)),
    "queries-keys-values": (queries_keys_values, ("03_attention",)),
    "multi-head-attention": (multi_head_attention, ("03_attention",)),
    "transformer-block": (transformer_block, ("04_transformer_block",)),
    "bert-inputs": (bert_input_stack, ("05_masked_language_modeling",)),
    "causal-mask-kv-cache": (causal_mask_and_kv_cache, ("06_causal_language_modeling",)),
    "encoder-decoder": (encoder_decoder, ("07_encoder_decoder_transformer",)),
    "lora-prompt-tuning": (lora_and_prompt_tuning, ("08_bert_finetuning",)),
    "moe-routing": (moe_routing, ("09_mixture_of_experts",)),
    "chat-template-loss-mask": (chat_template_loss_mask, ("10_interaction_formats",)),
    "post-training-stages": (post_training_stages, ("10_interaction_formats",)),
    "project-flow": (project_flow, ("11_llm_project_anatomy",)),
    "training-cost": (training_cost, ("12_scaling_laws",)),
    "grouped-query-attention": (grouped_query_attention, ("13_a_modern_llm",)),
}


def draw(name: str) -> Diagram:
    """The diagram called `name` (one of DIAGRAMS)."""
    if name not in DIAGRAMS:
        raise ValueError(f"no diagram called {name!r}; the diagrams are {sorted(DIAGRAMS)}")
    return DIAGRAMS[name][0]()
