"""GGUF, the one-file model format of llama.cpp, read from scratch with numpy. See notebook 13.

A GGUF file is, in this order (all little-endian):

    header        b"GGUF", version (uint32), tensor count (uint64), metadata count (uint64)
    metadata      key/value pairs: key = string, value type (uint32), value
    tensor infos  per tensor: name, number of dims (uint32), dims (uint64 each, innermost first),
                  ggml type id (uint32), offset (uint64, from the start of the data section)
    padding       zeros up to a multiple of `general.alignment` (32 if the key is absent)
    tensor data   each tensor's bytes, each starting at a multiple of the alignment

A string is a uint64 byte count followed by UTF-8 bytes; an array is an element type (uint32), a uint64
count, then the elements. Quantized tensors are stored in blocks of 32 numbers that share a scale.

What is here:
- `GGUFFile`: parses the header, every metadata value and the tensor infos, and maps the file into
  memory once (`numpy.memmap`), so `raw(name)` is a view of a tensor's bytes with no copy and
  `tensor(name)` dequantizes it to float32.
- `dequantize` / `quantize`: the block formats F32, F16, Q8_0, Q4_0 and Q4_1 (`GGUF_TYPES`), vectorised over
  all blocks at once and bit-for-bit equal to the `gguf` package of llama.cpp (tests/test_gguf.py).
- `permute_qk` / `unpermute_qk`: the row order of the attention query/key weights that llama.cpp's
  converter uses for Llama models, and its inverse (read `unpermute_qk`'s docstring).

What it leaves out: writing GGUF files, the k-quants (Q4_K, Q6_K, ...) and i-quants, Q5_0/Q5_1/Q8_1/BF16,
big-endian files and GGUF version 1 (2023, 32-bit lengths); each of them is a clear error, not a silent
misreading.
"""

from __future__ import annotations

import difflib
import os
import struct
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

__all__ = [
    "GGUF_MAGIC",
    "GGUF_TYPES",
    "GGMLType",
    "TensorInfo",
    "GGUFFile",
    "dequantize",
    "quantize",
    "permute_qk",
    "unpermute_qk",
]

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)  # version 2 and 3 differ only in that 3 allows big-endian files (not read here)
DEFAULT_ALIGNMENT = 32
_HEADER_BYTES = 24  # magic, version, tensor count, metadata count


class GGMLType(NamedTuple):
    """A tensor storage type: `block_size` numbers are stored in `block_bytes` bytes.

    >>> GGUF_TYPES["Q4_1"].bits_per_weight
    5.0
    """

    name: str
    type_id: int  # the ggml type id written in the file
    block_size: int
    block_bytes: int
    layout: str  # one block, byte by byte

    @property
    def bits_per_weight(self) -> float:
        """Storage cost of one number, scales included: 8 * block_bytes / block_size."""
        return 8 * self.block_bytes / self.block_size


#: The tensor types this module reads, by name.
GGUF_TYPES: dict[str, GGMLType] = {
    "F32": GGMLType("F32", 0, 1, 4, "float32"),
    "F16": GGMLType("F16", 1, 1, 2, "float16"),
    "Q4_0": GGMLType("Q4_0", 2, 32, 18, "fp16 scale d, 16 bytes of 4-bit q (low nibbles first): x = d * (q - 8)"),
    "Q4_1": GGMLType("Q4_1", 3, 32, 20, "fp16 scale d, fp16 minimum m, 16 bytes of 4-bit q: x = d * q + m"),
    "Q8_0": GGMLType("Q8_0", 8, 32, 34, "fp16 scale d, 32 int8 q: x = d * q"),
}
_TYPES_BY_ID = {t.type_id: t for t in GGUF_TYPES.values()}
# Other ggml type ids, only to name them in error messages.
_OTHER_TYPE_NAMES = {
    6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
    16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
    23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16",
}  # fmt: skip

# Metadata value types: id -> (name, struct format of one scalar; "" for string and array).
_VALUE_TYPES = {
    0: ("uint8", "B"), 1: ("int8", "b"), 2: ("uint16", "H"), 3: ("int16", "h"),
    4: ("uint32", "I"), 5: ("int32", "i"), 6: ("float32", "f"), 7: ("bool", "?"),
    8: ("string", ""), 9: ("array", ""), 10: ("uint64", "Q"), 11: ("int64", "q"), 12: ("float64", "d"),
}  # fmt: skip
_STRING, _ARRAY = 8, 9
_NUMPY_FORMAT = {"B": "u1", "b": "i1", "H": "<u2", "h": "<i2", "I": "<u4", "i": "<i4", "f": "<f4", "?": "?",
                 "Q": "<u8", "q": "<i8", "d": "<f8"}  # fmt: skip


