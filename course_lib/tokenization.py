"""Tokenizers from scratch: characters, words, byte-level BPE (GPT-2/GPT-4 style) and WordPiece (BERT).

What is here:
- `CharTokenizer` and `WordTokenizer`: the two naive baselines, each with an unknown token.
- `get_stats` / `merge`: the two helpers that BPE is made of, small enough to read in one go.
- `BPETokenizer`: byte-level BPE with regex pre-tokenization (GPT-2, GPT-4 and GPT-4o split
  patterns), training with incremental pair counts, encode / decode, special tokens handled like
  tiktoken's `allowed_special` / `disallowed_special`, save / load in a versioned plain-text format,
  and `BPETokenizer.from_tiktoken("cl100k_base")`, which loads GPT-4's merges into this class so that
  it encodes exactly like tiktoken.
- `BPETokenizer.from_gguf_metadata(metadata)`: the byte-level BPE a GGUF file describes (SmolLM2's),
  spelled in GPT-2's byte alphabet (`bytes_to_unicode`); gives the ids of Hugging Face's tokenizer for it.
- `WordPieceTokenizer`: uncased-BERT normalisation, punctuation splitting and greedy
  longest-match-first WordPiece; loads MiniLM's `vocab.txt` and gives the same ids as Hugging Face's
  fast BERT tokenizer.

What it leaves out: training WordPiece (only encoding), SentencePiece / Unigram, byte fallback,
truncation and padding (see notebook 05), and speed tricks beyond a per-chunk cache: it is pure Python,
about 100x slower than tiktoken. See notebook 01.

The tie rule of BPE training: at each step the most frequent adjacent pair is merged; among equally
frequent pairs the smallest pair of ids wins, comparing the first id, then the second
(so (101, 32) beats (101, 110) which beats (115, 32)). This makes training deterministic.

Exactness, as tested in tests/test_tokenization.py: with cl100k_base or o200k_base loaded, `encode` gives
tiktoken's ids on the course's multilingual test set, all of Shakespeare and random text made of characters
that Python's Unicode database (14.0) knows. Characters assigned by later Unicode versions may be split
differently, because the `regex` package and tiktoken's Rust regex carry different Unicode tables.
`WordPieceTokenizer` gives the ids of Hugging Face's fast BERT tokenizer on the same test set and on random
text of characters whose Unicode category has not changed since Unicode 3.2 (its Rust tables are older).

Invalid UTF-8: `decode` of an arbitrary id sequence can cut a multi-byte character in half. It never
raises for that: the broken bytes become U+FFFD replacement characters (`errors="replace"`), exactly
like tiktoken's `decode`. Use `decode_bytes` to get the raw bytes.
"""

from __future__ import annotations

import heapq
import os
import re
import unicodedata
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Literal, Mapping

import regex

__all__ = [
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "GPT4O_SPLIT_PATTERN",
    "SPLIT_PATTERNS",
    "TIKTOKEN_SPECIAL_TOKENS",
    "CharTokenizer",
    "WordTokenizer",
    "get_stats",
    "merge",
    "BPETokenizer",
    "WordPieceTokenizer",
    "bpe_from_tiktoken",
    "bytes_to_unicode",
    "unicode_to_bytes",
    "recover_merges",
    "minilm_wordpiece",
    "render_token",
]

# ----------------------------------------------------------------------------------------------
# Pre-tokenization patterns (copied from tiktoken; `regex` runs them, `re` cannot: \p{L}, ++).

#: GPT-2 (r50k_base): contractions, letters, numbers, punctuation, whitespace.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
#: GPT-4 (cl100k_base): case-insensitive contractions, numbers in groups of at most 3 digits.
GPT4_SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
#: GPT-4o (o200k_base): words split at case changes, contractions glued to their word.
GPT4O_SPLIT_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
#: Short names accepted wherever a pattern is expected.
SPLIT_PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN, "gpt4o": GPT4O_SPLIT_PATTERN}

#: The special tokens of the two OpenAI encodings the course uses.
TIKTOKEN_SPECIAL_TOKENS = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}
_TIKTOKEN_PATTERNS = {"cl100k_base": GPT4_SPLIT_PATTERN, "o200k_base": GPT4O_SPLIT_PATTERN}
#: GGUF `tokenizer.ggml.pre` values that Hugging Face splits with GPT-2's regex (its ByteLevel pre-tokenizer).
_GGUF_GPT2_REGEX_PRE = frozenset({"default", "gpt2", "smollm"})


def _resolve_pattern(pattern: Any) -> str | None:
    """A split pattern: None, a name of SPLIT_PATTERNS (any case), a compiled regex, or a regex string.

    A string of letters, digits and underscores only is taken as a name: as a regex it would split a
    text into nothing but copies of that word, so "gpt5" or "GPT_4" is a mistake, not a pattern.
    """
    if pattern is None:
        return None
    if isinstance(pattern, (regex.Pattern, re.Pattern)):
        pattern = pattern.pattern
    if not isinstance(pattern, str):
        raise TypeError(
            f"pattern must be a name in {sorted(SPLIT_PATTERNS)}, a regex string or a compiled regex, got {type(pattern).__name__}"
        )
    if pattern.lower() in SPLIT_PATTERNS:
        return SPLIT_PATTERNS[pattern.lower()]
    if not pattern or re.fullmatch(r"\w+", pattern):
        raise ValueError(f"unknown pattern name {pattern!r}: expected one of {sorted(SPLIT_PATTERNS)}, a regex or None")
    try:
        regex.compile(pattern)
    except regex.error as exc:
        raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from None
    return pattern


def _check_text(text: object, what: str = "text") -> str:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}: {text!r:.80}")
    return text


