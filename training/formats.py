"""Byte-level readers for the data files: Hoda `.cdb` and `.mat`, IDX (`.gz`), and the IMDB parquet.

Each reader takes a path, returns numpy arrays, and raises `FormatError` saying what is wrong with the bytes.
They know nothing about data roots, caches or the fix to offer: `training.data` adds the file name and the fix.
"""
import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.io


class FormatError(ValueError):
    """The file's bytes are not what its format promises (truncated, wrong magic number, missing column)."""


# ---------------------------------------------------------------------------------------------------- Hoda .cdb
# Little-endian, 1,024 bytes: year, month, day, height, width (0 and 0: every record carries its own size), record
# count, 128 per-label counts, image type (0 binary, 1 grey), 256 bytes of comments, 245 reserved.
CDB_HEADER = struct.Struct("<HBBBBI128IB256s245x")
assert CDB_HEADER.size == 1024
FF = b"\xff" * 256  # ink for one run (a run length is one byte, so at most 255)


@dataclass(frozen=True)
class CdbHeader:
    year: int
    month: int
    day: int
    height: int
    width: int
    count: int
    label_counts: tuple[int, ...]
    image_type: int
    comment: str


def cdb_header(data: bytes) -> CdbHeader:
    if len(data) < CDB_HEADER.size:
        raise FormatError(f"only {len(data)} bytes, shorter than the {CDB_HEADER.size}-byte .cdb header")
    year, month, day, height, width, count, *rest = CDB_HEADER.unpack_from(data)
    label_counts, image_type, comment = tuple(rest[:128]), rest[128], rest[129]
    if image_type not in (0, 1):
        raise FormatError(f"image type {image_type} in the header, expected 0 (binary) or 1 (grey)")
    comment = comment.split(b"\0", 1)[0].decode("latin-1")
    return CdbHeader(year, month, day, height, width, count, label_counts, image_type, comment)


def read_cdb(path) -> tuple[list[np.ndarray], np.ndarray]:
    """All records of a `.cdb` file: uint8 images (H×W; binary ones as 0 background / 255 ink) and int64 labels.

    A record is 0xFF, the label byte, width and height bytes (only when the header's size is 0×0), a uint16 byte
    count, then the pixels. The record count and per-label counts in the header are checked against the records,
    so a truncated or spliced file fails here instead of training on fewer samples.
    """
    data = Path(path).read_bytes()
    head = cdb_header(data)
    sized = head.height == 0 or head.width == 0  # records carry their own width and height
    images, labels = [], np.zeros(head.count, np.int64)
    decode = _binary_rows if head.image_type == 0 else _grey
    off = CDB_HEADER.size
    for i in range(head.count):
        meta = 6 if sized else 4
        if off + meta > len(data):
            raise FormatError(f"truncated: file ends in record {i + 1} of {head.count}")
        if data[off] != 0xFF:
            raise FormatError(f"record {i + 1} at byte {off} starts with {data[off]:#04x}, not 0xff")
        labels[i] = data[off + 1]
        w, h = (data[off + 2], data[off + 3]) if sized else (head.width, head.height)
        (nbytes,) = struct.unpack_from("<H", data, off + meta - 2)
        start, off = off + meta, off + meta + nbytes
        if off > len(data):
            raise FormatError(f"truncated: file ends in record {i + 1} of {head.count}")
        try:
            images.append(decode(data[start:off], h, w))
        except FormatError as e:
            raise FormatError(f"record {i + 1} of {head.count}: {e}") from None
    if off != len(data):
        raise FormatError(f"{len(data) - off} bytes after the last of the header's {head.count} records")
    counts = np.bincount(labels, minlength=128)
    if len(counts) > 128 or tuple(counts.tolist()) != head.label_counts:
        raise FormatError("the per-label counts in the header do not match the records")
    return images, labels


def _binary_rows(buf: bytes, h: int, w: int) -> np.ndarray:
    """Run-length rows: byte runs alternate background and ink, each row starting with background (a run may be 0)."""
    out = bytearray(h * w)
    p = 0
    for y in range(h):
        x, ink, row = 0, False, y * w
        while x < w:
            if p >= len(buf):
                raise FormatError(f"runs end in row {y + 1} of {h}")
            r = buf[p]
            p += 1
            if ink:
                out[row + x:row + x + r] = FF[:r]
            x += r
            ink = not ink
        if x > w:
            raise FormatError(f"row {y + 1} runs add up to {x}, more than the width {w}")
    if p != len(buf):
        raise FormatError(f"byte count is {len(buf)} but the rows use {p}")
    return np.frombuffer(bytes(out), np.uint8).reshape(h, w)


def _grey(buf: bytes, h: int, w: int) -> np.ndarray:
    # One byte per pixel, row by row like the binary rows (the original MATLAB reader's reshape(...)' order).
    if len(buf) != h * w:
        raise FormatError(f"grey record has {len(buf)} bytes for a {h}x{w} image")
    return np.frombuffer(buf, np.uint8).reshape(h, w).copy()


