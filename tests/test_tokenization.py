"""Tests for course_lib.tokenization: the course's tokenizers against tiktoken and Hugging Face's BERT tokenizer."""

from __future__ import annotations

import json
import os
import unicodedata
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course_lib import data
from course_lib.tokenization import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    BPETokenizer,
    CharTokenizer,
    WordPieceTokenizer,
    WordTokenizer,
    bpe_from_tiktoken,
    get_stats,
    merge,
    minilm_wordpiece,
    bytes_to_unicode,
    recover_merges,
    render_token,
    unicode_to_bytes,
)

CASES: dict[str, str] = json.loads((Path(__file__).parent / "data" / "multilingual.json").read_text(encoding="utf-8"))["cases"]
CASE_IDS = sorted(CASES)
HYPOTHESIS = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def cl100k() -> BPETokenizer:
    return bpe_from_tiktoken("cl100k_base")


@pytest.fixture(scope="module")
def o200k() -> BPETokenizer:
    return bpe_from_tiktoken("o200k_base")


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return data.load_shakespeare()


@pytest.fixture(scope="module")
def trained(shakespeare) -> BPETokenizer:
    return BPETokenizer.train(shakespeare[:200_000], vocab_size=256 + 300 + 1, special_tokens=["<|endoftext|>"])


@pytest.fixture(scope="module")
def hf_bert():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(data.minilm_path()))
    assert tok.is_fast
    return tok


def hf_ids(tok, text: str) -> list[int]:
    return tok(text, truncation=False, padding=False)["input_ids"]


# --------------------------------------------------------------------------------------------
# the naive tokenizers


def test_char_tokenizer_roundtrip_and_unknown():
    tok = CharTokenizer.train("hello world")
    assert tok.vocab_size == len(set("hello world")) + 1
    assert tok.decode(tok.encode("hello")) == "hello"
    assert tok.encode("z") == [tok.unk_id]
    assert tok.decode(tok.encode("hez")) == "he<unk>"
    with pytest.raises(TypeError, match="str"):
        tok.encode(["h"])
    with pytest.raises(ValueError, match="unknown token id"):
        tok.decode([999])


def test_word_tokenizer_vocab_and_unknown():
    tok = WordTokenizer.train("the cat sat. the cat ran!", vocab_size=4)
    assert tok.itos == ["<unk>", "cat", "the", "!"]  # by count, then alphabetically
    assert tok.decode(tok.encode("the dog sat")) == "the <unk> <unk>"
    assert WordTokenizer.split("Don't stop, Bob.") == ["Don't", "stop", ",", "Bob", "."]
    with pytest.raises(ValueError, match="vocab_size"):
        WordTokenizer.train("a b", vocab_size=0)
    with pytest.raises(TypeError):
        tok.encode(3)
    with pytest.raises(ValueError, match="unknown token id"):
        tok.decode([-1])


# --------------------------------------------------------------------------------------------
# BPE building blocks and training


