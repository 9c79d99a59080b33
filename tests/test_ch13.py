"""Notebook 13's exercise checkers (right answers pass, classic mistakes are caught) and the chat widget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.chat import add_special_tokens
from course_lib.chat_widget import llm_chat_widget, transcript, transcript_html
from course_lib.exercises import ExerciseError, ch13
from course_lib.llama import Llama, LlamaConfig
from course_lib.tokenization import BPETokenizer


# ----------------------------------------------------------------------------- checkers
def test_repeat_kv_checker():
    assert ch13.check_repeat_kv(lambda x, n: x.repeat_interleave(n, dim=1)) is True
    with pytest.raises(ExerciseError):  # [k0, k1, k0, k1]: the wrong order
        ch13.check_repeat_kv(lambda x, n: x.repeat(1, n, 1, 1))


def test_q4_1_checker_accepts_float64_arithmetic_and_a_list():
    def decode(block):
        b = np.frombuffer(block, dtype=np.uint8)
        d, m = (float(v) for v in b[:4].view("<f2"))
        q = np.concatenate([b[4:] & 15, b[4:] >> 4]).astype(np.float64)
        return (d * q + m).tolist()

    assert ch13.check_dequantize_q4_1_block(decode) is True
    with pytest.raises(ExerciseError):  # nibbles interleaved (low, high, low, high, ...): a classic slip

        def interleaved(block):
            b = np.frombuffer(block, dtype=np.uint8)
            d, m = b[:4].view("<f2").astype(np.float32)
            q = np.stack([b[4:] & 15, b[4:] >> 4], axis=1).reshape(-1)
            return d * q + m

        ch13.check_dequantize_q4_1_block(interleaved)


def test_rotary_checker_accepts_float64_angles_and_rejects_interleaved_pairs():
    def rotate(q, positions, base, interleaved=False):
        hd = q.shape[-1]
        inv = base ** (-np.arange(0, hd, 2) / hd)
        ang = torch.tensor(positions.numpy()[:, None] * inv[None, :])  # float64
        cos, sin = ang.cos(), ang.sin()
        qd = q.double()
        a, b = (qd[:, 0::2], qd[:, 1::2]) if interleaved else (qd[:, : hd // 2], qd[:, hd // 2 :])
        ra, rb = a * cos - b * sin, a * sin + b * cos
        out = torch.stack([ra, rb], -1).flatten(-2) if interleaved else torch.cat([ra, rb], -1)
        return out.float()

    assert ch13.check_rotary_half(rotate) is True
    with pytest.raises(ExerciseError):
        ch13.check_rotary_half(lambda q, p, b: rotate(q, p, b, interleaved=True))


def test_hints_come_in_tiers(capsys):
    first, both = ch13.hint(2, level=1), ch13.hint(2)
    assert first in both and len(both) > len(first)
    with pytest.raises(ValueError):
        ch13.hint(9)


# ----------------------------------------------------------------------------- widget
class _EchoConversation:
    """A stand-in with Conversation's interface: replies with the user's text reversed, in two pieces."""

    def __init__(self):
        self.greedy, self.max_new_tokens = True, 8
        self.reset()

    def reset(self):
        self.messages = []

    def stream(self, text):
        if text == "too long":
            raise ValueError("the conversation is 9 tokens long, the model's context is 8")
        self.messages = self.messages + [{"role": "user", "content": text}]
        reply = text[::-1]
        yield reply[:2]
        yield reply[2:]
        self.messages.append({"role": "assistant", "content": reply})


def test_transcripts():
    msgs = [{"role": "user", "content": "<b>Hi</b>"}, {"role": "assistant", "content": "Hello"}]
    assert transcript(msgs) == "user> <b>Hi</b>\nassistant> Hello"
    assert "&lt;b&gt;Hi&lt;/b&gt;" in transcript_html(msgs)  # escaped
    assert "Say something" in transcript_html([])
    with pytest.raises(ValueError):
        transcript([{"role": "user"}])
    with pytest.raises(TypeError):
        transcript("user> hi")


def test_widget_click_streams_a_reply_and_reset_clears_it():
    pytest.importorskip("ipywidgets")
    conv = _EchoConversation()
    ui = llm_chat_widget(conv)
    ui.text.value = "abcdef"
    ui.send_button.click()
    assert conv.messages[-1] == {"role": "assistant", "content": "fedcba"}
    assert "fedcba" in ui.view.value and "abcdef" in ui.view.value
    assert ui.text.value == "" and not ui.send_button.disabled and "reply written" in ui.status.value
    ui.text.value = "   "
    ui.send_button.click()  # empty: nothing happens
    assert len(conv.messages) == 2
    ui.text.value = "too long"
    ui.send_button.click()  # the error is shown, not raised
    assert "error" in ui.status.value and not ui.send_button.disabled
    ui.reset_button.click()
    assert conv.messages == [] and "Say something" in ui.view.value
    with pytest.raises(TypeError):
        llm_chat_widget(object())


def test_widget_with_a_real_conversation_on_a_tiny_llama(one_thread):
    pytest.importorskip("ipywidgets")
    from course_lib.assistant import Conversation

    tok = add_special_tokens(BPETokenizer({}, {}))  # bytes 0..255, then <|endoftext|>, <|im_start|>, <|im_end|>
    torch.manual_seed(0)
    model = Llama(LlamaConfig.preset("tiny", vocab_size=tok.vocab_size, block_size=256)).eval()
    conv = Conversation(model, tok, style="chatml", greedy=True, max_new_tokens=6)
    ui = llm_chat_widget(conv)
    assert "greedy" in ui.children[0].value
    ui.text.value = "hi"
    ui.send_button.click()
    assert [m["role"] for m in conv.messages] == ["user", "assistant"]
    assert len(conv.last_prompt_ids) == len(tok.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
                                                      allowed_special="all"))
    assert "reply written" in ui.status.value


def test_stored_bytes_checker_passes_the_block_count_and_fails_the_slips(capsys):
    blocks = {"F32": (1, 4), "F16": (1, 2), "Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20)}

    def right(shape, qtype):
        size, nbytes = blocks[qtype]
        rows = 1 if len(shape) == 1 else shape[0]
        return rows * (shape[-1] // size) * nbytes

    assert ch13.check_stored_bytes(right) is True
    with pytest.raises(ExerciseError):  # half a byte per weight: forgets the scale (and minimum) of each block
        ch13.check_stored_bytes(lambda shape, q: right(shape, q) if q in ("F32", "F16") else int(np.prod(shape)) // 2 if q != "Q8_0" else int(np.prod(shape)))
    with pytest.raises(ExerciseError):  # Q4_1 counted like Q4_0: forgets the minimum
        ch13.check_stored_bytes(lambda shape, q: right(shape, "Q4_0" if q == "Q4_1" else q))
    capsys.readouterr()

    def untouched(shape, qtype):
        raise NotImplementedError

    assert ch13.check_stored_bytes(untouched) is None
    out = capsys.readouterr().out
    assert "blocks" in out and "Q8_0 block is" not in out  # only the first tier