class TensorInfo(NamedTuple):
    """Where one tensor lives in the file; `shape` is in numpy / PyTorch order (a Linear weight is (out, in)).

    >>> TensorInfo("blk.0.attn_q.weight", (576, 576), "Q4_1", 33806656, 207360).shape
    (576, 576)
    """

    name: str
    shape: tuple[int, ...]
    qtype: str
    offset: int  # absolute byte offset in the file
    nbytes: int


def _type_named(qtype: str) -> GGMLType:
    if not isinstance(qtype, str):
        raise TypeError(f"qtype must be a type name such as 'Q4_1', got {type(qtype).__name__} {qtype!r}")
    if qtype not in GGUF_TYPES:
        raise ValueError(f"unsupported tensor type {qtype!r}; supported: {', '.join(GGUF_TYPES)}")
    return GGUF_TYPES[qtype]


# --------------------------------------------------------------------------- reading the file


class _Cursor:
    """Reads little-endian values from a buffer, checking every read against the end of the file."""

    def __init__(self, buf: memoryview, path: Path):
        self.buf, self.path, self.pos, self.size = buf, path, 0, len(buf)

    def need(self, n: int, what: str) -> None:
        if self.pos + n > self.size:
            raise ValueError(
                f"{self.path} is truncated: {what} needs bytes {self.pos}..{self.pos + n} "
                f"but the file has {self.size} bytes"
            )

    def scalar(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += n
        return value

    def length(self, count: int, item_bytes: int, what: str) -> None:
        """Check that `count` items of at least `item_bytes` bytes each fit in the rest of the file."""
        if self.pos + count * item_bytes > self.size:
            raise ValueError(
                f"{self.path} is truncated or damaged: {what} has length {count}, which needs at least "
                f"bytes {self.pos}..{self.pos + count * item_bytes} but the file has {self.size} bytes"
            )

    def string(self, what: str) -> str:
        n = self.scalar("Q", f"the length of {what}")
        self.length(n, 1, what)
        start, self.pos = self.pos, self.pos + n
        try:
            return str(self.buf[start : self.pos], "utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{self.path}: {what} at byte {start} is not valid UTF-8 ({exc.reason})") from None

    def value(self, type_id: int, what: str) -> Any:
        if type_id not in _VALUE_TYPES:
            raise ValueError(
                f"{self.path}: {what} has value type {type_id} at byte {self.pos}; "
                f"GGUF value types are 0..12 ({', '.join(name for name, _ in _VALUE_TYPES.values())})"
            )
        if type_id == _STRING:
            return self.string(what)
        if type_id == _ARRAY:
            return self.array(what)
        return self.scalar(_VALUE_TYPES[type_id][1], what)

    def array(self, what: str) -> list:
        item_type = self.scalar("I", f"the element type of {what}")
        count = self.scalar("Q", f"the length of {what}")
        if item_type not in _VALUE_TYPES:
            raise ValueError(f"{self.path}: {what} is an array of value type {item_type}; GGUF value types are 0..12")
        fmt = _VALUE_TYPES[item_type][1]
        if fmt:  # numbers and bools: one numpy read of the whole array
            dtype = np.dtype(_NUMPY_FORMAT[fmt])
            self.length(count, dtype.itemsize, what)
            values = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).tolist()
            self.pos += count * dtype.itemsize
            return values
        self.length(count, 8, what)  # every string or array starts with an 8-byte length
        if item_type == _ARRAY:
            return [self.array(f"{what}[{i}]") for i in range(count)]
        # Arrays of strings (a 49,152-token vocabulary): the string reader inlined, for speed.
        buf, size, pos, unpack, out = self.buf, self.size, self.pos, struct.Struct("<Q").unpack_from, []
        for i in range(count):
            if pos + 8 > size:
                self.pos = pos
                self.need(8, f"the length of {what}[{i}]")
            (n,) = unpack(buf, pos)
            pos += 8
            if pos + n > size:
                self.pos = pos
                self.length(n, 1, f"{what}[{i}]")
            try:
                out.append(str(buf[pos : pos + n], "utf-8"))
            except UnicodeDecodeError as exc:
                raise ValueError(f"{self.path}: {what}[{i}] at byte {pos} is not valid UTF-8 ({exc.reason})") from None
            pos += n
        self.pos = pos
        return out


