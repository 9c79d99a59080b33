"""Tests of course_lib.diagrams.architectures: names, ids, key labels, and the numbers each picture computes."""

import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_lib.diagrams import architectures as A
from course_lib.diagrams.kit import Diagram, svg_texts

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parent.parent
NAMES = {
    "bert_input_stack": "bert-inputs",
    "causal_mask_and_kv_cache": "causal-mask-kv-cache",
    "encoder_decoder": "encoder-decoder",
    "lora_and_prompt_tuning": "lora-prompt-tuning",
    "moe_routing": "moe-routing",
    "chat_template_loss_mask": "chat-template-loss-mask",
    "project_flow": "project-flow",
    "grouped_query_attention": "grouped-query-attention",
}


@pytest.fixture(scope="module")
def svgs():
    return {f: getattr(A, f)().svg() for f in NAMES}


texts = svg_texts  # the text of every <text> element, one per line of a label


def joined(svg: str) -> str:
    return "\n".join(texts(svg))


@pytest.mark.parametrize("func,name", NAMES.items())
def test_each_diagram_has_its_name_and_id(func, name, svgs):
    d = getattr(A, func)()
    assert isinstance(d, Diagram) and d.name == name
    assert f'id="diagram-{name}"' in svgs[func]
    assert inspect.getdoc(getattr(A, func)).count("notebook") >= 1  # the one-line docstring names its notebook