# ---------------------------------------------------------------------------------------------------- Hoda .mat
def read_hoda_mat(path) -> tuple[list[np.ndarray], np.ndarray]:
    """`Data_hoda_full.mat`: MATLAB cell array `Data` (uint8 0/255 images of varying size) and `labels`."""

    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises a zoo of types (MatReadError, ValueError, zlib.error...) for bad bytes
        raise FormatError(f"not a readable MATLAB file ({first_line(e)})") from None
    for key in ("Data", "labels"):
        if key not in mat:
            raise FormatError(f"no variable {key!r} (has {', '.join(k for k in mat if not k.startswith('__'))})")
    cells, labels = mat["Data"].ravel(), mat["labels"].ravel().astype(np.int64)
    if len(cells) != len(labels):
        raise FormatError(f"{len(cells)} images but {len(labels)} labels")
    images = [np.asarray(c, dtype=np.uint8) for c in cells]
    if any(im.ndim != 2 for im in images):
        raise FormatError("a cell of `Data` is not a 2-D image")
    return images, labels


# ---------------------------------------------------------------------------------------------------- IDX (.gz)
def read_idx(path, ndim: int) -> np.ndarray:
    """A gzip'ed IDX file of uint8 (magic 0x00000800 + ndim), checked against its own dimensions."""
    try:
        with gzip.open(path) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise FormatError(f"not a readable gzip file ({e})") from None
    want = 0x0800 | ndim
    magic = struct.unpack_from(">I", data)[0] if len(data) >= 4 else None
    if magic != want:
        raise FormatError(f"bad magic number {magic:#010x}, expected {want:#010x} (IDX uint8, {ndim}-D)"
                          if magic is not None else f"only {len(data)} bytes, too short for an IDX header")
    if len(data) < 4 + 4 * ndim:
        raise FormatError(f"only {len(data)} bytes, too short for a {ndim}-D IDX header")
    dims = struct.unpack_from(f">{ndim}I", data, 4)
    body = memoryview(data)[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise FormatError(f"header says {'x'.join(map(str, dims))} = {int(np.prod(dims))} bytes, body has {len(body)}")
    return np.frombuffer(body, np.uint8).reshape(dims)


# ---------------------------------------------------------------------------------------------------- IMDB parquet
def read_imdb_labels(path) -> np.ndarray:
    """Labels (int64, 0 = neg, 1 = pos) of an IMDB parquet, after checking that it has `text` (strings) and `label`
    columns and that every row decodes. The loader reads the texts themselves through `datasets`."""
    try:
        names = pq.read_schema(path).names
        for col in ("text", "label"):
            if col not in names:
                raise FormatError(f"no column {col!r} (has {', '.join(names)})")
        table = pq.read_table(path, columns=["text", "label"])
    except (pa.ArrowException, OSError) as e:
        raise FormatError(f"not a readable parquet file ({first_line(e)})") from None
    text_type = table.schema.field("text").type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        raise FormatError(f"column 'text' holds {text_type}, expected strings")
    # A NULL or blank review decodes fine and trains at chance without a word: refuse any (the real files have
    # none, so even one means a broken export), naming the first row.
    text = table.column("text")
    null = text.is_null().to_numpy(zero_copy_only=False)
    blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), False).to_numpy(
        zero_copy_only=False)
    if null.any() or blank.any():
        first = int(np.flatnonzero(null | blank)[0])
        raise FormatError(f"{int(null.sum())} NULL and {int(blank.sum())} empty texts of {len(text)}, the first in "
                          f"row {first} (0-based)")
    labels = table.column("label").to_numpy(zero_copy_only=False)
    if len(labels) and not np.isin(labels, (0, 1)).all():
        raise FormatError(f"column 'label' has values {sorted(set(labels.tolist()) - {0, 1})[:5]}, expected 0 or 1")
    return labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------------- sizes
def count(path) -> int:
    """How many records (images, labels, reviews) a data file holds, from its header or metadata alone: what a
    profile's subset sizes are checked against before anything is decoded."""
    path = Path(path)
    try:
        if path.suffix == ".cdb":
            with open(path, "rb") as f:
                return cdb_header(f.read(CDB_HEADER.size)).count
        if path.suffix == ".mat":
            shapes = {name: shape for name, shape, _ in scipy.io.whosmat(path)}
            if "labels" not in shapes:
                raise FormatError("no variable 'labels'")
            return int(np.prod(shapes["labels"]))
        if path.name.endswith(".gz"):
            with gzip.open(path) as f:
                head = f.read(8)
            if len(head) < 8:
                raise FormatError(f"only {len(head)} bytes, too short for an IDX header")
            return struct.unpack(">I", head[4:])[0]
        return pq.read_metadata(path).num_rows
    except FormatError:
        raise
    except Exception as e:  # scipy, gzip and pyarrow each raise their own types for bad bytes
        raise FormatError(f"cannot read its size ({first_line(e)})") from None


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
