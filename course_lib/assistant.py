"""Talking to a real chat model: a conversation that streams its replies, and `python -m course_lib chat`.

What is here:
- `load_smollm2()`: SmolLM2-135M-Instruct and its tokenizer, both read from the GGUF file by the course's
  own code (`course_lib.llama`, `course_lib.tokenization`); about 2 s on a laptop CPU.
- `Conversation`: the history of a chat, rendered with the model's chat template (ChatML with SmolLM2's
  default system prompt), and `stream(text)`, which yields the reply piece by piece while the model
  writes it. Message text is encoded as ordinary text, so a user cannot forge the template's control
  tokens (see `course_lib.chat.encode_chat`).
- `main()`: the terminal chat (`/reset` starts over, `/quit` or Ctrl-D leaves).

Leaves out: tool calls, trimming old turns when the context fills (it says so instead). See notebook 13.
"""

from __future__ import annotations

import argparse
import codecs
import sys
from typing import Any, Iterator, Sequence, TextIO

import torch

__all__ = ["load_smollm2", "Conversation", "main"]


def load_smollm2(quantized: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) of SmolLM2-135M-Instruct from its GGUF file, the model in eval mode.

    >>> # model, tok = load_smollm2(); Conversation(model, tok).send("Hi!")
    See notebook 13.
    """
    from course_lib.data import smollm2_gguf_path
    from course_lib.gguf import GGUFFile
    from course_lib.llama import Llama
    from course_lib.tokenization import BPETokenizer

    path = smollm2_gguf_path()
    tokenizer = BPETokenizer.from_gguf_metadata(GGUFFile(path).metadata)
    return Llama.from_gguf(path, quantized=quantized), tokenizer


class Conversation:
    """A chat with a model in a template style ("smollm2" by default): `send` or `stream` a user message.

    Sampling: greedy, or temperature and top-p with a seeded generator (the same seed gives the same replies).
    `last_prompt_ids` are the exact token ids the model read for the last reply. See notebook 13.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, system: str | None = None, style: str = "smollm2",
                 max_new_tokens: int = 256, temperature: float = 0.7, top_p: float | None = 0.9,
                 greedy: bool = False, seed: int = 0) -> None:
        from course_lib.chat import IM_END, TEMPLATES
        from course_lib.generation import check_sampling_args

        if style not in TEMPLATES:
            raise ValueError(f"style must be one of {sorted(TEMPLATES)}, got {style!r}")
        check_sampling_args(temperature, None, top_p)
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        self.model, self.tokenizer, self.system, self.style = model, tokenizer, system, style
        self.max_new_tokens, self.temperature, self.top_p, self.greedy, self.seed = max_new_tokens, temperature, top_p, greedy, seed
        self.stop_ids = {tokenizer.special_tokens[t] for t in (IM_END, "<|endoftext|>") if t in tokenizer.special_tokens}
        self.reset()

    def reset(self) -> None:
        """Forget the conversation (the system message stays) and restart the random numbers."""
        self.messages: list[dict] = [{"role": "system", "content": self.system}] if self.system else []
        self.generator = torch.Generator().manual_seed(self.seed)
        self.last_prompt_ids: list[int] = []

    def prompt_ids(self, messages: Sequence[dict] | None = None) -> list[int]:
        """The token ids of the conversation with an open assistant turn (what the model reads)."""
        from course_lib.chat import encode_chat

        ids, _ = encode_chat(list(self.messages if messages is None else messages), self.tokenizer, style=self.style,
                             add_generation_prompt=True)
        return ids

    def stream(self, text: str) -> Iterator[str]:
        """Add the user's `text`, then yield the reply's text as it is written; the reply joins the history at the end."""
        from course_lib.generation import stream

        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text must be a non-empty str, got {text!r}")
        messages = self.messages + [{"role": "user", "content": text}]
        ids = self.prompt_ids(messages)
        block = int(self.model.config.block_size)
        if len(ids) >= block:
            raise ValueError(f"the conversation is {len(ids)} tokens long, the model's context is {block}: /reset to start over")
        self.messages, self.last_prompt_ids = messages, ids
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span several tokens
        reply: list[str] = []
        prompt = torch.tensor([ids], device=next(self.model.parameters()).device)
        for t in stream(self.model, prompt, min(self.max_new_tokens, block - len(ids)), temperature=self.temperature,
                        top_p=None if self.greedy else self.top_p, greedy=self.greedy, generator=self.generator):
            i = int(t[0])
            if i in self.stop_ids:
                break
            piece = decoder.decode(self.tokenizer.decode_bytes([i]))
            if piece:
                reply.append(piece)
                yield piece
        tail = decoder.decode(b"", final=True)
        if tail:
            reply.append(tail)
            yield tail
        self.messages.append({"role": "assistant", "content": "".join(reply).strip()})

    def send(self, text: str) -> str:
        """Add the user's `text` and return the whole reply."""
        return "".join(self.stream(text)).strip()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m course_lib chat", description="Chat with SmolLM2-135M-Instruct in the terminal.")
    p.add_argument("--system", default=None, help="a system prompt (default: the model's own)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest reply, in tokens (default 256)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass (default 0.9)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quantized", action="store_true", help="keep the weights 4-/8-bit (less memory, slower)")
    return p


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """The terminal chat: type a message, read the streamed reply; /reset starts over; /quit or Ctrl-D leaves."""
    args = _parser().parse_args(argv)
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    try:
        model, tok = load_smollm2(quantized=args.quantized)
        chat = Conversation(model, tok, system=args.system, max_new_tokens=args.max_new_tokens,
                            temperature=args.temperature, top_p=args.top_p, greedy=args.greedy, seed=args.seed)
    except (ImportError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("SmolLM2-135M-Instruct. /reset starts over, /quit or Ctrl-D leaves.", file=stdout, flush=True)
    while True:
        print("you> ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:  # Ctrl-D
            print(file=stdout, flush=True)
            return 0
        text = line.strip()
        if not text:
            continue
        if text == "/quit":
            return 0
        if text == "/reset":
            chat.reset()
            print("(conversation cleared)", file=stdout, flush=True)
            continue
        print("assistant> ", end="", file=stdout, flush=True)
        try:
            for piece in chat.stream(text):
                print(piece, end="", file=stdout, flush=True)
        except ValueError as exc:
            print(f"\n(error: {exc})", file=stdout, flush=True)
            continue
        print(file=stdout, flush=True)