def test_svg_is_identical_in_another_process(svgs):
    code = ("import hashlib, json; from course_lib.diagrams import architectures as A; "
            f"print(json.dumps({{f: hashlib.sha256(getattr(A, f)().svg().encode()).hexdigest() for f in {list(NAMES)!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    assert theirs == {f: hashlib.sha256(s.encode()).hexdigest() for f, s in svgs.items()}


def test_diagrams_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for f in NAMES:
        getattr(A, f)()
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------- 05
def test_bert_inputs_rates_come_from_mask_tokens(svgs):
    from course_lib.masking import bert_inputs, mask_tokens

    p = {k: v.default for k, v in inspect.signature(mask_tokens).parameters.items()}
    t = joined(svgs["bert_input_stack"])
    assert f"{p['mask_prob']:.0%} chosen" in t and f"{1 - p['mask_prob']:.0%} not chosen" in t
    assert (p["mask_prob"], p["mask_frac"], p["random_frac"]) == (0.15, 0.8, 0.1)  # BERT's rule, as notebook 05 states
    for share in ("80%", "10%", "[MASK]", "random", "kept"):
        assert share in t
    labels = texts(svgs["bert_input_stack"])
    segs = bert_inputs([5, 6, 7], [8, 9], cls_id=0, sep_id=1)["token_type_ids"].tolist()  # the picture's layout
    assert [x for x in labels if x in ("E_A", "E_B")] == [f"E_{'AB'[s]}" for s in segs]
    assert [x for x in labels if re.fullmatch(r"E_\d+", x)] == [f"E_{i}" for i in range(len(segs))]
    assert labels.count("[SEP]") == 2 and "[CLS]" in labels


# ----------------------------------------------------------------------------- 06
def test_causal_grid_is_course_lib_causal_mask(svgs):
    from course_lib.attention import causal_mask
    from course_lib.models import GPTConfig

    labels = texts(svgs["causal_mask_and_kv_cache"])
    T = 8
    assert labels.count("−∞") == int((~causal_mask(T)).sum())  # one per blocked cell
    cfg = GPTConfig.preset("char-shakespeare", vocab_size=65)
    t = joined(svgs["causal_mask_and_kv_cache"])
    assert f"= {2 * cfg.n_layer * cfg.d_model} floats per token" in t
    for key in ("cached K", "cached V", "k6", "v6", "q6", "new: o"):
        assert key in labels


# ----------------------------------------------------------------------------- 07
def test_encoder_decoder_shows_the_real_encoding(svgs):
    from course_lib.pronunciation import encode_pairs, source_vocab, target_vocab

    b = encode_pairs([("knight", ["N", "AY", "T"])], source_vocab(), target_vocab())
    labels = texts(svgs["encoder_decoder"])
    for key, vocab in (("src", source_vocab()), ("tgt", target_vocab()), ("labels", target_vocab())):
        ids = b[key][0].tolist()
        drawn = [vocab.itos[i] for i in ids] + [str(i) for i in ids]  # the tokens, then their ids under them
        assert any(labels[j:j + len(drawn)] == drawn for j in range(len(labels))), key
    assert ["<bos>", "N", "AY", "T"] == [target_vocab().itos[i] for i in b["tgt"][0].tolist()]
    t = joined(svgs["encoder_decoder"])
    for key in ("cross-attention", "queries: decoder · keys, values: encoder", "causal self-attention",
                "bidirectional self-attention", "<eos>", "keys, values", "× 2"):
        assert key in t


# ----------------------------------------------------------------------------- 08
def test_lora_and_prompt_counts(svgs):
    t = joined(svgs["lora_and_prompt_tuning"])
    d, r, n = A.D_MINILM, A.LORA_RANK, A.PROMPT_TOKENS
    assert f"= {r * (d + d):,}" in t and f"frozen: {d * d + d:,}" in t
    assert f"= {n * d:,} numbers" in t
    assert f"× α/r = {A.LORA_ALPHA}/{r}" in t
    nb = (ROOT / "notebooks" / "08_bert_finetuning.ipynb").read_text()  # the sizes the notebook uses
    assert f"PROMPT_TOKENS, PROMPT_LR = {n}," in nb and f"LORA_RANK, LORA_LR = {r}," in nb and "alpha=2 * LORA_RANK" in nb
    assert A.LORA_ALPHA == 2 * r
    for key in ("frozen", "trained", "classification head", "inserted after [CLS]", "W x + b + (α/r) B A x"):
        assert key in t


# ----------------------------------------------------------------------------- 09
def test_moe_token_choice_picks_are_row_top_k_and_expert_choice_column_top_c(svgs):
    ex = A.moe_example()
    probs, k, tc, ec = ex["probs"], ex["k"], ex["token_choice"], ex["expert_choice"]
    N, E = probs.shape
    assert torch.allclose(probs.sum(-1), torch.ones(N))
    row_top = torch.zeros(N, E, dtype=torch.bool).scatter(1, probs.topk(k, dim=-1).indices, True)
    assert (tc.dispatch <= row_top).all()  # every routed pair is one of its row's top-k
    assert int((row_top & ~tc.dispatch).sum()) == tc.dropped  # the rest of the top-k were dropped
    assert (tc.tokens_per_expert <= tc.capacity).all()
    col_top = torch.zeros(N, E, dtype=torch.bool).scatter(0, probs.topk(ec.capacity, dim=0).indices, True)
    assert torch.equal(ec.dispatch, col_top)  # each column's top-C
    labels = texts(svgs["moe_routing"])
    cells = [x for x in labels if re.fullmatch(r"\d\.\d\d", x)]
    assert cells == [f"{float(v):.2f}" for v in probs.flatten()] * 2  # both grids show the router probabilities
    t = joined(svgs["moe_routing"])
    assert f"dropped: {tc.dropped} of {N * k} choices" in t and f"capacity C = {tc.capacity}" in t


# ----------------------------------------------------------------------------- 10
def test_chat_stream_and_mask_are_encode_chats(svgs):
    from course_lib.chat import IM_END, encode_chat

    ex = A.chat_example()
    ids, mask = encode_chat(A.CONVERSATION, ex["tokenizer"])
    assert (ids, mask) == (ex["ids"], ex["mask"])
    assert ex["targets"] == "K AE1 T" + IM_END
    assert ex["tokenizer"].decode([i for i, m in zip(ids, mask) if m]) == "K AE1 T" + IM_END
    nb = (ROOT / "notebooks" / "10_interaction_formats.ipynb").read_text()
    for m in A.CONVERSATION:  # the same messages as notebook 10's conversation
        assert m["content"].replace('"', '\\"') in nb
    labels = texts(svgs["chat_template_loss_mask"])
    seq, i, drawn = labels[1:], 0, []  # after the title: per line a role and "m", then (token, mask) pairs
    while i < len(seq):
        if i + 1 < len(seq) and seq[i + 1] == "m":
            i += 2
            continue
        drawn.append(seq[i])
        i += 1
    n = len(ids)
    assert drawn[0:2 * n:2] == [A._show(p) for p in ex["pieces"]]  # every token, in order
    assert drawn[1:2 * n:2] == [str(m) for m in mask]  # and under each its mask bit
    assert labels.count("<|im_start|>") == 3 and labels.count("<|im_end|>") == 3


# ----------------------------------------------------------------------------- 11
def test_project_flow_names_the_real_commands_and_files(svgs):
    from course_lib import cli
    from course_lib.training import CONFIG_FILE, MODEL_FILE

    t = joined(svgs["project_flow"])
    assert A.PROJECT_COMMANDS == cli.COMMANDS
    for cmd in cli.COMMANDS:
        assert cmd in texts(svgs["project_flow"])
    assert f"{MODEL_FILE} + {CONFIG_FILE}" in t
    source = inspect.getsource(cli)
    for name in ("history.json", "eval.json", "meta.json", "data.safetensors", "prepared", "checkpoint"):
        assert name in t and name in source
    sections = [k for k, v in cli.load_config("gpt_char").items() if isinstance(v, dict)]
    assert all(s in t for s in sections)


# ----------------------------------------------------------------------------- 13
def test_gqa_head_counts_and_cache_sizes(svgs):
    from course_lib.llama import LlamaConfig, kv_cache_bytes_per_token

    c = LlamaConfig()
    assert (c.n_head, c.n_kv_head) == (9, 3)  # SmolLM2-135M, as notebook 13 states
    t = joined(svgs["grouped_query_attention"])
    for n_kv in (c.n_head, c.n_kv_head, 1):
        assert f"{kv_cache_bytes_per_token(c, 2, n_kv):,} bytes per token" in t
    assert kv_cache_bytes_per_token(c, 2) == 2 * 30 * 3 * 64 * 2
    labels = texts(svgs["grouped_query_attention"])
    assert labels.count("q0") == 3 and "k2, v2" in labels and "kv8" in labels


@pytest.mark.parametrize("func", NAMES)
def test_no_text_runs_off_the_canvas(func):
    d = getattr(A, func)()
    fig = d.figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()  # a fresh diagram: giving it a canvas changes nothing else
    W, H = fig.bbox.width, fig.bbox.height
    for t in fig.axes[0].texts:
        if t.get_text():
            box = t.get_window_extent(renderer)
            assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= W + 1 and box.y1 <= H + 1, (t.get_text(), box, W, H)


@pytest.mark.parametrize("func", NAMES)
def test_no_two_labels_overlap(func):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    d = getattr(A, func)()
    renderer = FigureCanvasAgg(d.figure).get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in d.figure.axes[0].texts if t.get_text().strip()]
    for i, (ta, a) in enumerate(boxes):
        for tb, b in boxes[i + 1:]:
            assert not (a.x0 < b.x1 - 1 and b.x0 < a.x1 - 1 and a.y0 < b.y1 - 1 and b.y0 < a.y1 - 1), (ta, tb)
