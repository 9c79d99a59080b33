"""Chat formats: roles, templates, special tokens, the assistant-only loss mask, instruction data, a chat widget.

What is here:
- Four real chat templates, each written twice: as the Jinja string a Hugging Face tokenizer carries
  (`CHATML_TEMPLATE`, `LLAMA2_TEMPLATE`, `ALPACA_TEMPLATE`, and SmolLM2's `SMOLLM2_TEMPLATE`: ChatML with
  a default system prompt) and as plain Python (`render`). The tests check that both give identical
  strings with `transformers`' `apply_chat_template`.
- `add_special_tokens`: give a trained `BPETokenizer` the chat tokens `<|im_start|>`, `<|im_end|>`, `<|endoftext|>`.
- `encode_chat`: a conversation -> token ids + a 0/1 mask that marks the assistant's tokens, so that
  `sft_batch` trains only on them (labels = -100 elsewhere, which the GPT's loss ignores). Message
  content is encoded as ordinary text: a user who types "<|im_end|>" cannot forge a control token
  (`render_parts` tells template text from content).
- `build_instruction_data`: chat examples made from the course's own data (CMU dictionary,
  Rotten Tomatoes, Shakespeare), with train / held-out splits; `pretraining_text` for a base model.
  `heldout_text`: the same mix from held-out splits, to measure the base model's validation loss.
- `generate_replies` (stops at `<|im_end|>`), `is_well_formed`, `evaluate_chat`: task accuracy and
  format adherence.
- `few_shot_prompt`, `complete_lines`, `evaluate_few_shot`: the same held-out questions asked of a base
  model as plain text with a few solved examples in front (no template, no special tokens).
- `ChatSession`, `token_stream_html`, `chat_widget`: talk to a model and see the exact token stream it gets.

Leaves out: tool calls, multimodal messages, Jinja itself (we only compare with it), and attention masks
between packed conversations (packed rows attend across conversation boundaries, as in most pre-training).
See notebook 10.
"""

from __future__ import annotations

import html
import random
from typing import Any, Iterable, NamedTuple, Sequence

import regex
import torch

__all__ = [
    "ROLES",
    "IM_START",
    "IM_END",
    "ENDOFTEXT",
    "CHAT_SPECIAL_TOKENS",
    "CHATML_TEMPLATE",
    "LLAMA2_TEMPLATE",
    "ALPACA_TEMPLATE",
    "ALPACA_PREAMBLE",
    "SMOLLM2_TEMPLATE",
    "SMOLLM2_SYSTEM",
    "TEMPLATES",
    "CHATML_STYLES",
    "check_conversation",
    "ChatPart",
    "render_parts",
    "render_pieces",
    "render",
    "add_special_tokens",
    "encode_chat",
    "masked_targets",
    "pack_conversations",
    "masked_windows",
    "sft_batch",
    "Example",
    "PRONOUNCE_PROMPT",
    "SENTIMENT_PROMPT",
    "SHAKESPEARE_PROMPT",
    "pronunciation_example",
    "sentiment_example",
    "shakespeare_example",
    "build_instruction_data",
    "pretraining_text",
    "heldout_text",
    "few_shot_prompt",
    "complete_lines",
    "evaluate_few_shot",
    "generate_replies",
    "reply_text",
    "is_well_formed",
    "score_reply",
    "evaluate_chat",
    "ChatSession",
    "token_stream_html",
    "chat_widget",
]

ROLES = ("system", "user", "assistant")
IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
#: The special tokens the course's chat tokenizer gets (ChatML, as used by Qwen and OpenAI's chat models).
CHAT_SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)

# ----------------------------------------------------------------------------- Jinja templates (references)
#: ChatML: every turn is <|im_start|>role\ncontent<|im_end|>\n; the generation prompt opens an assistant turn.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

#: Llama-2-chat (Meta's template): [INST] user [/INST] reply </s>, the system prompt inside the first [INST].
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

#: The preamble Stanford Alpaca puts before every instruction when there is no system message.
ALPACA_PREAMBLE = "Below is an instruction that describes a task. Write a response that appropriately completes the request."

#: Alpaca: ### Instruction: / ### Response: sections separated by blank lines.
ALPACA_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}{{ '" + ALPACA_PREAMBLE + "' + '\n\n' }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)

#: SmolLM2-Instruct's default system prompt, used when the conversation does not start with a system message.
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

#: SmolLM2-Instruct's template, exactly as its GGUF file's `tokenizer.chat_template`: ChatML, plus the
#: default system message when the first message is not a system message.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + SMOLLM2_SYSTEM + "<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TEMPLATES = {"chatml": CHATML_TEMPLATE, "llama2": LLAMA2_TEMPLATE, "alpaca": ALPACA_TEMPLATE, "smollm2": SMOLLM2_TEMPLATE}
#: The styles whose turns end with `<|im_end|>` (what `generate_replies` stops at).
CHATML_STYLES = ("chatml", "smollm2")


