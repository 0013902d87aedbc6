"""The vector cache format the bench scripts share with `kefu eval`'s `<data_dir>/cache/vectors-<id>.bin`:
records of (u32 length, UTF-8 text, u32 dim, dim f32), little-endian."""
import struct
from pathlib import Path

import numpy as np


def load(path):
    """Every record of the file at `path`: {text: vector}."""
    b, at, m = Path(path).read_bytes(), 0, {}
    while at + 4 <= len(b):
        (n,) = struct.unpack_from("<I", b, at)
        text = b[at + 4 : at + 4 + n].decode()
        (d,) = struct.unpack_from("<I", b, at + 4 + n)
        at += 8 + n
        m[text] = np.frombuffer(b, dtype="<f4", count=d, offset=at)
        at += 4 * d
    return m


def write(out, text, vector):
    """One record to the open binary file `out`."""
    b = text.encode()
    out.write(struct.pack("<I", len(b)) + b + struct.pack("<I", len(vector)) + np.asarray(vector, "<f4").tobytes())