class GGUFFile:
    """A GGUF file: its metadata, its tensor infos, and its tensors through one memory map.

    >>> f = GGUFFile(smollm2_gguf_path())  # from course_lib.data              # doctest: +SKIP
    >>> f.metadata["llama.attention.head_count"], f.tensors["blk.0.attn_q.weight"].shape  # doctest: +SKIP
    (9, (576, 576))

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for anything else wrong:
    not GGUF, an unsupported version or tensor type, a truncated or damaged file. See notebook 13.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no GGUF file at {self.path}" + (" (it is a folder)" if self.path.is_dir() else ""))
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            start = f.read(_HEADER_BYTES)
        if len(start) >= 4 and start[:4] != GGUF_MAGIC:
            raise ValueError(f"{self.path} is not a GGUF file: it starts with {start[:4]!r}, expected {GGUF_MAGIC!r}")
        if size < _HEADER_BYTES:
            raise ValueError(
                f"{self.path} is truncated: the header needs bytes 0..{_HEADER_BYTES} but the file has {size} bytes"
            )
        self._mm: np.memmap | None = np.memmap(self.path, dtype=np.uint8, mode="r")
        buf = memoryview(self._mm)
        try:
            self._parse(_Cursor(buf, self.path))
        finally:
            try:
                buf.release()
            except BufferError:  # a view still in use (only while an error propagates): the GC frees it
                pass

    def _parse(self, cur: _Cursor) -> None:
        cur.pos = 4
        self.version: int = cur.scalar("I", "the version")
        if self.version not in SUPPORTED_VERSIONS:
            swapped = int.from_bytes(self.version.to_bytes(4, "little"), "big")
            if swapped in SUPPORTED_VERSIONS:
                hint = f"; read big-endian it is {swapped}: big-endian GGUF files are not supported"
            elif self.version == 1:
                hint = "; version 1 (2023) used 32-bit lengths and is not supported"
            else:
                hint = ""
            raise ValueError(
                f"{self.path}: unsupported GGUF version {self.version}; this reader reads versions "
                f"{' and '.join(map(str, SUPPORTED_VERSIONS))}{hint}"
            )
        n_tensors = cur.scalar("Q", "the tensor count")
        n_kv = cur.scalar("Q", "the metadata count")

        self.metadata: dict[str, Any] = {}
        for i in range(n_kv):
            key = cur.string(f"the key of metadata entry {i}")
            type_id = cur.scalar("I", f"the value type of metadata {key!r}")
            if key in self.metadata:
                raise ValueError(f"{self.path}: metadata key {key!r} appears twice")
            self.metadata[key] = cur.value(type_id, f"metadata {key!r}")

        align = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if type(align) is not int or align <= 0 or align & (align - 1):
            raise ValueError(f"{self.path}: general.alignment must be a power of two, got {align!r}")
        self.alignment: int = align

        infos = []  # (name, ne, type, relative offset)
        for i in range(n_tensors):
            name = cur.string(f"the name of tensor {i}")
            n_dims = cur.scalar("I", f"the number of dimensions of tensor {name!r}")
            cur.length(n_dims, 8, f"the dimension list of tensor {name!r}")
            ne = struct.unpack_from(f"<{n_dims}Q", cur.buf, cur.pos)
            cur.pos += 8 * n_dims
            type_id = cur.scalar("I", f"the type of tensor {name!r}")
            rel = cur.scalar("Q", f"the offset of tensor {name!r}")
            infos.append((name, ne, type_id, rel))
        self.data_offset: int = -(-cur.pos // self.alignment) * self.alignment  # round up

        self.tensors: dict[str, TensorInfo] = {}
        for name, ne, type_id, rel in infos:
            self.tensors[name] = self._tensor_info(name, ne, type_id, rel, cur.size)

    def _tensor_info(self, name: str, ne: Sequence[int], type_id: int, rel: int, file_size: int) -> TensorInfo:
        if name in self.tensors:
            raise ValueError(f"{self.path}: two tensors are named {name!r}")
        if type_id not in _TYPES_BY_ID:
            known = f" ({_OTHER_TYPE_NAMES[type_id]})" if type_id in _OTHER_TYPE_NAMES else ""
            supported = ", ".join(f"{t.name} ({t.type_id})" for t in GGUF_TYPES.values())
            raise ValueError(
                f"{self.path}: tensor {name!r} has ggml type id {type_id}{known}, which this reader does not "
                f"support; supported types: {supported}"
            )
        t = _TYPES_BY_ID[type_id]
        n = int(np.prod(ne, dtype=object)) if ne else 1
        if ne and ne[0] % t.block_size:
            raise ValueError(
                f"{self.path}: tensor {name!r} has rows of {ne[0]} numbers, not a multiple of the "
                f"{t.name} block size {t.block_size}"
            )
        if rel % self.alignment:
            raise ValueError(
                f"{self.path}: tensor {name!r} starts at data offset {rel}, not a multiple of the alignment {self.alignment}"
            )
        offset, nbytes = self.data_offset + rel, n // t.block_size * t.block_bytes
        if offset + nbytes > file_size:
            raise ValueError(
                f"{self.path} is truncated: tensor {name!r} needs bytes {offset}..{offset + nbytes} "
                f"but the file has {file_size} bytes"
            )
        return TensorInfo(name, tuple(int(d) for d in reversed(ne)), t.name, offset, nbytes)

    # ----------------------------------------------------------------------- tensors

    def info(self, name: str) -> TensorInfo:
        """The TensorInfo of one tensor; a KeyError that suggests close names if there is none."""
        if name not in self.tensors:
            close = difflib.get_close_matches(name, self.tensors, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise KeyError(f"no tensor named {name!r} in {self.path} ({len(self.tensors)} tensors){hint}")
        return self.tensors[name]

    def raw(self, name: str) -> np.ndarray:
        """The stored bytes of one tensor: a read-only uint8 view into the memory map, no copy.

        >>> f.raw("blk.0.attn_q.weight").nbytes  # 576*576/32 blocks of 20 bytes  # doctest: +SKIP
        207360
        """
        t = self.info(name)
        if self._mm is None:
            raise ValueError(f"{self.path} is closed")
        return self._mm[t.offset : t.offset + t.nbytes].view(np.ndarray)

    def tensor(self, name: str) -> np.ndarray:
        """One tensor dequantized to a new float32 array of shape `tensors[name].shape`.

        >>> f.tensor("blk.0.attn_q.weight").dtype  # doctest: +SKIP
        dtype('float32')
        """
        t = self.info(name)
        return dequantize(self.raw(name), t.qtype, t.shape)

    def quantization_summary(self) -> dict[str, int]:
        """How many tensors are stored in each type, most common first.

        >>> f.quantization_summary()  # doctest: +SKIP
        {'Q4_1': 210, 'F32': 61, 'Q8_0': 1}
        """
        counts: dict[str, int] = {}
        for t in self.tensors.values():
            counts[t.qtype] = counts.get(t.qtype, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def close(self) -> None:
        """Drop the memory map (views already returned by `raw` keep it alive until they are gone)."""
        self._mm = None

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        types = ", ".join(f"{n} {q}" for q, n in self.quantization_summary().items())
        return (
            f"GGUFFile('{self.path}', version={self.version}, {len(self.metadata)} metadata keys, "
            f"{len(self.tensors)} tensors: {types or 'none'})"
        )


# --------------------------------------------------------------------------- block formats


def _blocks(raw: np.ndarray, qtype: str, shape: Sequence[int]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Check raw against qtype and shape; returns raw as (n_blocks, block_bytes) and the shape as a tuple."""
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8:
        got = f"{raw.dtype} array" if isinstance(raw, np.ndarray) else type(raw).__name__
        raise TypeError(f"raw must be a uint8 numpy array of stored bytes (use .view(np.uint8)), got {got}")
    t = _type_named(qtype)
    shape = tuple(int(d) for d in shape)
    n = int(np.prod(shape, dtype=np.int64))
    if shape and shape[-1] % t.block_size:
        raise ValueError(f"{qtype} stores rows in blocks of {t.block_size}; shape {shape} has rows of {shape[-1]}")
    expected = n // t.block_size * t.block_bytes
    if raw.size != expected:
        raise ValueError(f"a {qtype} tensor of shape {shape} takes {expected} bytes, got {raw.size}")
    return raw.reshape(-1, t.block_bytes), shape