def test_get_stats_and_merge_examples():
    assert get_stats([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([7, 7, 7], (7, 7), 8) == [8, 7]  # left to right, non-overlapping


def naive_train(text: str, num_merges: int, pattern: str | None) -> dict[tuple[int, int], int]:
    """Reference trainer: recount every pair after every merge; same tie rule (count, then smallest pair)."""
    import regex

    chunks = regex.findall(pattern, text) if pattern else [text]
    words = [list(c.encode("utf-8")) for c in chunks]
    merges = {}
    for step in range(num_merges):
        stats: dict = {}
        for w in words:
            get_stats(w, stats)
        if not stats:
            break
        pair = min(stats, key=lambda p: (-stats[p], p))
        merges[pair] = 256 + step
        words = [merge(w, pair, 256 + step) for w in words]
    return merges


@pytest.mark.parametrize("pattern", [None, GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN])
def test_incremental_training_equals_recounting(shakespeare, pattern):
    text = shakespeare[:8_000] + " 自然语言处理是人工智能的一个重要分支 🍕🍕 aaaa aaaa"
    fast = BPETokenizer.train(text, vocab_size=256 + 60, pattern=pattern)
    assert fast.merges == naive_train(text, 60, pattern)


def test_train_toy_example_and_tie_rule():
    tok = BPETokenizer.train("aaabdaaabac", vocab_size=259, pattern=None)
    # (256, 97) and (97, 98) both occur twice after the first merge: the smaller pair (97, 98) wins
    assert tok.merges == {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    steps = []
    BPETokenizer.train("aaabdaaabac", vocab_size=258, pattern=None, callback=lambda *a: steps.append(a))
    assert steps == [(0, (97, 97), 256, 4), (1, (97, 98), 257, 2)]


def test_train_special_tokens_and_vocab_size(trained, shakespeare):
    assert trained.vocab_size == 256 + 300 + 1
    assert trained.special_tokens == {"<|endoftext|>": 556}
    text = "To be, or not to be<|endoftext|>that is the question"
    ids = trained.encode(text, allowed_special="all")
    assert 556 in ids and trained.decode(ids) == text
    # special tokens in the training text are cut out, never merged across
    tok = BPETokenizer.train("ab<|x|>ab<|x|>ab", vocab_size=258, special_tokens=["<|x|>"], pattern=None)
    assert all(tok.vocab[i] in (b"ab",) for i in tok.merges.values())
    # compression: the trained tokenizer beats raw bytes on unseen Shakespeare
    val = shakespeare[-50_000:]
    assert len(trained.encode(val)) < 0.6 * len(val.encode("utf-8"))


def test_train_bad_input():
    with pytest.raises(ValueError, match=r"at least 256 .* \+ 2 special tokens = 258, got 257"):
        BPETokenizer.train("hello", vocab_size=257, special_tokens=["<a>", "<b>"])
    with pytest.raises(ValueError, match="at least 256"):
        BPETokenizer.train("hello", vocab_size=100)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        BPETokenizer.train("hello", vocab_size=300.0)
    with pytest.raises(TypeError, match="text must be a str"):
        BPETokenizer.train(b"hello", vocab_size=300)
    with pytest.warns(UserWarning, match="no pairs left"):
        tok = BPETokenizer.train("ab", vocab_size=300, pattern=None)
    assert tok.vocab_size == 257


def test_train_progress_bar_runs():
    tok = BPETokenizer.train("hello hello hello world", vocab_size=260, progress=True)
    assert len(tok.merges) == 4


# --------------------------------------------------------------------------------------------
# encode / decode, special tokens, bad input


@pytest.mark.parametrize("name", CASE_IDS)
def test_trained_roundtrip_on_test_set(trained, name):
    text = CASES[name]
    assert trained.decode(trained.encode(text, disallowed_special=())) == text


def test_special_tokens_follow_tiktoken_rules(cl100k):
    enc = data.get_encoding("cl100k_base")
    text = CASES["special_tokens"]
    with pytest.raises(ValueError, match="special token '<\\|endoftext\\|>'.*allowed_special"):
        cl100k.encode(text)
    with pytest.raises(ValueError):
        enc.encode(text)  # tiktoken refuses too
    for kwargs in (
        dict(allowed_special="all"),
        dict(disallowed_special=()),
        dict(allowed_special={"<|endoftext|>"}, disallowed_special=()),
        dict(allowed_special={"<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|endoftext|>", "<|endofprompt|>"}),
    ):
        assert cl100k.encode(text, **kwargs) == enc.encode(text, **kwargs), kwargs
    assert cl100k.encode("<|endoftext|>", allowed_special="all") == [100257]
    assert cl100k.encode_ordinary("<|endoftext|>") == enc.encode_ordinary("<|endoftext|>")
    with pytest.raises(ValueError, match="does not have"):
        cl100k.encode("x", allowed_special={"<|nope|>"})
    # only some disallowed: others are ordinary text
    assert cl100k.encode("<|endofprompt|>", disallowed_special={"<|endoftext|>"}) == enc.encode_ordinary("<|endofprompt|>")


def test_encode_and_decode_bad_input(trained, cl100k):
    for bad in (None, 42, b"bytes", ["a"]):
        with pytest.raises(TypeError, match="text must be a str"):
            trained.encode(bad)
    with pytest.raises(ValueError, match="unknown token id 99999"):
        trained.decode([1, 99999])
    with pytest.raises(ValueError, match="unknown token id"):
        cl100k.decode([100256])  # a hole in cl100k's ids
    with pytest.raises(TypeError, match="ids must be"):
        trained.decode("abc")
    with pytest.raises(TypeError, match="ids must be ints"):
        trained.decode([1.5])


def test_invalid_utf8_decodes_to_replacement_characters(cl100k):
    ids = cl100k.encode("中")  # one character, 3 bytes
    assert len(cl100k.decode_bytes(ids)) == 3
    half = [cl100k.byte_ids[0xE4]]  # the first byte alone is not valid UTF-8
    assert cl100k.decode(half) == "\ufffd"
    assert cl100k.decode(half) == data.get_encoding("cl100k_base").decode(half)
    with pytest.raises(UnicodeDecodeError):
        cl100k.decode(half, errors="strict")
    assert render_token(b"\xe4") == "\\xe4"


def test_lone_surrogates_are_replaced_like_tiktoken(cl100k):
    enc = data.get_encoding("cl100k_base")
    assert cl100k.encode("a\ud800b") == enc.encode("a\ud800b")


text_strategy = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=60)
mixed_strategy = st.lists(
    st.one_of(
        st.sampled_from([" ", "  ", "\n", "\r\n", "\t", "'s", "'LL", "123456", "the", " The", "中文", "🍕", "👨‍👩‍👧", "é", "\u0301"]),
        st.characters(exclude_categories=("Cs", "Cn")),
    ),
    max_size=30,
).map("".join)


@HYPOTHESIS
@given(text_strategy)
def test_roundtrip_property_any_unicode(trained, cl100k, s):
    assert trained.decode(trained.encode(s, disallowed_special=())) == s
    assert cl100k.decode(cl100k.encode(s, disallowed_special=())) == s


@HYPOTHESIS
@given(mixed_strategy)
def test_roundtrip_property_mixed(trained, s):
    assert trained.decode(trained.encode_ordinary(s)) == s


@HYPOTHESIS
@given(st.lists(st.integers(min_value=0, max_value=100_255), max_size=30))
def test_decoding_arbitrary_ids_never_crashes(cl100k, ids):
    ids = [i for i in ids if i in cl100k.vocab]
    assert cl100k.decode(ids) == data.get_encoding("cl100k_base").decode(ids)  # U+FFFD for broken UTF-8


# --------------------------------------------------------------------------------------------
# save / load


def test_save_load_roundtrip(trained, tmp_path):
    path = trained.save(tmp_path / "tok.bpe")
    back = BPETokenizer.load(path)
    assert back.merges == trained.merges and back.special_tokens == trained.special_tokens
    assert back.pattern == trained.pattern and back.byte_ids == trained.byte_ids
    text = CASES["shakespeare"] + "<|endoftext|>" + CASES["chinese"]
    assert back.encode(text, allowed_special="all") == trained.encode(text, allowed_special="all")
    assert path.read_text().startswith("course_lib BPETokenizer v1\n")


def test_save_load_keeps_gpt4_byte_order(cl100k, tmp_path):
    tiny = BPETokenizer({}, {"<|endoftext|>": 300}, pattern="gpt4", byte_ids=cl100k.byte_ids)
    back = BPETokenizer.load(tiny.save(tmp_path / "t.bpe"))
    assert back.byte_ids == cl100k.byte_ids and back.encode("hi") == tiny.encode("hi")


def _undefined_id_in_first_merge(s: str) -> str:
    head, tail = s.split("merges 300\n")
    first, rest = tail.split("\n", 1)
    _, b, idx = first.split()
    return f"{head}merges 300\n99999 {b} {idx}\n{rest}"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.replace("v1", "v9", 1), "version '9' is not supported"),
        (lambda s: "hello\n" + s, "expected the header"),
        (lambda s: s.replace("merges 300", "merges 301"), "line"),
        (lambda s: s.replace("merges 300", "merges 299"), "expected 'end'"),
        (lambda s: s.replace("\n256 ", "\nxyz ", 1), "cannot parse"),
        (lambda s: s.replace("pattern ", "patern ", 1), "expected 'pattern'"),
        (lambda s: s + "junk\n", "after 'end'"),
        (lambda s: s[: len(s) // 2], "line"),
        (lambda s: _undefined_id_in_first_merge(s), "inconsistent"),
    ],
)
def test_load_rejects_damaged_files(trained, tmp_path, mutate, message):
    text = trained.save(tmp_path / "ok.bpe").read_text()
    bad = tmp_path / "bad.bpe"
    bad.write_text(mutate(text))
    with pytest.raises(ValueError, match=message):
        BPETokenizer.load(bad)


def test_load_rejects_binary_file(tmp_path):
    bad = tmp_path / "bin.bpe"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not a BPETokenizer file"):
        BPETokenizer.load(bad)


def test_constructor_validates_merges():
    with pytest.raises(ValueError, match="not defined before"):
        BPETokenizer({(300, 1): 301})
    with pytest.raises(ValueError, match="256 entries"):
        BPETokenizer(byte_ids=[0] * 256)
    with pytest.raises(ValueError, match="not defined before"):  # byte 1 has no token, so no merge can use it
        BPETokenizer({(0, 1): 256}, byte_ids=[0, None] + list(range(2, 256)))
    with pytest.raises(ValueError, match="increasing"):
        BPETokenizer({(1, 2): 257, (3, 4): 256})
    with pytest.raises(ValueError, match="already taken"):
        BPETokenizer({(1, 2): 256}, {"<x>": 256})


# --------------------------------------------------------------------------------------------
# GPT-4 (cl100k_base) and GPT-4o (o200k_base) inside the course's class


@pytest.mark.parametrize("name", CASE_IDS)
def test_cl100k_matches_tiktoken_on_test_set(cl100k, name):
    enc = data.get_encoding("cl100k_base")
    text = CASES[name]
    assert cl100k.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")
    assert cl100k.encode_ordinary(text) == enc.encode_ordinary(text)


@pytest.mark.parametrize("name", CASE_IDS)
def test_o200k_matches_tiktoken_on_test_set(o200k, name):
    enc = data.get_encoding("o200k_base")
    text = CASES[name]
    assert o200k.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")


def test_cl100k_matches_tiktoken_on_all_of_shakespeare(cl100k, shakespeare):
    enc = data.get_encoding("cl100k_base")
    ours = cl100k.encode_ordinary(shakespeare)
    assert ours == enc.encode_ordinary(shakespeare)
    assert len(ours) > 1_000_000
    assert cl100k.decode(ours) == shakespeare


def test_gpt4_known_ids(cl100k, o200k):
    assert cl100k.encode("hello world") == [15339, 1917]
    assert cl100k.vocab_size == 100_256 + 5
    assert o200k.special_tokens == {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}


def test_recover_merges_small_table():
    ranks = {bytes([b]): b for b in range(256)}
    ranks[b"ab"] = 256
    ranks[b"abc"] = 257
    ranks[b"bc"] = 258
    merges, byte_ids = recover_merges(ranks)
    assert merges == {(97, 98): 256, (256, 99): 257, (98, 99): 258}
    assert byte_ids == list(range(256))
    with pytest.raises(ValueError, match="single byte 0"):
        recover_merges({b"a": 0})
    with pytest.raises(ValueError, match="unknown encoding"):
        BPETokenizer.from_tiktoken("p50k_base")


def assigned_text(max_size: int = 40):
    """Text of characters assigned in this Python's Unicode database (tiktoken's and `regex`'s Unicode
    tables are newer and may treat later-assigned characters differently)."""
    return st.lists(
        st.one_of(
            st.sampled_from([" ", "  ", "\n", "\r\n", "\r", "\t", "'", "'s", "'LL", "'Re", "/", "1234567", "中文", "🍕", "👨‍👩‍👧", "\u0301", "\u00a0", "ſ", "İ"]),
            st.characters(exclude_categories=("Cs", "Cn")),
            st.characters(max_codepoint=0x3000, exclude_categories=("Cs", "Cn")),
        ),
        max_size=max_size,
    ).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(assigned_text())
def test_gpt4_and_gpt4o_match_tiktoken_property(cl100k, o200k, s):
    assert cl100k.encode_ordinary(s) == data.get_encoding("cl100k_base").encode_ordinary(s)
    assert o200k.encode_ordinary(s) == data.get_encoding("o200k_base").encode_ordinary(s)


# --------------------------------------------------------------------------------------------
# WordPiece (BERT / MiniLM)


@pytest.mark.parametrize("name", CASE_IDS)
def test_wordpiece_matches_hf_bert_on_test_set(hf_bert, name):
    text = CASES[name]
    assert minilm_wordpiece().encode(text) == hf_ids(hf_bert, text)


def test_wordpiece_on_shakespeare_sample(hf_bert, shakespeare):
    wp = minilm_wordpiece()
    for start in range(0, 200_000, 20_000):
        piece = shakespeare[start : start + 2_000]
        assert wp.encode(piece) == hf_ids(hf_bert, piece)


def stable_char(c: str) -> bool:
    """Characters whose Unicode category is the same in Unicode 3.2 and in this Python: Hugging Face's Rust
    tokenizer uses older Unicode tables than Python, so newer characters may be classified differently."""
    cat = unicodedata.category(c)
    return cat != "Cn" and unicodedata.ucd_3_2_0.category(c) == cat


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], derandomize=True)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([" ", "\n", "\t", "[CLS]", "[SEP]", "[MASK]", "Σ", "tΣ", "İ", "é", "\u0301", "中", "日本", "##", "unaffable", "x" * 101]),
            st.characters(exclude_categories=("Cs",)).filter(stable_char),
        ),
        max_size=25,
    ).map("".join)
)
def test_wordpiece_matches_hf_property(hf_bert, s):
    assert minilm_wordpiece().encode(s) == hf_ids(hf_bert, s)