def _check_ids(ids: object) -> list[int]:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise TypeError(f"ids must be a sequence of ints, got {type(ids).__name__}")
    out = []
    for i in ids:
        if hasattr(i, "item") and not isinstance(i, int):  # numpy / torch scalars
            i = i.item()
        if not isinstance(i, int) or isinstance(i, bool):
            raise TypeError(f"ids must be ints, got {type(i).__name__}: {i!r}")
        out.append(i)
    return out


def render_token(token: bytes) -> str:
    """Show a token's bytes as readable text: valid UTF-8 as text, control characters and broken bytes escaped.

    >>> render_token(b"hi\\n"), render_token(b"\\xe4\\xbd")
    ('hi\\\\n', '\\\\xe4\\\\xbd')
    """
    text = token.decode("utf-8", errors="backslashreplace")
    return "".join(ch if unicodedata.category(ch)[0] != "C" else ch.encode("unicode_escape").decode("ascii") for ch in text)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from each of the 256 bytes to one printable character; `unicode_to_bytes` is its inverse.

    Why it exists: a byte-level BPE's tokens are arbitrary bytes (a space, a newline, a control character,
    half of a UTF-8 character), but GPT-2's `vocab.json` / `merges.txt`, and GGUF's `tokenizer.ggml.tokens` /
    `tokenizer.ggml.merges`, store them as text, and a merge as the two tokens joined by one space. So every
    byte is written as a visible character that is never a space: the 188 printable Latin-1 characters
    ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for their own byte, and the other 68 bytes (control characters,
    space, no-break space, soft hyphen) get U+0100, U+0101, ... in byte order. Hence 'Ġ' (U+0120) is the
    space byte 32 and 'Ċ' (U+010A) the newline: the token "Ġthe" is the bytes b" the".

    >>> t = bytes_to_unicode(); t[32], t[10], t[ord("a")]
    ('Ġ', 'Ċ', 'a')
    >>> bytes(unicode_to_bytes()[c] for c in "ĠhelloĊ")
    b' hello\\n'
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return dict(sorted(table.items()))


def unicode_to_bytes() -> dict[str, int]:
    """The inverse of `bytes_to_unicode`: GPT-2's printable character -> the byte it stands for."""
    return {c: b for b, c in bytes_to_unicode().items()}


# ----------------------------------------------------------------------------------------------
# The naive baselines.


class CharTokenizer:
    """One token per character, vocabulary learned from a text; unseen characters become `<unk>`.

    >>> tok = CharTokenizer.train("hello"); tok.decode(tok.encode("hole"))
    'hole'

    See notebook 01.
    """

    def __init__(self, chars: Iterable[str], unk_token: str = "<unk>") -> None:
        chars = list(dict.fromkeys(chars))
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"every vocabulary entry must be a single character, got {c!r}")
        self.unk_token = unk_token
        self.itos: list[str] = [unk_token] + [c for c in chars if c != unk_token]
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        self.unk_id = 0

    @classmethod
    def train(cls, text: str, unk_token: str = "<unk>") -> "CharTokenizer":
        """Vocabulary = the sorted set of characters in `text`."""
        return cls(sorted(set(_check_text(text))), unk_token=unk_token)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Characters to ids; characters not in the vocabulary map to the unknown id 0."""
        stoi, unk = self.stoi, self.unk_id
        return [stoi.get(c, unk) for c in _check_text(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids back to text (the unknown id decodes to the unknown token string)."""
        ids = _check_ids(ids)
        for i in ids:
            if not 0 <= i < len(self.itos):
                raise ValueError(f"unknown token id {i}; valid ids are 0..{len(self.itos) - 1}")
        return "".join(self.itos[i] for i in ids)


class WordTokenizer:
    """One token per word or punctuation mark, the `vocab_size` most frequent kept; the rest become `<unk>`.

    Decoding joins words with spaces, so it loses the original spacing: that is one of its costs.
    >>> tok = WordTokenizer.train("the cat sat on the mat", vocab_size=5)
    >>> tok.decode(tok.encode("the dog sat on the cat"))
    'the <unk> <unk> on the cat'

    See notebook 01.
    """

    #: words (letters, digits, apostrophes inside a word) or single punctuation marks
    PATTERN = r"\w+(?:'\w+)*|[^\w\s]"

    def __init__(self, words: Iterable[str], unk_token: str = "<unk>") -> None:
        self.unk_token = unk_token
        self.itos: list[str] = [unk_token] + [w for w in dict.fromkeys(words) if w != unk_token]
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        self.unk_id = 0
        self._re = regex.compile(self.PATTERN)

    @classmethod
    def split(cls, text: str) -> list[str]:
        """Split text into words and punctuation marks (whitespace dropped)."""
        return regex.findall(cls.PATTERN, _check_text(text))

    @classmethod
    def train(cls, text: str, vocab_size: int | None = None, min_freq: int = 1, unk_token: str = "<unk>") -> "WordTokenizer":
        """Keep the most frequent words (ties: alphabetical), at most `vocab_size` ids including `<unk>`."""
        if vocab_size is not None and (not isinstance(vocab_size, int) or vocab_size < 1):
            raise ValueError(f"vocab_size must be an int >= 1 (room for {unk_token!r}), got {vocab_size!r}")
        counts = Counter(cls.split(text))
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        if vocab_size is not None:
            words = words[: vocab_size - 1]
        return cls(words, unk_token=unk_token)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Words to ids; unknown words map to the unknown id 0."""
        stoi, unk = self.stoi, self.unk_id
        return [stoi.get(w, unk) for w in self._re.findall(_check_text(text))]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids back to words joined by single spaces."""
        ids = _check_ids(ids)
        for i in ids:
            if not 0 <= i < len(self.itos):
                raise ValueError(f"unknown token id {i}; valid ids are 0..{len(self.itos) - 1}")
        return " ".join(self.itos[i] for i in ids)