# ----------------------------------------------------------------------------- the Python renderer
def check_conversation(messages: Any) -> list[dict]:
    """Check a conversation: a non-empty list of {"role": one of ROLES, "content": str}; system only first."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise TypeError(f"a conversation must be a non-empty list of messages, got {type(messages).__name__}: {messages!r:.80}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise TypeError(f"message {i} must be a dict with 'role' and 'content', got {m!r:.80}")
        if m["role"] not in ROLES:
            raise ValueError(f"message {i}: role must be one of {ROLES}, got {m['role']!r}")
        if not isinstance(m["content"], str):
            raise TypeError(f"message {i}: content must be a str, got {type(m['content']).__name__}")
        if m["role"] == "system" and i != 0:
            raise ValueError(f"message {i}: a system message may only come first")
    return list(messages)


class ChatPart(NamedTuple):
    """A stretch of a rendered conversation: its text, whether it belongs to an assistant turn (trained on),
    and whether it is message content (the caller's text) rather than text the template writes."""

    text: str
    assistant: bool
    content: bool


_Piece = tuple[list[tuple[str, bool]], bool]  # ([(text, is_content), ...], written_by_the_assistant)


def _strip_parts(parts: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """`"".join(texts).strip()`, done part by part so that each part keeps its kind."""
    parts = list(parts)
    for order in (range(len(parts)), range(len(parts) - 1, -1, -1)):
        for i in order:
            text, kind = parts[i]
            text = text.lstrip() if order.step == 1 else text.rstrip()
            parts[i] = (text, kind)
            if text:
                break
    return [(t, k) for t, k in parts if t]


def _render(messages: Sequence[dict], style: str, add_generation_prompt: bool, bos_token: str, eos_token: str) -> list[_Piece]:
    """The one Python version of every template: pieces made of template text (False) and content (True)."""
    messages = check_conversation(messages)
    if style not in TEMPLATES:
        raise ValueError(f"style must be one of {sorted(TEMPLATES)}, got {style!r}")

    def tpl(text: str) -> tuple[str, bool]:
        return (text, False)

    def content(text: str) -> tuple[str, bool]:
        return (text, True)

    out: list[_Piece] = []
    if style in ("chatml", "smollm2"):
        if style == "smollm2" and messages[0]["role"] != "system":
            out += [([tpl(IM_START + "system\n")], False), ([tpl(SMOLLM2_SYSTEM + IM_END)], False), ([tpl("\n")], False)]
        for m in messages:
            out += [
                ([tpl(IM_START + m["role"] + "\n")], False),
                ([content(m["content"]), tpl(IM_END)], m["role"] == "assistant"),
                ([tpl("\n")], False),
            ]
        if add_generation_prompt:
            out.append(([tpl(IM_START + "assistant\n")], False))
    elif style == "llama2":
        system = messages[0]["content"] if messages[0]["role"] == "system" else None
        turns = messages[1:] if system is not None else messages
        for i, m in enumerate(turns):
            if (m["role"] == "user") != (i % 2 == 0):
                raise ValueError(
                    f"Conversation roles must alternate user/assistant/user/assistant/... (turn {i} is {m['role']!r})"
                )
            parts = [content(m["content"])]
            if i == 0 and system is not None:
                parts = [tpl("<<SYS>>\n"), content(system), tpl("\n<</SYS>>\n\n")] + parts
            parts = _strip_parts(parts)  # the template strips the whole of it
            if m["role"] == "user":
                out.append(([tpl(bos_token + "[INST] ")] + parts + [tpl(" [/INST]")], False))
            else:
                out += [([tpl(" ")], False), (parts + [tpl(" " + eos_token)], True)]
        # Llama-2 has no explicit generation prompt: the model answers right after [/INST].
    else:  # alpaca
        if messages[0]["role"] != "system":
            out.append(([tpl(ALPACA_PREAMBLE + "\n\n")], False))
        for m in messages:
            if m["role"] == "system":
                out.append(([content(m["content"]), tpl("\n\n")], False))
            elif m["role"] == "user":
                out.append(([tpl("### Instruction:\n"), content(m["content"]), tpl("\n\n")], False))
            else:
                out += [([tpl("### Response:\n")], False), ([content(m["content"]), tpl(eos_token)], True), ([tpl("\n\n")], False)]
        if add_generation_prompt:
            out.append(([tpl("### Response:\n")], False))
    return out


def render_pieces(
    messages: Sequence[dict],
    style: str = "chatml",
    add_generation_prompt: bool = False,
    bos_token: str = "<s>",
    eos_token: str = "</s>",
) -> list[tuple[str, bool]]:
    """The rendered conversation as pieces (text, written_by_the_assistant); `render` joins them.

    >>> render_pieces([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    [('<|im_start|>user\\n', False), ('hi<|im_end|>', False), ('\\n', False), ('<|im_start|>assistant\\n', False), ('yo<|im_end|>', True), ('\\n', False)]
    See notebook 10.
    """
    pieces = _render(messages, style, add_generation_prompt, bos_token, eos_token)
    return [("".join(t for t, _ in parts), assistant) for parts, assistant in pieces]


def render_parts(
    messages: Sequence[dict],
    style: str = "chatml",
    add_generation_prompt: bool = False,
    bos_token: str = "<s>",
    eos_token: str = "</s>",
) -> list[ChatPart]:
    """Like `render_pieces`, finer: each part is template text or message content, never both.

    `encode_chat` encodes content as ordinary text and looks up special tokens only in the template's text.
    >>> [tuple(p) for p in render_parts([{"role": "assistant", "content": "yo"}])]
    [('<|im_start|>assistant\\n', False, False), ('yo', True, True), ('<|im_end|>', True, False), ('\\n', False, False)]
    """
    pieces = _render(messages, style, add_generation_prompt, bos_token, eos_token)
    return [ChatPart(t, assistant, is_content) for parts, assistant in pieces for t, is_content in parts if t]


def render(
    messages: Sequence[dict],
    style: str = "chatml",
    add_generation_prompt: bool = False,
    bos_token: str = "<s>",
    eos_token: str = "</s>",
) -> str:
    """A conversation as the one string the model reads, in a template style ("chatml", "llama2", "alpaca", "smollm2").

    Equal to transformers' `apply_chat_template(messages, chat_template=TEMPLATES[style], tokenize=False, ...)`.
    >>> render([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    '<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n'
    See notebook 10.
    """
    return "".join(t for t, _ in render_pieces(messages, style, add_generation_prompt, bos_token, eos_token))


# ----------------------------------------------------------------------------- tokens and the loss mask
def add_special_tokens(tokenizer: Any, tokens: Iterable[str] = CHAT_SPECIAL_TOKENS) -> Any:
    """A copy of a `BPETokenizer` with extra special tokens, numbered after its largest id (existing ones kept).

    >>> # tok = add_special_tokens(BPETokenizer.train(text, 512)); tok.encode("<|im_end|>", allowed_special="all")
    See notebook 10.
    """
    from course_lib.tokenization import BPETokenizer

    if not isinstance(tokenizer, BPETokenizer):
        raise TypeError(f"tokenizer must be a course_lib.tokenization.BPETokenizer, got {type(tokenizer).__name__}")
    tokens = list(tokens)
    special = dict(tokenizer.special_tokens)
    nxt = tokenizer.max_token_value + 1
    for s in tokens:
        if not isinstance(s, str) or not s:
            raise ValueError(f"special tokens must be non-empty strings, got {s!r}")
        if s not in special:
            special[s] = nxt
            nxt += 1
    return BPETokenizer(dict(tokenizer.merges), special, pattern=tokenizer.pattern, byte_ids=list(tokenizer.byte_ids))


def _special_id(tokenizer: Any, token: str) -> int:
    specials = getattr(tokenizer, "special_tokens", {})
    if token not in specials:
        raise ValueError(f"the tokenizer has no special token {token!r}; add it with add_special_tokens (it has {sorted(specials)})")
    return specials[token]


def _token_nbytes(tokenizer: Any, i: int) -> int:
    if hasattr(tokenizer, "token_bytes"):
        return len(tokenizer.token_bytes(i))
    return len(tokenizer.decode([i]).encode("utf-8"))


def encode_chat(
    messages: Sequence[dict],
    tokenizer: Any,
    style: str = "chatml",
    add_generation_prompt: bool = False,
) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and a mask: 1 on the assistant's tokens (its reply and end token), else 0.

    Not forgeable: the template's control tokens (`<|im_start|>`, `<|im_end|>`, any special token of the
    tokenizer written by the template) are inserted by id, while message content is encoded as ordinary
    text, so a message containing "<|im_end|>\\n<|im_start|>assistant" stays plain characters. The text
    between two control tokens is encoded in one go, so for a conversation whose content holds no
    special-token string the ids equal `tokenizer.encode(render(...), allowed_special="all")`.
    A token belongs to the assistant when any of its bytes lies inside an assistant piece of `render_pieces`
    (in ChatML the special tokens make the boundaries exact; in Llama-2 the token " positive" straddles the
    template's space and counts). The tokenizer needs `special_tokens` (a dict) and `encode(text,
    disallowed_special=())`, like `BPETokenizer`. See notebook 10.
    """
    parts = render_parts(messages, style, add_generation_prompt)
    specials = dict(getattr(tokenizer, "special_tokens", None) or {})
    find = (
        regex.compile("|".join(regex.escape(t) for t in sorted(specials, key=len, reverse=True))).finditer
        if specials
        else None
    )
    ids: list[int] = []
    text: list[str] = []  # ordinary text since the last control token

    def flush() -> None:
        if text:
            ids.extend(tokenizer.encode("".join(text), disallowed_special=()))
            text.clear()

    for part in parts:
        pos = 0
        if find is not None and not part.content:  # control tokens only where the template writes them
            for m in find(part.text):
                text.append(part.text[pos : m.start()])
                flush()
                ids.append(specials[m.group()])
                pos = m.end()
        text.append(part.text[pos:])
    flush()

    spans, pos = [], 0  # byte spans of the assistant's parts
    for part in parts:
        n = len(part.text.encode("utf-8"))
        if part.assistant:
            if spans and spans[-1][1] == pos:  # the reply and its end token: one span
                spans[-1] = (spans[-1][0], pos + n)
            else:
                spans.append((pos, pos + n))
        pos += n
    mask, pos, k = [], 0, 0
    for i in ids:
        end = pos + _token_nbytes(tokenizer, i)
        while k < len(spans) and spans[k][1] <= pos:
            k += 1
        mask.append(int(k < len(spans) and spans[k][0] < end and pos < spans[k][1]))  # overlaps an assistant piece
        pos = end
    return ids, mask


def masked_targets(ids: Sequence[int] | torch.Tensor, mask: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs x = ids[:-1] and labels y = ids[1:], with y = -100 (ignored by the loss) where the target is not the assistant's.

    >>> masked_targets([5, 6, 7, 8], [0, 0, 1, 1])
    (tensor([5, 6, 7]), tensor([-100,    7,    8]))
    See notebook 10.
    """
    ids = torch.as_tensor(ids, dtype=torch.long)
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if ids.shape != mask.shape or ids.dim() != 1:
        raise ValueError(f"ids and mask must be 1-D and of the same length, got {tuple(ids.shape)} and {tuple(mask.shape)}")
    x, y = ids[:-1], ids[1:].clone()
    y[~mask[1:]] = -100
    return x, y


def pack_conversations(encoded: Sequence[tuple[Sequence[int], Sequence[int]]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate encoded conversations into one stream: (ids (N,), mask (N,), starts (C,) offsets of each conversation)."""
    if not encoded:
        raise ValueError("need at least one encoded conversation")
    ids, mask, starts = [], [], []
    for i, (a, m) in enumerate(encoded):
        if len(a) != len(m):
            raise ValueError(f"conversation {i}: {len(a)} ids but {len(m)} mask values")
        starts.append(len(ids))
        ids.extend(a)
        mask.extend(m)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.bool), torch.tensor(starts, dtype=torch.long)


def masked_windows(ids: torch.Tensor, mask: torch.Tensor, starts: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows of T + 1 tokens of a packed stream at `starts`, as inputs x (B, T) and labels y (B, T).

    y is x shifted by one, with -100 wherever the next token's mask is 0 (not the assistant's).
    >>> masked_windows(torch.tensor([1, 2, 3, 4]), torch.tensor([0, 0, 1, 1]).bool(), torch.tensor([0, 1]), 2)
    (tensor([[1, 2],
            [2, 3]]), tensor([[-100,    3],
            [   3,    4]]))

    See notebook 10.
    """
    idx = starts[:, None] + torch.arange(block_size + 1)  # (B, T + 1)
    w, m = ids[idx], mask[idx]
    x, y = w[:, :-1], w[:, 1:].clone()
    y[~m[:, 1:]] = -100
    return x, y


def sft_batch(
    ids: torch.Tensor,
    mask: torch.Tensor,
    starts: torch.Tensor,
    batch_size: int,
    block_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` windows of the packed stream, each starting at a conversation start: x (B, T), y (B, T).

    y is x shifted by one, with -100 wherever the next token is not the assistant's, so only the
    assistant's tokens are trained. See notebook 10.
    """
    if ids.shape != mask.shape or ids.dim() != 1:
        raise ValueError(f"ids and mask must be 1-D and of the same length, got {tuple(ids.shape)} and {tuple(mask.shape)}")
    ok = starts[starts + block_size + 1 <= len(ids)]
    if len(ok) == 0:
        raise ValueError(f"the stream has {len(ids)} tokens, need at least block_size + 1 = {block_size + 1}")
    pick = ok[torch.randint(len(ok), (batch_size,), generator=generator)]  # (B,)
    x, y = masked_windows(ids, mask, pick, block_size)
    if device is not None:
        x, y = x.to(device), y.to(device)
    return x, y


# ----------------------------------------------------------------------------- instruction data
class Example(NamedTuple):
    """One chat example: its task, the conversation (ending with the reference reply) and the reference answer."""

    task: str  # "pronounce", "sentiment" or "shakespeare"
    messages: list  # [..., {"role": "user", ...}, {"role": "assistant", "content": answer}]
    answer: str


PRONOUNCE_PROMPT = 'How is the word "{word}" pronounced?'
SENTIMENT_PROMPT = "Is this review positive or negative?\n{text}"
SHAKESPEARE_PROMPT = "Continue in Shakespeare's voice:\n{line}"
TASKS = ("pronounce", "sentiment", "shakespeare")


def _conv(task: str, prompt: str, answer: str, system: str | None = None) -> Example:
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": answer},
    ]
    return Example(task, msgs, answer)


def pronunciation_example(word: str, phonemes: Sequence[str], system: str | None = None) -> Example:
    """'How is the word "cat" pronounced?' -> 'K AE1 T' (ARPAbet with stress digits)."""
    return _conv("pronounce", PRONOUNCE_PROMPT.format(word=word), " ".join(phonemes), system)


def sentiment_example(text: str, label: int, system: str | None = None) -> Example:
    """'Is this review positive or negative?\\n<review>' -> 'positive' (label 1) or 'negative' (label 0)."""
    return _conv("sentiment", SENTIMENT_PROMPT.format(text=text), "positive" if label == 1 else "negative", system)


def shakespeare_example(line: str, next_line: str, system: str | None = None) -> Example:
    """"Continue in Shakespeare's voice:\\n<line>" -> the next line of the play."""
    return _conv("shakespeare", SHAKESPEARE_PROMPT.format(line=line), next_line, system)


def _verse_pairs(text: str, max_chars: int) -> list[tuple[str, str]]:
    """Consecutive lines of one speech (no speaker names, no blank lines between), both short enough."""
    pairs = []
    for speech in text.split("\n\n"):
        lines = [l.strip() for l in speech.split("\n")[1:] if l.strip()]  # drop "NAME:"
        for a, b in zip(lines, lines[1:]):
            if 10 <= len(a) <= max_chars and 10 <= len(b) <= max_chars:
                pairs.append((a, b))
    return pairs


def build_instruction_data(
    split: str = "train",
    n_per_task: int = 1000,
    seed: int = 0,
    max_word_len: int = 8,
    max_review_chars: int = 90,
    max_line_chars: int = 50,
    system_prompt: str = "You are a helpful assistant.",
    p_system: float = 0.0,
) -> list[Example]:
    """Chat examples from the course's data: pronunciations (CMU dict), sentiment (Rotten Tomatoes), Shakespeare.

    split "train" or "test" (held out: the test splits of CMU dict and Rotten Tomatoes, Shakespeare's
    validation plays). Shortish words, reviews and lines keep the sequences short. With `p_system`, that
    share of examples starts with `system_prompt`. Shuffled with `seed`. See notebook 10.
    """
    from course_lib.data import load_cmudict, load_rotten_tomatoes, load_shakespeare

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not isinstance(n_per_task, int) or n_per_task < 1:
        raise ValueError(f"n_per_task must be an int >= 1, got {n_per_task!r}")
    rng = random.Random(f"{seed}-{split}")
    words = [(w, p) for w, p in load_cmudict(split) if w.isalpha() and 2 <= len(w) <= max_word_len]
    reviews = [r for r in load_rotten_tomatoes(split) if len(r.text) <= max_review_chars]
    verse = _verse_pairs(load_shakespeare("train" if split == "train" else "val"), max_line_chars)
    out: list[Example] = []
    for pool, make in ((words, pronunciation_example), (reviews, sentiment_example), (verse, shakespeare_example)):
        for item in rng.sample(pool, min(n_per_task, len(pool))):
            system = system_prompt if rng.random() < p_system else None
            out.append(make(*item, system=system))
    rng.shuffle(out)
    return out


def pretraining_text(n_chars: int = 200_000, seed: int = 0) -> str:
    """Plain text for a base model, from the same training sources: Shakespeare, reviews, dictionary lines.

    Roughly a third each; no chat format and no special tokens. See notebook 10.
    """
    from course_lib.data import load_cmudict, load_rotten_tomatoes, load_shakespeare

    rng = random.Random(seed)
    third = n_chars // 3
    shakespeare = load_shakespeare("train")
    start = rng.randrange(0, max(1, len(shakespeare) - third))
    parts = [shakespeare[start : start + third]]
    reviews = load_rotten_tomatoes("train")
    lines, size = [], 0
    while size < third:
        r = reviews[rng.randrange(len(reviews))].text
        lines.append(r)
        size += len(r) + 1
    parts.append("\n".join(lines))
    words = load_cmudict("train")
    lines, size = [], 0
    while size < third:
        w, p = words[rng.randrange(len(words))]
        lines.append(f"{w}: {' '.join(p)}")
        size += len(lines[-1]) + 1
    parts.append("\n".join(lines))
    return "\n\n".join(parts)


def heldout_text(n_chars: int = 30_000, seed: int = 0) -> str:
    """Plain text like `pretraining_text`, but from held-out data, for a base model's validation loss.

    Shakespeare's validation plays, Rotten Tomatoes' validation split and CMU dictionary validation words
    (none of them in `pretraining_text` or in `build_instruction_data`'s test prompts but the plays),
    roughly a third each. See notebook 10.
    """
    from course_lib.data import load_cmudict, load_rotten_tomatoes, load_shakespeare

    if not isinstance(n_chars, int) or n_chars < 300:
        raise ValueError(f"n_chars must be an int >= 300, got {n_chars!r}")
    rng = random.Random(f"heldout-{seed}")
    third = n_chars // 3
    shakespeare = load_shakespeare("val")
    start = rng.randrange(0, max(1, len(shakespeare) - third))
    parts = [shakespeare[start : start + third]]
    for rows, line_of in ((load_rotten_tomatoes("validation"), lambda r: r.text),
                          (load_cmudict("validation"), lambda wp: f"{wp[0]}: {' '.join(wp[1])}")):
        lines, size = [], 0
        while size < third:
            lines.append(line_of(rows[rng.randrange(len(rows))]))
            size += len(lines[-1]) + 1
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- few-shot prompts for a base model
def few_shot_prompt(question: str, shots: Sequence[tuple[str, str]] = ()) -> str:
    """A plain-text prompt: solved examples as Question/Answer pairs, then the question and an open "Answer:".

    >>> few_shot_prompt("2+2?", [("1+1?", "2")])
    'Question: 1+1?\\nAnswer: 2\\n\\nQuestion: 2+2?\\nAnswer:'
    A base model answers by continuing the pattern; the answer is the text up to the next newline. See notebook 10.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question must be a non-empty str, got {question!r}")
    solved = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in shots)
    return f"{solved}Question: {question}\nAnswer:"


@torch.no_grad()
def complete_lines(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int = 24,
                   batch_size: int = 64) -> list[tuple[str, bool]]:
    """Greedy continuation of each plain-text prompt up to its first newline -> [(text stripped, reached the newline)].

    Prompts of equal token length are batched together (no padding), as in `generate_replies`. See notebook 10.
    """
    from course_lib.generation import generate

    device = next(model.parameters()).device
    encoded = [tokenizer.encode_ordinary(p) for p in prompts]
    limit = int(model.config.block_size)
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        if len(ids) + max_new_tokens > limit:
            raise ValueError(f"prompt {i} has {len(ids)} tokens; with {max_new_tokens} new ones that is more than "
                             f"the model's context of {limit}")
        groups.setdefault(len(ids), []).append(i)
    out: list[tuple[str, bool]] = [("", False)] * len(prompts)
    for length, members in sorted(groups.items()):
        for s in range(0, len(members), batch_size):
            chunk = members[s : s + batch_size]
            idx = torch.tensor([encoded[i] for i in chunk], dtype=torch.long, device=device)  # (B, T)
            new = generate(model, idx, max_new_tokens, greedy=True)[:, length:]  # (B, max_new_tokens)
            for row, i in zip(new.tolist(), chunk):
                text = tokenizer.decode(row)
                out[i] = (text.split("\n", 1)[0].strip(), "\n" in text)
    return out


def evaluate_few_shot(model: torch.nn.Module, tokenizer: Any, examples: Sequence[Example], shot_pool: Sequence[Example],
                      k: int = 2, seed: int = 0, max_new_tokens: int = 24, batch_size: int = 64) -> dict:
    """Few-shot prompting of a (base) model on held-out examples, scored like `evaluate_chat`.

    Each question gets `k` solved examples of the same task drawn (seeded) from `shot_pool`, written with
    `few_shot_prompt`; the reply is the greedy continuation up to the first newline. "format_adherence" is the
    share of replies that are non-empty and end with a newline within `max_new_tokens`.
    -> {"format_adherence", "<task>/<metric>" means, "n", "records"}. See notebook 10.
    """
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an int >= 0, got {k!r}")
    by_task: dict[str, list[Example]] = {}
    for e in shot_pool:
        by_task.setdefault(e.task, []).append(e)
    rng = random.Random(f"shots-{seed}")
    prompts = []
    for e in examples:
        pool = by_task.get(e.task, [])
        if len(pool) < k:
            raise ValueError(f"the shot pool has {len(pool)} examples of task {e.task!r}, need k = {k}")
        shots = [(s.messages[-2]["content"], s.answer) for s in rng.sample(pool, k)]
        prompts.append(few_shot_prompt(e.messages[-2]["content"], shots))
    replies = complete_lines(model, tokenizer, prompts, max_new_tokens, batch_size)
    return _scored([(e, prompt, text, closed and text != "") for e, prompt, (text, closed) in zip(examples, prompts, replies)])


def _scored(items: list[tuple[Any, str, str, bool]]) -> dict:
    """(example, prompt, reply text, well formed) per item -> mean format adherence and task scores, n, records."""
    records, sums, counts = [], {}, {}
    for e, prompt, text, ok in items:
        scores = score_reply(e.task, text, e.answer)
        records.append({"task": e.task, "prompt": prompt, "answer": e.answer, "reply": text, "well_formed": ok, **scores})
        for key, v in [("format_adherence", float(ok))] + [(f"{e.task}/{m}", v) for m, v in scores.items()]:
            sums[key] = sums.get(key, 0.0) + v
            counts[key] = counts.get(key, 0) + 1
    result: dict = {key: sums[key] / counts[key] for key in sorted(sums)}
    result["n"] = len(items)
    result["records"] = records
    return result


# ----------------------------------------------------------------------------- replies and evaluation
def _check_chatml_style(style: str) -> None:
    if style not in CHATML_STYLES:
        raise ValueError(f"style must be one of {CHATML_STYLES} (turns that end with {IM_END}), got {style!r}")


def _prompt_ids(messages: Sequence[dict], tokenizer: Any, style: str = "chatml") -> list[int]:
    """Ids of the conversation up to the assistant's turn (a trailing assistant message is dropped).

    Encoded with `encode_chat`, so what the user typed cannot forge control tokens.
    """
    msgs = list(messages)
    if msgs and msgs[-1]["role"] == "assistant":
        msgs = msgs[:-1]
    return encode_chat(msgs, tokenizer, style, add_generation_prompt=True)[0]


@torch.no_grad()
def generate_replies(
    model: torch.nn.Module,
    tokenizer: Any,
    conversations: Sequence[Sequence[dict]],
    max_new_tokens: int = 32,
    greedy: bool = True,
    temperature: float = 1.0,
    top_k: int | None = None,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
    style: str = "chatml",
) -> list[list[int]]:
    """The model's reply ids to each conversation (ChatML, generation prompt added), stopping after `<|im_end|>`.

    Prompts of equal length are batched together (no padding needed, so results equal one-by-one decoding).
    A trailing assistant message (the reference answer) is dropped first. `style` is "chatml" or
    "smollm2" (ChatML with SmolLM2's default system prompt). See notebook 10.
    """
    from course_lib.generation import generate

    _check_chatml_style(style)
    eos = _special_id(tokenizer, IM_END)
    device = next(model.parameters()).device
    prompts = [_prompt_ids(c, tokenizer, style) for c in conversations]
    limit = int(model.config.block_size)
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        if len(p) > limit:
            raise ValueError(f"conversation {i} has {len(p)} prompt tokens, more than the model's context of {limit}")
        groups.setdefault(len(p), []).append(i)
    replies: list[list[int]] = [[] for _ in prompts]
    for length, members in sorted(groups.items()):
        for s in range(0, len(members), batch_size):
            chunk = members[s : s + batch_size]
            idx = torch.tensor([prompts[i] for i in chunk], dtype=torch.long, device=device)  # (B, T)
            out = generate(model, idx, max_new_tokens, temperature=temperature, top_k=top_k, greedy=greedy,
                           generator=generator, eos_id=eos)
            for row, i in zip(out[:, length:].tolist(), chunk):
                if eos in row:
                    row = row[: row.index(eos) + 1]
                replies[i] = row
    return replies


def reply_text(reply_ids: Sequence[int], tokenizer: Any) -> str:
    """The reply's text: ids up to the first special token, decoded and stripped."""
    specials = set(getattr(tokenizer, "special_tokens", {}).values())
    keep = []
    for i in reply_ids:
        if i in specials:
            break
        keep.append(i)
    return tokenizer.decode(keep).strip()


def is_well_formed(reply_ids: Sequence[int], tokenizer: Any) -> bool:
    """Format adherence of one reply: non-empty, ends with `<|im_end|>`, and no special token or invented turn before it.

    See notebook 10.
    """
    eos = _special_id(tokenizer, IM_END)
    ids = list(reply_ids)
    if len(ids) < 2 or ids[-1] != eos:
        return False
    specials = set(getattr(tokenizer, "special_tokens", {}).values())
    body = ids[:-1]
    if any(i in specials for i in body):
        return False
    text = tokenizer.decode(body)
    return IM_START not in text and IM_END not in text and text.strip() != ""


def score_reply(task: str, reply: str, answer: str) -> dict[str, float]:
    """Task scores of one reply text: sentiment -> {"accuracy"}; pronounce -> {"accuracy" (exact), "first_phoneme"}; shakespeare -> {}."""
    if task == "sentiment":
        return {"accuracy": float(reply.strip().lower() == answer)}
    if task == "pronounce":
        got, ref = reply.split(), answer.split()
        return {"accuracy": float(got == ref), "first_phoneme": float(bool(got) and got[0] == ref[0])}
    if task == "shakespeare":
        return {}
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def evaluate_chat(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    max_new_tokens: int = 32,
    batch_size: int = 64,
) -> dict:
    """Greedy replies to held-out examples -> {"format_adherence", "<task>/<metric>" means, "n", "records"}.

    See notebook 10.
    """
    replies = generate_replies(model, tokenizer, [e.messages for e in examples], max_new_tokens, batch_size=batch_size)
    return _scored([(e, e.messages[-2]["content"], reply_text(r, tokenizer), is_well_formed(r, tokenizer))
                    for e, r in zip(examples, replies)])


# ----------------------------------------------------------------------------- a chat session and the widget
class ChatSession:
    """A conversation with a model: `send(text)` appends the user turn, generates and appends the reply.

    `last_prompt_ids` holds the exact token ids the model received for the last reply; `style` is "chatml"
    or "smollm2". See notebook 10.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, system: str | None = None,
                 max_new_tokens: int = 48, greedy: bool = True, temperature: float = 1.0, seed: int = 0,
                 style: str = "chatml") -> None:
        _check_chatml_style(style)
        _special_id(tokenizer, IM_END)
        self.model, self.tokenizer, self.style = model, tokenizer, style
        self.system, self.max_new_tokens, self.greedy, self.temperature = system, max_new_tokens, greedy, temperature
        self.generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
        self.reset()

    def reset(self) -> None:
        """Start over (keeping the system message)."""
        self.messages: list[dict] = [{"role": "system", "content": self.system}] if self.system else []
        self.last_prompt_ids: list[int] = []
        self.last_reply_ids: list[int] = []

    def send(self, text: str) -> str:
        """Add a user message, generate the reply (it is added to the conversation) and return its text."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text must be a non-empty str, got {text!r}")
        self.messages.append({"role": "user", "content": text})
        self.last_prompt_ids = _prompt_ids(self.messages, self.tokenizer, self.style)
        room = int(self.model.config.block_size) - len(self.last_prompt_ids)
        if room < 1:
            self.messages.pop()
            raise ValueError(f"the conversation has {len(self.last_prompt_ids)} tokens, the model's context is "
                             f"{self.model.config.block_size}: press Reset to start over")
        (self.last_reply_ids,) = generate_replies(
            self.model, self.tokenizer, [self.messages], min(self.max_new_tokens, room),
            greedy=self.greedy, temperature=self.temperature, generator=self.generator, style=self.style,
        )
        reply = reply_text(self.last_reply_ids, self.tokenizer)
        self.messages.append({"role": "assistant", "content": reply})
        return reply