def _fp16(column: np.ndarray) -> np.ndarray:
    """Two bytes per row (n_blocks, 2) read as float16 and widened to float32: shape (n_blocks, 1)."""
    return column.view("<f2").astype(np.float32)


def dequantize(raw: np.ndarray, qtype: str, shape: Sequence[int]) -> np.ndarray:
    """Stored bytes -> a new float32 array of `shape`, all blocks at once (same bits as llama.cpp's gguf package).

    >>> dequantize(quantize(np.arange(32, dtype=np.float32), "Q8_0"), "Q8_0", (32,))[:4]  # step d = 31/127
    array([0.       , 0.9765625, 1.953125 , 2.9296875], dtype=float32)

    See notebook 13.
    """
    blocks, shape = _blocks(raw, qtype, shape)
    if qtype == "F32":
        return blocks.view("<f4").reshape(shape).astype(np.float32)  # a copy: writable, not tied to the file
    if qtype == "F16":
        return blocks.view("<f2").reshape(shape).astype(np.float32)
    n = blocks.shape[0]
    out = np.empty((n, 32), dtype=np.float32)
    if qtype == "Q8_0":
        out[:] = blocks[:, 2:].view(np.int8)
        out *= _fp16(blocks[:, 0:2])  # x = d * q
    elif qtype == "Q4_0":
        qs = blocks[:, 2:]
        out[:, :16], out[:, 16:] = qs & 0x0F, qs >> 4  # element j in the low nibble of byte j, j+16 in the high one
        out -= 8
        out *= _fp16(blocks[:, 0:2])  # x = d * (q - 8)
    else:  # Q4_1
        qs = blocks[:, 4:]
        out[:, :16], out[:, 16:] = qs & 0x0F, qs >> 4
        out *= _fp16(blocks[:, 0:2])
        out += _fp16(blocks[:, 2:4])  # x = d * q + m, rounded to float32 after the product and after the sum
    return out.reshape(shape)