# ----------------------------------------------------------------------------------------------
# BPE building blocks.


def get_stats(ids: list[int], counts: dict | None = None) -> dict[tuple[int, int], int]:
    """Count adjacent pairs.

    >>> get_stats([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: list[int], pair: tuple[int, int], idx: int) -> list[int]:
    """Replace every occurrence of `pair` (left to right, non-overlapping) by the new id `idx`.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    """
    out, i, n = [], 0, len(ids)
    a, b = pair
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


_FORMAT_HEADER = "course_lib BPETokenizer"
#: v1: every byte has an id. v2 (written only when needed): a byte may have none, written "-".
_FORMAT_VERSION = 2
_FORMAT_VERSIONS_READ = ("1", "2")
_INF = float("inf")


class BPETokenizer:
    """Byte-level BPE: text -> regex chunks -> UTF-8 bytes -> repeatedly merge the highest-priority pair.

    `merges` maps a pair of ids to the id it becomes; a merge's priority is its new id (lower = earlier),
    so merges must be listed with increasing new ids. `byte_ids[b]` is the id of the single byte `b`
    (the identity for tokenizers trained here; a permutation for GPT-4's), or None when the vocabulary
    has no token for that byte: SmolLM2's lacks 21 bytes (0xC0, 0xC1, 0xF5-0xFF never occur in UTF-8; the
    others never occurred in its training data). Such a byte is dropped when encoding, as Hugging Face's
    BPE does when it has no unknown token, so `decode(encode(s)) == s` fails only for text that contains one.

    >>> tok = BPETokenizer.train("aaabdaaabac", vocab_size=259, pattern=None)
    >>> tok.merges
    {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    >>> tok.encode("aaabdaaabac"), tok.decode(tok.encode("aaabdaaabac"))
    ([258, 100, 258, 97, 99], 'aaabdaaabac')

    See notebook 01.
    """

    def __init__(
        self,
        merges: dict[tuple[int, int], int] | None = None,
        special_tokens: dict[str, int] | None = None,
        pattern: str | None = "gpt4",
        byte_ids: list[int | None] | None = None,
    ) -> None:
        self.pattern: str | None = _resolve_pattern(pattern)
        self._re = regex.compile(self.pattern) if self.pattern else None
        self.byte_ids: list[int | None] = (
            list(range(256)) if byte_ids is None else [None if i is None else int(i) for i in byte_ids]
        )
        present = [i for i in self.byte_ids if i is not None]
        if len(self.byte_ids) != 256 or len(set(present)) != len(present):
            raise ValueError(
                f"byte_ids must be 256 entries (an id, or None for a byte without a token) with distinct ids, "
                f"got {len(self.byte_ids)} entries ({len(set(present))} distinct ids)"
            )
        self._bytes_missing = len(present) < 256
        self.merges: dict[tuple[int, int], int] = {}
        self.vocab: dict[int, bytes] = {i: bytes([b]) for b, i in enumerate(self.byte_ids) if i is not None}
        last = -1
        for (a, b), idx in (merges or {}).items():
            if a not in self.vocab or b not in self.vocab:
                raise ValueError(f"merge ({a}, {b}) -> {idx} uses an id that is not defined before it")
            if idx in self.vocab or idx <= last:
                raise ValueError(f"merge ({a}, {b}) -> {idx}: new ids must be unused and increasing (previous {last})")
            self.merges[(a, b)] = idx
            self.vocab[idx] = self.vocab[a] + self.vocab[b]
            last = idx
        self.special_tokens: dict[str, int] = {}
        for s, i in (special_tokens or {}).items():
            if not isinstance(s, str) or not s:
                raise ValueError(f"special tokens must be non-empty strings, got {s!r}")
            if i in self.vocab or i in self.special_tokens.values():
                raise ValueError(f"special token {s!r} has id {i}, which is already taken")
            self.special_tokens[s] = int(i)
        self.inverse_special_tokens: dict[int, str] = {i: s for s, i in self.special_tokens.items()}
        self._cache: dict[str, list[int]] = {}

    # --- sizes and lookups -------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of ids: bytes + merges + special tokens."""
        return len(self.vocab) + len(self.special_tokens)

    @property
    def max_token_value(self) -> int:
        return max(list(self.vocab) + list(self.special_tokens.values()))

    def token_bytes(self, idx: int) -> bytes:
        """The bytes of one id (a special token's UTF-8 text)."""
        if idx in self.vocab:
            return self.vocab[idx]
        if idx in self.inverse_special_tokens:
            return self.inverse_special_tokens[idx].encode("utf-8")
        raise ValueError(f"unknown token id {idx!r}; this tokenizer has ids 0..{self.max_token_value}")

    # --- training ----------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        special_tokens: Collection[str] | dict[str, int] | None = None,
        pattern: str | None = "gpt4",
        progress: bool = False,
        callback: Callable[[int, tuple[int, int], int, int], None] | None = None,
    ) -> "BPETokenizer":
        """Learn `vocab_size - 256 - len(special_tokens)` merges from `text`.

        Pair counts are kept up to date incrementally: the text is split into de-duplicated chunks
        (chunk -> count), and a merge only re-counts the chunks that contain the merged pair.
        Ties: the most frequent pair wins; among equals, the smallest (first id, second id).
        Special tokens get the ids right after the merges and are cut out of the training text.
        `pattern=None` treats the whole text as one chunk: fine for toy strings, slow for long text.
        `callback(step, pair, new_id, count)` is called after every merge (for teaching plots).
        """
        _check_text(text)
        specials = list(special_tokens or [])
        bad = [t for t in specials if not isinstance(t, str) or not t]
        if bad:
            raise TypeError(f"special tokens must be non-empty strings, got {bad!r}")
        repeated = sorted({t for t in specials if specials.count(t) > 1})
        if repeated:
            raise ValueError(f"special tokens must be distinct, got {repeated} more than once in {specials}")
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        if vocab_size < 256 + len(specials):
            raise ValueError(
                f"vocab_size must be at least 256 (one id per byte) + {len(specials)} special tokens = "
                f"{256 + len(specials)}, got {vocab_size}"
            )
        num_merges = vocab_size - 256 - len(specials)
        compiled = regex.compile(_resolve_pattern(pattern)) if pattern else None

        # 1. de-duplicated chunks: bytes of each distinct chunk and how often it occurs
        parts = [text]
        if specials:
            parts = regex.split("|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True)), text)
        chunk_counts: Counter[str] = Counter()
        for part in parts:
            chunk_counts.update(compiled.findall(part) if compiled else ([part] if part else []))
        words: list[list[int]] = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
        freqs: list[int] = list(chunk_counts.values())

        # 2. initial pair counts and the index pair -> words that contain it
        stats: dict[tuple[int, int], int] = {}
        where: dict[tuple[int, int], set[int]] = {}
        for w, (ids, f) in enumerate(zip(words, freqs)):
            for pair in zip(ids, ids[1:]):
                stats[pair] = stats.get(pair, 0) + f
                s = where.get(pair)
                if s is None:
                    where[pair] = {w}
                else:
                    s.add(w)
        heap = [(-c, p) for p, c in stats.items()]
        heapq.heapify(heap)

        bar = None
        if progress:
            from tqdm.auto import tqdm

            from course_lib.utils import close_progress

            bar = tqdm(total=num_merges, desc="BPE merges", mininterval=0.5)
        merges: dict[tuple[int, int], int] = {}
        for step in range(num_merges):
            # 3. the best pair: pop stale heap entries until one matches the current count
            while heap:
                negc, pair = heap[0]
                if stats.get(pair, 0) == -negc:
                    break
                heapq.heappop(heap)
            else:
                warnings.warn(f"the text has no pairs left after {step} merges; vocab_size is {256 + step + len(specials)}, not {vocab_size}")
                break
            count = -heap[0][0]
            heapq.heappop(heap)
            idx = 256 + step
            merges[pair] = idx
            a, b = pair
            # 4. update only the words that contain the pair
            changed: dict[tuple[int, int], int] = {}
            for w in where.pop(pair):
                ids, f = words[w], freqs[w]
                new = merge(ids, pair, idx)
                old_pairs = Counter(zip(ids, ids[1:]))
                new_pairs = Counter(zip(new, new[1:]))
                for p, c in old_pairs.items():
                    if p not in new_pairs:
                        if p != pair:
                            where[p].discard(w)
                    delta = new_pairs.get(p, 0) - c
                    if delta:
                        changed[p] = changed.get(p, 0) + delta * f
                for p, c in new_pairs.items():
                    if p not in old_pairs:
                        changed[p] = changed.get(p, 0) + c * f
                        where.setdefault(p, set()).add(w)
                words[w] = new
            for p, d in changed.items():
                c = stats.get(p, 0) + d
                if c > 0:
                    stats[p] = c
                    heapq.heappush(heap, (-c, p))
                else:
                    stats.pop(p, None)
                    where.pop(p, None)
            stats.pop(pair, None)
            if callback is not None:
                callback(step, pair, idx, count)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            close_progress(bar)
        first_special = 256 + len(merges)
        if isinstance(special_tokens, dict):
            special_ids = dict(special_tokens)
        else:
            special_ids = {s: first_special + i for i, s in enumerate(specials)}
        return cls(merges, special_ids, pattern=pattern)

    # --- encoding ----------------------------------------------------------------------------
    def _encode_chunk(self, chunk: str) -> list[int]:
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        byte_ids = self.byte_ids
        ids = [byte_ids[b] for b in chunk.encode("utf-8")]
        if self._bytes_missing:  # bytes without a token are dropped (Hugging Face's BPE without unk_token)
            ids = [i for i in ids if i is not None]
        merges_get = self.merges.get
        while len(ids) >= 2:
            # the pair with the lowest new id (= earliest merge) among adjacent pairs
            best, best_pair = _INF, None
            for pair in zip(ids, ids[1:]):
                r = merges_get(pair, _INF)
                if r < best:
                    best, best_pair = r, pair
            if best_pair is None:
                break
            ids = merge(ids, best_pair, best)
        if len(self._cache) > 500_000:  # bound memory on endless unique input
            self._cache.clear()
        self._cache[chunk] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text, treating special-token strings as ordinary text."""
        text = _check_text(text)
        text = _fix_surrogates(text)
        if self._re is None:
            return list(self._encode_chunk(text)) if text else []
        out: list[int] = []
        enc = self._encode_chunk
        for chunk in self._re.findall(text):
            out.extend(enc(chunk))
        return out

    def encode(
        self,
        text: str,
        allowed_special: Literal["all"] | Collection[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """Encode text to ids, with tiktoken's rules for special tokens.

        A special token in `allowed_special` becomes its id. One in `disallowed_special` (by default
        every special token not allowed) raises ValueError. Any other is encoded as ordinary text.
        >>> tok = BPETokenizer(special_tokens={"<|eot|>": 256}, pattern="gpt4")
        >>> tok.encode("hi<|eot|>", allowed_special="all")
        [104, 105, 256]
        """
        text = _check_text(text)
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        else:
            allowed = set(allowed_special)
            unknown = allowed - set(self.special_tokens)
            if unknown:
                raise ValueError(f"allowed_special names tokens this tokenizer does not have: {sorted(unknown)}; it has {sorted(self.special_tokens)}")
        if disallowed_special == "all":
            disallowed = set(self.special_tokens) - allowed
        else:
            disallowed = set(disallowed_special)
        if disallowed:
            found = regex.search("|".join(regex.escape(s) for s in sorted(disallowed, key=len, reverse=True)), text)
            if found:
                raise ValueError(
                    f"the text contains the special token {found.group()!r} at position {found.start()}, which is not allowed. "
                    f"Pass allowed_special={{{found.group()!r}}} (or 'all') to encode it as a special token, or "
                    f"disallowed_special=() to encode it as ordinary text."
                )
        if not allowed:
            return self.encode_ordinary(text)
        special_re = "(" + "|".join(regex.escape(s) for s in sorted(allowed, key=len, reverse=True)) + ")"
        out: list[int] = []
        for i, part in enumerate(regex.split(special_re, text)):
            if i % 2:  # captured separator = an allowed special token
                out.append(self.special_tokens[part])
            elif part:
                out.extend(self.encode_ordinary(part))
        return out

    # --- decoding ----------------------------------------------------------------------------
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Ids to raw bytes (special tokens as their UTF-8 text); unknown ids raise ValueError."""
        vocab, inv = self.vocab, self.inverse_special_tokens
        parts = []
        for i in _check_ids(ids):
            piece = vocab.get(i)
            if piece is None:
                s = inv.get(i)
                if s is None:
                    raise ValueError(f"unknown token id {i}; this tokenizer has ids 0..{self.max_token_value}")
                piece = s.encode("utf-8")
            parts.append(piece)
        return b"".join(parts)

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Ids to text. Bytes that are not valid UTF-8 become U+FFFD (with the default errors='replace')."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def tokens(self, text: str, allowed_special: Literal["all"] | Collection[str] = "all") -> list[bytes]:
        """The bytes of each token of `text` (handy for showing a segmentation)."""
        return [self.token_bytes(i) for i in self.encode(text, allowed_special=allowed_special)]

    # --- GPT-4's merges -----------------------------------------------------------------------
    @classmethod
    def from_tiktoken(
        cls,
        name_or_ranks: str | dict[bytes, int] = "cl100k_base",
        pattern: str | None = None,
        special_tokens: dict[str, int] | None = None,
    ) -> "BPETokenizer":
        """Build GPT-4's (cl100k_base) or GPT-4o's (o200k_base) tokenizer inside this class.

        tiktoken stores `bytes -> rank`. We recover, for each multi-byte token, the pair it was
        merged from by running BPE on its own bytes with only lower-ranked tokens; the rank is the new id.
        """
        if isinstance(name_or_ranks, str):
            if name_or_ranks not in _TIKTOKEN_PATTERNS:
                raise ValueError(f"unknown encoding {name_or_ranks!r}; expected one of {sorted(_TIKTOKEN_PATTERNS)} or a dict of ranks")
            ranks = _load_tiktoken_ranks(name_or_ranks)
            pattern = pattern or _TIKTOKEN_PATTERNS[name_or_ranks]
            special_tokens = TIKTOKEN_SPECIAL_TOKENS[name_or_ranks] if special_tokens is None else special_tokens
        else:
            ranks = dict(name_or_ranks)
            pattern = pattern or "gpt4"
        merges, byte_ids = recover_merges(ranks)
        return cls(merges, special_tokens or {}, pattern=pattern, byte_ids=byte_ids)

    # --- a GGUF file's tokenizer ----------------------------------------------------------------
    @classmethod
    def from_gguf_metadata(cls, metadata: Mapping[str, Any], pattern: str | None = None) -> "BPETokenizer":
        """The byte-level BPE described by a GGUF file's metadata (e.g. SmolLM2's), as a `BPETokenizer`.

        `metadata` is the dict of plain values a GGUF reader gives (`course_lib.gguf.GGUFFile(path).metadata`).
        It needs `tokenizer.ggml.model == "gpt2"`, `tokenizer.ggml.tokens` (strings in GPT-2's byte alphabet,
        see `bytes_to_unicode`) and `tokenizer.ggml.merges` ("a b", best first); `tokenizer.ggml.token_type`
        marks the control tokens (3) and user-defined ones (4), which become this tokenizer's special
        tokens under their own ids. The result gives the ids of Hugging Face's tokenizer for the same file
        (`AutoTokenizer.from_pretrained(folder, gguf_file=name)`), which applies the merges like this:

        - a merge's priority is its position in the list; its result is the token `a + b`, whose id is
          looked up in the vocabulary (so priority and id differ: SmolLM2's first merge "Ġ t" makes id 252).
          A merge naming a token that is not in the vocabulary is an error, as in Hugging Face.
        - This class ranks merges by their new id, which is equivalent when ids grow with the merge order.
          SmolLM2's do: its 48,900 merges make exactly the 48,900 tokens after its 17 special tokens and
          235 single bytes, in order (the vocabulary has no token for 21 of the 256 bytes; see the class).
          A file whose ids do not follow its merge order raises ValueError.

        `pattern` defaults to GPT-2's split regex, which Hugging Face uses for `tokenizer.ggml.pre` values
        "smollm", "gpt2" and "default". (llama.cpp also splits digits one by one for "smollm"; SmolLM2's
        vocabulary has no token with two digits or a space before a digit, so that changes nothing.)

        >>> # tok = BPETokenizer.from_gguf_metadata(GGUFFile(data.smollm2_gguf_path()).metadata)
        >>> # tok.encode("Hello world")  ->  [19556, 905]
        """
        if not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a dict of GGUF metadata, got {type(metadata).__name__}")
        model = metadata.get("tokenizer.ggml.model")
        if model != "gpt2":
            what = {"llama": " (a SentencePiece tokenizer, which this course does not implement)"}.get(str(model), "")
            raise ValueError(
                f"expected a byte-level BPE tokenizer, tokenizer.ggml.model = 'gpt2'; found tokenizer.ggml.model = "
                f"{model!r}{what}"
            )
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
            if not isinstance(metadata.get(key), (list, tuple)):
                raise ValueError(f"the metadata has no list {key!r}, which a byte-level BPE tokenizer needs")
        pre = metadata.get("tokenizer.ggml.pre", "default")
        if pattern is None:
            if pre not in _GGUF_GPT2_REGEX_PRE:
                raise ValueError(
                    f"tokenizer.ggml.pre = {pre!r}: expected one of {sorted(_GGUF_GPT2_REGEX_PRE)}, which split text with "
                    f"GPT-2's regex; for another pre-tokenizer pass its regex as pattern="
                )
            pattern = "gpt2"
        tokens = list(metadata["tokenizer.ggml.tokens"])
        types = list(metadata.get("tokenizer.ggml.token_type") or [1] * len(tokens))
        if len(types) != len(tokens):
            raise ValueError(f"tokenizer.ggml.token_type has {len(types)} entries for {len(tokens)} tokens")

        b2u = bytes_to_unicode()
        alphabet = set(b2u.values())
        special: dict[str, int] = {}
        ids: dict[str, int] = {}  # the vocabulary, spelled in GPT-2's byte alphabet
        for i, (t, kind) in enumerate(zip(tokens, types)):
            if not isinstance(t, str):
                raise ValueError(f"tokenizer.ggml.tokens[{i}] is not a string: {t!r:.60}")
            spelled = set(t) <= alphabet
            if kind in (3, 4) and spelled:  # control / user-defined (Hugging Face: control tokens spelled in the alphabet)
                special[t] = i
            # like Hugging Face: a token written outside the byte alphabet is respelled from its UTF-8 bytes
            ids[t if spelled else "".join(b2u[b] for b in t.encode("utf-8"))] = i
        special_ids = set(special.values())
        byte_ids: list[int | None] = []
        for b in range(256):
            i = ids.get(b2u[b])
            byte_ids.append(None if i is None or i in special_ids else i)

        # merges: priority = position in the list (a repeated pair keeps its last position, as in Hugging Face)
        last_rank: dict[tuple[int, int], int] = {}
        result: dict[tuple[int, int], int] = {}
        for r, m in enumerate(metadata["tokenizer.ggml.merges"]):
            parts = m.split(" ") if isinstance(m, str) else []
            if len(parts) != 2:
                raise ValueError(f"tokenizer.ggml.merges[{r}] = {m!r:.60}: expected two tokens separated by one space")
            a, b = parts
            for t in (a, b, a + b):
                if t not in ids:
                    raise ValueError(
                        f"tokenizer.ggml.merges[{r}] = {m!r} names the token {t!r}, which is not in tokenizer.ggml.tokens"
                    )
            pair = (ids[a], ids[b])
            last_rank[pair] = r
            result[pair] = ids[a + b]
        merges: dict[tuple[int, int], int] = {}
        made_by: dict[int, tuple[int, int]] = {}
        prev = -1
        for pair in sorted(last_rank, key=last_rank.__getitem__):
            new = result[pair]
            if new in made_by:
                raise ValueError(
                    f"tokens {tokens[made_by[new][0]]!r}+{tokens[made_by[new][1]]!r} and {tokens[pair[0]]!r}+{tokens[pair[1]]!r} "
                    f"both make the token {tokens[new]!r}; this course's BPETokenizer needs one merge per token"
                )
            if new <= prev:
                raise ValueError(
                    f"merge {last_rank[pair]} ({tokens[pair[0]]!r} {tokens[pair[1]]!r}) makes id {new}, below the id {prev} "
                    f"made by an earlier merge: this BPETokenizer ranks merges by their new id, so it needs ids that "
                    f"follow the merge order"
                )
            merges[pair] = new
            made_by[new] = pair
            prev = new
        covered = special_ids | set(made_by) | {i for i in byte_ids if i is not None}
        orphans = [i for i in range(len(tokens)) if i not in covered]
        if orphans:
            raise ValueError(
                f"{len(orphans)} tokens are neither a single byte, nor made by a merge, nor special (first: id "
                f"{orphans[0]} = {tokens[orphans[0]]!r}); a BPETokenizer cannot hold them"
            )
        try:
            return cls(merges, special, pattern=pattern, byte_ids=byte_ids)
        except ValueError as exc:
            raise ValueError(f"the GGUF tokenizer is inconsistent: {exc}") from None

    # --- save / load -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer as versioned plain text (pattern, byte ids, special tokens, merges).

        Version 1 unless some byte has no token (then version 2, where such a byte is written "-").
        """
        import json

        path = Path(path)
        version = 2 if self._bytes_missing else 1  # the oldest version that can hold it, so v1 readers keep working
        lines = [f"{_FORMAT_HEADER} v{version}", "pattern " + json.dumps(self.pattern)]
        identity = self.byte_ids == list(range(256))
        ids = " ".join("-" if i is None else str(i) for i in self.byte_ids)
        lines.append("byte_ids identity" if identity else "byte_ids " + ids)
        lines.append(f"special {len(self.special_tokens)}")
        lines += [f"{i} {json.dumps(s)}" for s, i in self.special_tokens.items()]
        lines.append(f"merges {len(self.merges)}")
        lines += [f"{a} {b} {idx}" for (a, b), idx in self.merges.items()]
        lines.append("end")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        """Read a file written by `save`; a wrong version or a damaged file raises ValueError with the line number."""
        import json

        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not a BPETokenizer file (not UTF-8 text: {exc})") from None
        pos = 0

        def fail(msg: str) -> ValueError:
            return ValueError(f"{path}, line {pos + 1}: {msg}. The file is damaged or not written by BPETokenizer.save.")

        def line() -> str:
            nonlocal pos
            if pos >= len(lines):
                raise fail("unexpected end of file")
            pos += 1
            return lines[pos - 1]

        head = line()
        if not head.startswith(_FORMAT_HEADER + " v"):
            raise fail(f"expected the header {_FORMAT_HEADER + ' v1'!r} (or v{_FORMAT_VERSION}), got {head[:60]!r}")
        version = head[len(_FORMAT_HEADER) + 2 :]
        if version not in _FORMAT_VERSIONS_READ:
            raise ValueError(
                f"{path}: format version {version!r} is not supported; this course_lib reads versions {', '.join(_FORMAT_VERSIONS_READ)}"
            )
        try:
            key, _, value = line().partition(" ")
            if key != "pattern":
                raise fail(f"expected 'pattern', got {key!r}")
            pattern = json.loads(value)
            key, _, value = line().partition(" ")
            if key != "byte_ids":
                raise fail(f"expected 'byte_ids', got {key!r}")
            if value == "identity":
                byte_ids = None
            else:
                byte_ids = [None if x == "-" and version != "1" else int(x) for x in value.split()]
            key, _, value = line().partition(" ")
            if key != "special":
                raise fail(f"expected 'special', got {key!r}")
            special = {}
            for _ in range(int(value)):
                i, _, s = line().partition(" ")
                special[json.loads(s)] = int(i)
            key, _, value = line().partition(" ")
            if key != "merges":
                raise fail(f"expected 'merges', got {key!r}")
            merges = {}
            for _ in range(int(value)):
                a, b, idx = (int(x) for x in line().split(" "))
                merges[(a, b)] = idx
            if line() != "end":
                raise fail("expected 'end' (the file is longer or shorter than its counts say)")
        except ValueError as exc:
            if str(exc).startswith(str(path)):
                raise
            raise fail(f"cannot parse ({exc})") from None
        if any(l.strip() for l in lines[pos:]):
            raise fail("unexpected content after 'end'")
        try:
            return cls(merges, special, pattern=pattern, byte_ids=byte_ids)
        except ValueError as exc:
            raise ValueError(f"{path}: inconsistent tokenizer file: {exc}") from None

    def __repr__(self) -> str:
        pat = next((k for k, v in SPLIT_PATTERNS.items() if v == self.pattern), "custom" if self.pattern else None)
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, special_tokens={len(self.special_tokens)}, pattern={pat!r})"


def _fix_surrogates(text: str) -> str:
    """Lone surrogates cannot be UTF-8 encoded; like tiktoken, replace them with U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _load_tiktoken_ranks(name: str) -> dict[bytes, int]:
    from course_lib import data

    return data.tiktoken_ranks(name)


def _bpe_parts(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """tiktoken's rank-based BPE on one byte string, using only tokens ranked below `max_rank`."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best, best_i = max_rank, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1], max_rank)
            if r < best:
                best, best_i = r, i
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts


def recover_merges(ranks: dict[bytes, int]) -> tuple[dict[tuple[int, int], int], list[int]]:
    """From tiktoken's `bytes -> rank` table to `(merges, byte_ids)` for `BPETokenizer`.

    Each multi-byte token of rank r was made by merging two tokens of lower rank: if only one split of
    its bytes into two lower-ranked tokens exists, that is it; otherwise we run BPE on its bytes with the
    tokens below r and read off the last two parts.
    """
    byte_ids = []
    for b in range(256):
        r = ranks.get(bytes([b]))
        if r is None:
            raise ValueError(f"the ranks have no token for the single byte {b}; a byte-level BPE needs all 256")
        byte_ids.append(r)
    merges: dict[tuple[int, int], int] = {}
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) == 1:
            continue
        splits = []
        for i in range(1, len(token)):
            ra, rb = ranks.get(token[:i]), ranks.get(token[i:])
            if ra is not None and rb is not None and ra < rank and rb < rank:
                splits.append((ra, rb))
        if len(splits) != 1:
            parts = _bpe_parts(ranks, token, rank)
            if len(parts) != 2:
                raise ValueError(f"token {token!r} (rank {rank}) is not the merge of two lower-ranked tokens")
            splits = [(ranks[parts[0]], ranks[parts[1]])]
        merges[splits[0]] = rank
    return merges, byte_ids


def bpe_from_tiktoken(name: str = "cl100k_base") -> BPETokenizer:
    """GPT-4's (cl100k_base) or GPT-4o's (o200k_base) tokenizer as a course `BPETokenizer` (cached).

    >>> bpe_from_tiktoken("cl100k_base").encode("hello world")
    [15339, 1917]
    """
    tok = _TIKTOKEN_CACHE.get(name)
    if tok is None:
        tok = _TIKTOKEN_CACHE[name] = BPETokenizer.from_tiktoken(name)
    return tok


_TIKTOKEN_CACHE: dict[str, BPETokenizer] = {}


# ----------------------------------------------------------------------------------------------
# WordPiece (BERT).


def _is_bert_control(ch: str) -> bool:
    """Control, format, private-use (Cc, Cf, Co, Cs); unlike BERT's original Python code, Hugging Face's
    fast tokenizer keeps unassigned code points (Cn), which then become [UNK]."""
    if ch in "\t\n\r":
        return False
    cat = unicodedata.category(ch)
    return cat[0] == "C" and cat != "Cn"


def _is_bert_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_chinese_char(cp: int) -> bool:
    """CJK Unified Ideographs blocks (as in BERT); Japanese kana and Korean Hangul are not included."""
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


# Rust's char::is_whitespace (the Unicode White_Space property), used by Hugging Face's BERT pieces.
_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


class WordPieceTokenizer:
    """BERT's tokenizer: normalise, split on whitespace and punctuation, then greedy longest-match-first WordPiece.

    Pieces that continue a word start with `##`; a word with no segmentation becomes `[UNK]`.
    >>> tok = WordPieceTokenizer(["[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able"])
    >>> tok.tokenize("Unaffable")
    ['un', '##aff', '##able']

    See notebook 01.
    """

    def __init__(
        self,
        vocab: dict[str, int] | Iterable[str],
        unk_token: str = "[UNK]",
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        mask_token: str = "[MASK]",
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        max_input_chars_per_word: int = 100,
        continuing_subword_prefix: str = "##",
    ) -> None:
        self.vocab: dict[str, int] = dict(vocab) if isinstance(vocab, dict) else {t: i for i, t in enumerate(vocab)}
        if unk_token not in self.vocab:
            raise ValueError(f"the unknown token {unk_token!r} is not in the vocabulary")
        self.ids_to_tokens: dict[int, str] = {i: t for t, i in self.vocab.items()}
        self.unk_token, self.cls_token, self.sep_token = unk_token, cls_token, sep_token
        self.pad_token, self.mask_token = pad_token, mask_token
        self.special_tokens: dict[str, int] = {
            t: self.vocab[t] for t in (pad_token, unk_token, cls_token, sep_token, mask_token) if t in self.vocab
        }
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.max_input_chars_per_word = max_input_chars_per_word
        self.prefix = continuing_subword_prefix
        self._special_re = (
            regex.compile("(" + "|".join(regex.escape(t) for t in sorted(self.special_tokens, key=len, reverse=True)) + ")")
            if self.special_tokens
            else None
        )
        self._cache: dict[str, list[str]] = {}

    @classmethod
    def from_vocab_file(cls, path: str | os.PathLike, **kwargs) -> "WordPieceTokenizer":
        """Load a BERT `vocab.txt` (one token per line; the line number is the id)."""
        tokens = Path(path).read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        return cls({t: i for i, t in enumerate(tokens)}, **kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # the three stages ---------------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        """Clean control characters, space out Chinese characters, strip accents and lower-case.

        >>> minilm_wordpiece().normalize("Héllo 世界")
        'hello  世  界 '
        """
        out = []
        for ch in _check_text(text):
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_bert_control(ch):
                continue
            if ch in _WHITE_SPACE:
                out.append(" ")
            elif self.tokenize_chinese_chars and _is_chinese_char(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        text = "".join(out)
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        if self.lowercase:  # character by character, as Hugging Face does: no final-sigma rule
            text = "".join(c.lower() for c in text) if not text.isascii() else text.lower()
        return text

    @staticmethod
    def pre_tokenize(text: str) -> list[str]:
        """Split on whitespace (dropped) and punctuation (kept, one mark per word).

        >>> WordPieceTokenizer.pre_tokenize("hello, world!")
        ['hello', ',', 'world', '!']
        """
        words, cur = [], []
        for ch in text:
            if ch in _WHITE_SPACE:
                if cur:
                    words.append("".join(cur))
                    cur = []
            elif _is_bert_punctuation(ch):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(ch)
            else:
                cur.append(ch)
        if cur:
            words.append("".join(cur))
        return words

    def wordpiece(self, word: str) -> list[str]:
        """Greedy longest-match-first split of one word; `[UNK]` if some part matches nothing.

        >>> minilm_wordpiece().wordpiece("tokenization")
        ['token', '##ization']
        """
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces, start, n, vocab = [], 0, len(word), self.vocab
        while start < n:
            end = n
            while end > start:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in vocab:
                    break
                end -= 1
            else:
                pieces = [self.unk_token]
                break
            pieces.append(piece)
            start = end
        self._cache[word] = pieces
        return pieces

    # public API --------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """Text to WordPiece strings (no [CLS]/[SEP]); special-token strings in the text are kept whole."""
        _check_text(text)
        parts = self._special_re.split(text) if self._special_re else [text]
        out: list[str] = []
        for i, part in enumerate(parts):
            if i % 2:
                out.append(part)
                continue
            for word in self.pre_tokenize(self.normalize(part)):
                out.extend(self.wordpiece(word))
        return out

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Text to ids, with `[CLS] ... [SEP]` around them by default (like Hugging Face's BERT tokenizer).

        >>> minilm_wordpiece().encode("Hello world!")
        [101, 7592, 2088, 999, 102]
        """
        ids = [self.vocab[t] for t in self.tokenize(text)]
        if add_special_tokens:
            ids = [self.vocab[self.cls_token]] + ids + [self.vocab[self.sep_token]]
        return ids

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Ids to token strings; unknown ids raise ValueError."""
        out = []
        for i in _check_ids(ids):
            t = self.ids_to_tokens.get(i)
            if t is None:
                raise ValueError(f"unknown token id {i}; valid ids are 0..{len(self.vocab) - 1}")
            out.append(t)
        return out

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Ids to text: `##` pieces glued to the previous piece, others joined by spaces (case and accents are lost)."""
        words: list[str] = []
        for t in self.convert_ids_to_tokens(ids):
            if skip_special_tokens and t in self.special_tokens and t != self.unk_token:
                continue
            if t.startswith(self.prefix) and words:
                words[-1] += t[len(self.prefix) :]
            else:
                words.append(t)
        return " ".join(words)

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase}, strip_accents={self.strip_accents})"


def minilm_wordpiece() -> WordPieceTokenizer:
    """The course's WordPiece tokenizer loaded with MiniLM's (uncased BERT) `vocab.txt` (cached)."""
    tok = _TIKTOKEN_CACHE.get("__minilm__")
    if tok is None:
        from course_lib import data

        tok = WordPieceTokenizer.from_vocab_file(Path(data.minilm_path()) / "vocab.txt")
        _TIKTOKEN_CACHE["__minilm__"] = tok
    return tok