def test_wordpiece_pieces_and_special_tokens():
    wp = minilm_wordpiece()
    assert wp.vocab_size == 30522
    assert wp.special_tokens == {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    assert wp.tokenize("Tokenization, naïvely!") == ["token", "##ization", ",", "naive", "##ly", "!"]
    assert wp.tokenize("x" * 101) == ["[UNK]"]
    assert wp.tokenize("[MASK] is kept") == ["[MASK]", "is", "kept"]
    assert wp.encode("hi", add_special_tokens=False) == [7632]
    assert wp.decode(wp.encode("Tokenization is fun")) == "tokenization is fun"
    assert wp.convert_ids_to_tokens([101, 102]) == ["[CLS]", "[SEP]"]
    with pytest.raises(ValueError, match="unknown token id 30522"):
        wp.decode([30522])
    with pytest.raises(TypeError, match="text must be a str"):
        wp.encode(None)
    with pytest.raises(ValueError, match="unknown token"):
        WordPieceTokenizer(["a", "b"])


# --------------------------------------------------------------------------------------------
# the token-colouring helpers and the playground widget (course_lib.widgets)


def test_segment_supports_every_tokenizer(cl100k, hf_bert):
    from course_lib.widgets import segment

    text = "Hi 你好鸟 [SEP]"
    seg = segment(cl100k, text)
    assert seg.ids == data.get_encoding("cl100k_base").encode(text, allowed_special="all")
    assert seg.complete[:4] == [True] * 4 and not any(seg.complete[4:7])  # 鸟 is 3 byte tokens
    assert seg.pieces[4] == "\\xe9"
    assert segment(minilm_wordpiece(), text).pieces == ["[CLS]", "hi", "[UNK]", "[UNK]", "[UNK]", "[SEP]", "[SEP]"]
    assert segment(hf_bert, text).ids == segment(minilm_wordpiece(), text).ids
    assert segment(data.get_encoding("cl100k_base"), text) == seg
    assert segment(WordTokenizer.train("hi there"), "hi you").pieces == ["hi", "<unk>"]
    with pytest.raises(TypeError, match="unsupported tokenizer"):
        segment(object(), "x")
    with pytest.raises(TypeError, match="text must be a str"):
        segment(cl100k, 3)


def test_tokens_html_and_show_tokens(cl100k):
    from course_lib.widgets import show_tokens, tokens_html

    out = tokens_html(["a b", "<", "\n"], [1, 2, 3])
    assert "a·b" in out and "&lt;" in out and "↵" in out and ">2<" in out
    with pytest.raises(ValueError, match="same length"):
        tokens_html(["a"], [1, 2])
    assert "3 tokens for 12 characters" in show_tokens(cl100k, "hello world!").data
    assert "tokens for" in show_tokens(cl100k, "hello world!", title="GPT-4").data


def test_tokenizer_playground_updates(cl100k):
    from course_lib.widgets import tokenizer_playground

    box = tokenizer_playground({"GPT-4": cl100k, "BERT": minilm_wordpiece()}, text="hello world")
    text_box, (choice, ids_box), out = box.children[0], box.children[1].children, box.children[2]
    assert "<b>2</b> tokens" in out.value and "15339" in out.value
    choice.value = "BERT"
    assert "<b>4</b> tokens" in out.value and "[CLS]" in out.value
    text_box.value = "hello"
    assert "<b>3</b> tokens" in out.value
    with pytest.raises(ValueError):
        tokenizer_playground({})


# --------------------------------------------------------------------------------------------
# the exercise checkers of notebook 01 (course_lib.exercises.ch01)


def test_ch01_checkers_accept_references_and_reject_mistakes(capsys):
    from course_lib.exercises import ExerciseError
    from course_lib.exercises import ch01

    def todo(*args):
        raise NotImplementedError

    def tokens_per_char(tok, text):
        return len(tok.encode(text)) / len(text)

    right = {
        ch01.check_count_pairs: get_stats,
        ch01.check_merge_pair: merge,
        ch01.check_bpe_encode: lambda text, merges: BPETokenizer(merges, pattern=None).encode(text),
        ch01.check_wordpiece: lambda word, vocab: WordPieceTokenizer(vocab).wordpiece(word),
        ch01.check_tokens_per_char: tokens_per_char,
    }
    wrong = {
        ch01.check_count_pairs: lambda ids: {p: 1 for p in zip(ids, ids[1:])},
        ch01.check_merge_pair: lambda ids, pair, idx: [idx if i == pair[0] else i for i in ids],
        ch01.check_bpe_encode: lambda text, merges: list(text.encode("utf-8")),
        ch01.check_wordpiece: lambda word, vocab: [word],
        ch01.check_tokens_per_char: lambda tok, text: len(text) / len(tok.encode(text)),
    }
    for checker, fn in right.items():
        assert checker(fn) is True
        assert checker(todo) is None
        with pytest.raises(ExerciseError):
            checker(wrong[checker])
    assert "not attempted" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# SmolLM2's tokenizer, built from its GGUF metadata, against Hugging Face's (transformers loading the GGUF)

#: Extra cases for SmolLM2 (GPT-2's split regex, 17 special tokens); the shared ones are in multilingual.json.
SMOLLM2_CASES: dict[str, str] = {
    "whitespace_mix": "  \n\n\t  x  ",
    "digits": "12345",
    "digits_in_text": "a 12345 b1 2 3.5 x99",
    "chat_markup": "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "more_specials": "<|endoftext|><repo_name>my/repo<file_sep>a.py\n<jupyter_code>print(1)<empty_output>",
    "near_specials": "<|im_start|<im_start|> <|im_end |>",
    "code_indent": "class A:\n\tdef f(self):\n        return  {'k': [1, 2]}\n\n\n",
    "trailing_newlines": "end\n\n\n",
    "latin1_and_controls": "\xa0\xad\x7f\x80ÿ\x01\x1f caf\u00e9",
}
SMOLLM2_ALL = {**CASES, **{"smollm2_" + k: v for k, v in SMOLLM2_CASES.items()}}


@pytest.fixture(scope="module")
def smollm2_metadata() -> dict:
    from course_lib.gguf import GGUFFile

    with GGUFFile(data.smollm2_gguf_path()) as f:
        return f.metadata


@pytest.fixture(scope="module")
def smollm2(smollm2_metadata) -> BPETokenizer:
    return BPETokenizer.from_gguf_metadata(smollm2_metadata)


@pytest.fixture(scope="module")
def smollm2_hf():
    """The oracle: transformers' tokenizer for the same GGUF file (BPE, GPT-2 ByteLevel, 17 special tokens)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoTokenizer

    path = data.smollm2_gguf_path()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def smollm2_hf_ids(tok, text: str, split_special: bool = False) -> list[int]:
    # always pass split_special_tokens: transformers keeps the last value on the backend tokenizer
    return tok.encode(text, add_special_tokens=False, split_special_tokens=split_special)


def test_bytes_to_unicode_table():
    from transformers.convert_slow_tokenizer import bytes_to_unicode as hf_table

    table = bytes_to_unicode()
    assert table == hf_table()
    assert list(table) == list(range(256)) and len(set(table.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert table[32] == "Ġ" and table[10] == "Ċ" and table[ord("A")] == "A"
    inverse = unicode_to_bytes()
    assert all(inverse[c] == b for b, c in table.items())


def test_smollm2_from_gguf_metadata_structure(smollm2, smollm2_metadata):
    tokens = smollm2_metadata["tokenizer.ggml.tokens"]
    assert smollm2.vocab_size == len(tokens) == 49152
    assert len(smollm2.merges) == len(smollm2_metadata["tokenizer.ggml.merges"]) == 48900
    assert smollm2.special_tokens == {tokens[i]: i for i in range(17)}
    assert smollm2.special_tokens["<|im_start|>"] == 1 and smollm2.special_tokens["<|im_end|>"] == 2
    assert smollm2.pattern == GPT2_SPLIT_PATTERN
    # 235 bytes have a token; 21 have none (0xC0, 0xC1, 0xF5-0xFF never occur in UTF-8, six controls, 0xF1, 0xF2)
    missing = [b for b, i in enumerate(smollm2.byte_ids) if i is None]
    assert missing == [0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, *range(0xF5, 0x100)]
    # merge priority is not the id: merge 0 ("Ġ t") makes id 252, after 17 special tokens and 235 bytes
    (first, new) = next(iter(smollm2.merges.items()))
    assert smollm2_metadata["tokenizer.ggml.merges"][0] == "Ġ t" and new == 252
    assert smollm2.token_bytes(new) == b" t" and smollm2.token_bytes(first[0]) == b" "
    assert [smollm2.token_bytes(i) for i in smollm2.encode("Hello world")] == [b"Hello", b" world"]


def test_smollm2_builds_fast(smollm2_metadata):
    import time

    t0 = time.perf_counter()
    BPETokenizer.from_gguf_metadata(smollm2_metadata)
    assert time.perf_counter() - t0 < 3.0


@pytest.mark.parametrize("name", sorted(SMOLLM2_ALL))
def test_smollm2_matches_hf_on_test_set(smollm2, smollm2_hf, name):
    text = SMOLLM2_ALL[name]
    ids = smollm2.encode(text, allowed_special="all")  # Hugging Face matches its special tokens in any text
    assert ids == smollm2_hf_ids(smollm2_hf, text)
    assert smollm2.decode(ids) == text
    assert smollm2_hf.decode(ids) == text


@pytest.mark.parametrize("name", ["special_tokens", "smollm2_chat_markup", "smollm2_more_specials", "smollm2_near_specials"])
def test_smollm2_special_tokens_as_ordinary_text(smollm2, smollm2_hf, name):
    text = SMOLLM2_ALL[name]
    ordinary = smollm2.encode(text, disallowed_special=())
    assert ordinary == smollm2.encode_ordinary(text) == smollm2_hf_ids(smollm2_hf, text, split_special=True)
    assert not set(ordinary) & set(smollm2.special_tokens.values())
    assert smollm2.decode(ordinary) == text
    if any(t in text for t in smollm2.special_tokens):
        with pytest.raises(ValueError, match="not allowed"):  # the default: special tokens in text are refused
            smollm2.encode(text)


def test_smollm2_chat_markup_ids(smollm2):
    assert smollm2.encode("<|im_start|>user\nhi<|im_end|>", allowed_special="all") == [1, 4093, 198, 6004, 2]
    assert smollm2.encode("<|im_start|>", allowed_special={"<|im_start|>"}) == [1]
    assert len(smollm2.encode_ordinary("<|im_start|>")) > 1


def test_smollm2_matches_hf_on_shakespeare(smollm2, smollm2_hf, shakespeare):
    text = shakespeare[:100_000]
    assert smollm2.encode_ordinary(text) == smollm2_hf_ids(smollm2_hf, text, split_special=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(assigned_text())
def test_smollm2_matches_hf_property(smollm2, smollm2_hf, s):
    assert smollm2.encode_ordinary(s) == smollm2_hf_ids(smollm2_hf, s, split_special=True)


def test_smollm2_drops_bytes_without_a_token_like_hf(smollm2, smollm2_hf):
    for text in ["\x04a\x06", " \x04\x04 ", "x\U00040000y", "(\x1d)"]:
        ids = smollm2.encode_ordinary(text)
        assert ids == smollm2_hf_ids(smollm2_hf, text, split_special=True)
    assert smollm2.decode(smollm2.encode_ordinary("\x04a\x06")) == "a"


def test_smollm2_save_load_keeps_missing_bytes(smollm2, tmp_path):
    path = smollm2.save(tmp_path / "smollm2.bpe")
    assert path.read_text().startswith("course_lib BPETokenizer v2\n")  # v2: some bytes have no token ("-")
    back = BPETokenizer.load(path)
    assert back.byte_ids == smollm2.byte_ids and back.merges == smollm2.merges
    assert back.special_tokens == smollm2.special_tokens and back.pattern == smollm2.pattern
    text = CASES["emoji"] + "\x04" + CASES["python_code"] + "<|im_end|>"
    assert back.encode(text, allowed_special="all") == smollm2.encode(text, allowed_special="all")
    bad = tmp_path / "bad.bpe"
    bad.write_text(path.read_text().replace("v2", "v1", 1))  # "-" is not part of version 1
    with pytest.raises(ValueError, match="cannot parse"):
        BPETokenizer.load(bad)


def _metadata_with(metadata: dict, **changes) -> dict:
    out = dict(metadata)
    out.update({"tokenizer.ggml." + k: v for k, v in changes.items()})
    return out


def test_from_gguf_metadata_errors(smollm2_metadata):
    md = smollm2_metadata
    with pytest.raises(ValueError, match=r"expected a byte-level BPE tokenizer, tokenizer\.ggml\.model = 'gpt2'.*found.*'llama'.*SentencePiece"):
        BPETokenizer.from_gguf_metadata(_metadata_with(md, model="llama"))
    with pytest.raises(ValueError, match="found tokenizer.ggml.model = None"):
        BPETokenizer.from_gguf_metadata({})
    with pytest.raises(TypeError, match="dict"):
        BPETokenizer.from_gguf_metadata("model.gguf")
    with pytest.raises(ValueError, match="no list 'tokenizer.ggml.merges'"):
        BPETokenizer.from_gguf_metadata({k: v for k, v in md.items() if k != "tokenizer.ggml.merges"})
    merges = list(md["tokenizer.ggml.merges"])
    with pytest.raises(ValueError, match=r"merges\[3\] = 'h zzz' names the token 'zzz'"):
        BPETokenizer.from_gguf_metadata(_metadata_with(md, merges=merges[:3] + ["h zzz"] + merges[4:]))
    with pytest.raises(ValueError, match="names the token 'ĠtĠt'"):  # both parts exist, their merge does not
        BPETokenizer.from_gguf_metadata(_metadata_with(md, merges=merges + ["Ġt Ġt"]))
    with pytest.raises(ValueError, match="two tokens separated by one space"):
        BPETokenizer.from_gguf_metadata(_metadata_with(md, merges=["Ġt"] + merges))
    with pytest.raises(ValueError, match="follow the merge order"):
        BPETokenizer.from_gguf_metadata(_metadata_with(md, merges=[merges[1], merges[0]] + merges[2:]))
    with pytest.raises(ValueError, match="neither a single byte, nor made by a merge"):
        BPETokenizer.from_gguf_metadata(_metadata_with(md, merges=merges[:-1]))
    with pytest.raises(ValueError, match="tokenizer.ggml.pre = 'llama-bpe'"):
        BPETokenizer.from_gguf_metadata(_metadata_with(md, pre="llama-bpe"))
    tok = BPETokenizer.from_gguf_metadata(_metadata_with(md, pre="llama-bpe"), pattern="gpt4")
    assert tok.pattern == GPT4_SPLIT_PATTERN
    # a repeated merge keeps its last position (as in Hugging Face); here that breaks the id order
    with pytest.raises(ValueError, match="follow the merge order"):
        BPETokenizer.from_gguf_metadata(_metadata_with(md, merges=merges + [merges[0]]))


@pytest.mark.parametrize("bad", ["gpt5", "GPT_4", "cl100k", ""])
def test_unknown_pattern_name_is_an_error_not_a_regex(bad):
    with pytest.raises(ValueError, match="unknown pattern name"):
        BPETokenizer(pattern=bad)
    with pytest.raises(ValueError, match="unknown pattern name"):
        BPETokenizer.train("hello world hello", vocab_size=260, pattern=bad)


def test_pattern_names_any_case_compiled_and_explicit_regex():
    import regex

    from course_lib.tokenization import GPT4_SPLIT_PATTERN

    assert BPETokenizer(pattern="GPT4").pattern == GPT4_SPLIT_PATTERN
    assert BPETokenizer(pattern=regex.compile(GPT4_SPLIT_PATTERN)).pattern == GPT4_SPLIT_PATTERN
    assert BPETokenizer(pattern=r"\S+|\s+").encode("a b") == list(b"a b")
    with pytest.raises(ValueError, match="not a valid regex"):
        BPETokenizer(pattern="(unclosed")
    with pytest.raises(TypeError, match="regex string or a compiled regex"):
        BPETokenizer(pattern=3)


def test_train_rejects_repeated_or_empty_special_tokens():
    with pytest.raises(ValueError, match=r"distinct, got \['<\|eot\|>'\]"):
        BPETokenizer.train("hello world", vocab_size=262, special_tokens=["<|eot|>", "<|pad|>", "<|eot|>"])
    with pytest.raises(TypeError, match="non-empty strings"):
        BPETokenizer.train("hello world", vocab_size=262, special_tokens=["", "<|pad|>"])