def _round_half_away(v: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, halves away from zero (C's roundf, which ggml uses), exactly."""
    t = np.trunc(v)
    return np.where(np.abs(v - t) == 0.5, t + np.sign(v), np.rint(v))


def _inverse(d: np.ndarray) -> np.ndarray:
    """1/d in float32, and 0 where d is 0 (a block of zeros)."""
    inv = np.zeros_like(d)
    np.divide(np.float32(1), d, out=inv, where=d != 0)
    return inv


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """(n, 32) values 0..15 -> (n, 16) bytes: element j in the low nibble of byte j, element j+16 in the high one."""
    return q[:, :16] | (q[:, 16:] << 4)


def quantize(x: np.ndarray, qtype: str) -> np.ndarray:
    """Numbers -> stored bytes (uint8, shape (*x.shape[:-1], bytes per row)), rounding as llama.cpp does.

    Q8_0: d = max|x| / 127, q = round(x / d). Q4_0: d = (the x of largest |x|) / -8, q = trunc(x / d + 8.5)
    clipped to 0..15. Q4_1: d = (max - min) / 15, m = min, q = trunc((x - m) / d + 0.5). d and m are
    stored as float16, q is computed with the float32 d and m. F16 rounds straight from x's dtype.

    >>> quantize(np.ones((2, 64), dtype=np.float32), "Q4_1").shape  # 2 rows of 2 blocks of 20 bytes
    (2, 40)

    See notebook 13.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"x must be an array of numbers, got dtype {x.dtype}")
    t = _type_named(qtype)
    if x.ndim == 0 or x.shape[-1] % t.block_size:
        raise ValueError(f"{qtype} stores rows in blocks of {t.block_size}; x has shape {x.shape}")
    out_shape = (*x.shape[:-1], x.shape[-1] // t.block_size * t.block_bytes)
    if qtype in ("F32", "F16"):
        return np.ascontiguousarray(x.astype("<f4" if qtype == "F32" else "<f2")).view(np.uint8).reshape(out_shape)
    blocks = x.astype(np.float32).reshape(-1, 32)
    if qtype == "Q8_0":
        d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)
        q = _round_half_away(blocks * _inverse(d)).astype(np.int8).view(np.uint8)
        parts = [d.astype("<f2").view(np.uint8), q]
    elif qtype == "Q4_0":
        i = np.abs(blocks).argmax(axis=1)[:, None]  # first of the largest |x|: its sign is kept
        d = np.take_along_axis(blocks, i, axis=1) / np.float32(-8)
        q = np.trunc(blocks * _inverse(d) + np.float32(8.5)).astype(np.uint8).clip(0, 15)
        parts = [d.astype("<f2").view(np.uint8), _pack_nibbles(q)]
    else:  # Q4_1
        lo, hi = blocks.min(axis=1, keepdims=True), blocks.max(axis=1, keepdims=True)
        d = (hi - lo) / np.float32(15)
        q = np.trunc((blocks - lo) * _inverse(d) + np.float32(0.5)).astype(np.uint8).clip(0, 15)
        parts = [d.astype("<f2").view(np.uint8), lo.astype("<f2").view(np.uint8), _pack_nibbles(q)]
    return np.concatenate(parts, axis=1).reshape(out_shape)


# --------------------------------------------------------------------------- Llama's query/key row order


def _check_qk(w: Any, n_heads: int) -> tuple[int, ...]:
    shape = tuple(getattr(w, "shape", ()))
    if not shape:
        raise TypeError(f"w must be a numpy array or torch tensor with at least one dimension, got {type(w).__name__}")
    if isinstance(n_heads, bool) or not isinstance(n_heads, int) or n_heads <= 0:
        raise ValueError(f"n_heads must be a positive int, got {n_heads!r}")
    if shape[0] % (2 * n_heads):
        raise ValueError(
            f"w has {shape[0]} rows, which is not n_heads = {n_heads} heads of an even head_dim; "
            "for attn_k pass the number of key/value heads"
        )
    return shape


def permute_qk(w: Any, n_heads: int) -> Any:
    """Hugging Face row order -> llama.cpp's: per head, rows (0, hd/2, 1, hd/2+1, ...). Inverse of `unpermute_qk`.

    The same reshape as llama.cpp's convert_hf_to_gguf.py (LlamaModel.permute).

    >>> permute_qk(np.arange(8), 2)  # 2 heads of head_dim 4
    array([0, 2, 1, 3, 4, 6, 5, 7])
    """
    shape = _check_qk(w, n_heads)
    return w.reshape(n_heads, 2, shape[0] // n_heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def unpermute_qk(w: Any, n_heads: int) -> Any:
    """llama.cpp's row order of a Llama attn_q / attn_k weight -> Hugging Face's, for a numpy array or torch tensor.

    Why the rows are permuted: RoPE rotates the features of each query and key head in pairs, each pair by
    its own angle. Hugging Face's Llama pairs feature i with feature i + head_dim/2 (`rotate_half`, the
    two halves of the head); llama.cpp rotates neighbours (0, 1), (2, 3), ... (`apply_rotary(...,
    interleaved=True)`). To make llama.cpp compute exactly what the Hugging Face model computes, the
    converter reorders the output rows of the query and key projections within each head, so that the
    rows that made features i and i + head_dim/2 become neighbours 2i and 2i+1:

        Hugging Face head rows   0 1 2 ... 31 | 32 33 ... 63
        llama.cpp head rows      0 32 1 33 2 34 ... 31 63

    Both then rotate the same pairs by the same angles; only the order of the features differs, and a
    dot product q . k does not depend on the order, so the attention scores are the same. The values,
    the output projection and the MLP are not rotated, so their weights are stored as they are.

    In code, per head: permute = reshape(2, head_dim/2).swapaxes -> (head_dim/2, 2); this function undoes it
    with reshape(n_heads, head_dim/2, 2, ...).swapaxes(1, 2). Pass the number of QUERY heads for attn_q
    (9 for SmolLM2) and the number of KEY/VALUE heads for attn_k (3 for SmolLM2). Use it to run a GGUF
    checkpoint with Hugging Face-style (half-split) RoPE; with interleaved RoPE use the stored rows as
    they are. transformers' GGUF loader does the same (transformers/modeling_gguf_pytorch_utils.py,
    LlamaTensorProcessor._reverse_permute_weights).

    >>> unpermute_qk(np.array([0, 2, 1, 3, 4, 6, 5, 7]), 2)
    array([0, 1, 2, 3, 4, 5, 6, 7])

    See notebook 13.
    """
    shape = _check_qk(w, n_heads)
    return w.reshape(n_heads, shape[0] // n_heads // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)