def token_stream_html(ids: Sequence[int], tokenizer: Any, mask: Sequence[int] | None = None, show_ids: bool = False) -> str:
    """HTML of a token stream: one box per token, special tokens dark, tokens with mask 1 (the model's reply) green.

    See notebook 10.
    """
    specials = set(getattr(tokenizer, "special_tokens", {}).values())
    boxes = []
    for k, i in enumerate(ids):
        piece = tokenizer.decode([i])
        if i in specials:
            style = "background:#333;color:#fff;font-weight:bold"
        elif mask is not None and mask[k]:
            style = "background:#c8f0c8"
        else:
            style = "background:#e8e8f4"
        label = html.escape(piece).replace("\n", "↵<br>").replace(" ", "␣")
        sub = f"<sub style='color:#888'>{i}</sub>" if show_ids else ""
        boxes.append(f"<span style='{style};margin:1px;padding:1px 3px;border-radius:3px;"
                     f"font-family:monospace;display:inline-block'>{label}{sub}</span>")
    return "<div style='line-height:1.9'>" + "".join(boxes) + "</div>"


def chat_widget(model: torch.nn.Module, tokenizer: Any, system: str | None = None, max_new_tokens: int = 48,
                greedy: bool = True, temperature: float = 1.0):
    """A chat box with the model, and below it the exact token stream the model receives (its reply in green).

    Returns an ipywidgets VBox; its `.session` is the `ChatSession`. See notebook 10.
    """
    import ipywidgets as W

    session = ChatSession(model, tokenizer, system, max_new_tokens, greedy, temperature)
    box = W.Text(placeholder='e.g. How is the word "table" pronounced?', description="You:",
                 layout=W.Layout(width="70%"))
    send, reset = W.Button(description="Send", button_style="primary"), W.Button(description="Reset")
    show_ids = W.Checkbox(value=False, description="show token ids")
    talk = W.HTML(label="conversation")
    stream = W.HTML(label="token stream")

    def redraw() -> None:
        rows = [f"<b>{html.escape(m['role'])}:</b> {html.escape(m['content'])}" for m in session.messages]
        talk.value = "<div>" + "<br>".join(rows) + "</div>" if rows else "<i>Say something.</i>"
        if session.last_prompt_ids:
            ids = session.last_prompt_ids + session.last_reply_ids
            mask = [0] * len(session.last_prompt_ids) + [1] * len(session.last_reply_ids)
            stream.value = (f"<b>Token stream</b> ({len(session.last_prompt_ids)} prompt tokens + "
                            f"{len(session.last_reply_ids)} generated, in green):"
                            + token_stream_html(ids, tokenizer, mask, show_ids.value))
        else:
            stream.value = "<i>The token stream appears here after the first message.</i>"

    def on_send(_: Any = None) -> None:
        if box.value.strip():
            try:
                session.send(box.value)
            except ValueError as exc:
                talk.value += f"<br><span style='color:#b00'>{html.escape(str(exc))}</span>"
                return
            box.value = ""
            redraw()

    def on_reset(_: Any = None) -> None:
        session.reset()
        redraw()

    send.on_click(on_send)
    reset.on_click(on_reset)
    show_ids.observe(lambda _: redraw(), names="value")
    redraw()
    ui = W.VBox([W.HBox([box, send, reset, show_ids]), talk, stream])
    ui.session, ui.text, ui.send_button, ui.reset_button = session, box, send, reset
    ui.conversation, ui.stream, ui.redraw = talk, stream, redraw
    return ui
