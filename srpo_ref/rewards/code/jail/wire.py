"""The plain-value wire format between the code judge and the candidate process.

The candidate process (``jail/harness.py``, mode ``serve``) sends every value it returns
through ``encode``; the judge (``srpo_ref.rewards.code.judge``) reads it back with ``decode``. The decoder is
the trust boundary: it never unpickles or evaluates anything, accepts only the tags below, and
yields only exact builtin values (no subclasses, so no custom ``__eq__``, ``__bool__`` or
arithmetic can reach the judge's comparisons), within caps on depth, element count and size.

A value is a JSON array ``[tag, payload...]``:

    N None   b bool (0/1)   i int (hex)   f float (float.hex)   c complex (two float.hex)
    s str    u str with lone surrogates (hex of UTF-8, surrogatepass)    y bytes (hex)  Y bytearray (hex)
    l list   t tuple   S set   F frozenset   (payload: a list of values)
    d dict   (payload: a list of [key, value] pairs, in order)
    and the standard library's value types that solutions return, rebuilt by the judge from
    plain fields (never the candidate's objects): C Counter, O OrderedDict, D defaultdict
    (as pairs; no default factory), Q deque (items), q Fraction (two hex), m Decimal (str)

Exact and lossless: ints of any size (hex has no digit limit), every float bit pattern (``-0.0``,
``inf``, ``nan``), strings with lone surrogates.

This file imports only the standard library: it is copied into every sandbox job beside the
harness.
"""

from __future__ import annotations

import collections
import decimal
import fractions
import json
import struct

# Bound at import, before any candidate code runs: the classes it may rebind are not these.
_COUNTER, _ORDERED, _DEFAULT, _DEQUE = (collections.Counter, collections.OrderedDict, collections.defaultdict,
                                        collections.deque)
_FRACTION, _DECIMAL = fractions.Fraction, decimal.Decimal

MAX_DEPTH = 100
MAX_NODES = 1_000_000
MAX_INT_HEX_DIGITS = 100_000  # 400,000 bits: far above any benchmark's answer
MAX_FRAME_BYTES = 16 << 20  # far above any benchmark's inputs or answers
_HEADER = struct.Struct(">I")


class RemoteRef:
    """A name in the candidate's namespace (an object its set-up code built there), sent by the
    judge as ``["R", name]`` and resolved only by a decoder given the allowed names."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class WireError(ValueError):
    """A value that is not plain data, or a malformed or oversized frame."""


def encode(value) -> list:
    """``value`` as a wire value; ``WireError`` for anything but exact builtin plain values."""
    budget = [MAX_NODES]
    return _enc(value, 0, budget)


def _enc(v, depth: int, budget: list):
    budget[0] -= 1
    if budget[0] < 0:
        raise WireError("value too large")
    t = type(v)
    if v is None:
        return ["N"]
    if t is RemoteRef:
        return ["R", str(v.name)]
    if t is bool:
        return ["b", 1 if v else 0]
    if t is int:
        return ["i", _hex_int(v)]
    if t is float:
        return ["f", float.hex(v)]
    if t is complex:
        return ["c", float.hex(v.real), float.hex(v.imag)]
    if t is str:
        v = str.__str__(v)
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: JSON would join a high and a low one into one character
            return ["u", v.encode("utf-8", "surrogatepass").hex()]
        return ["s", v]
    if t is bytes:
        return ["y", bytes.hex(v)]
    if t is bytearray:
        return ["Y", bytearray.hex(v)]
    if depth >= MAX_DEPTH:
        raise WireError("value nested too deeply")
    if t is list or t is tuple or t is set or t is frozenset:
        tag = {list: "l", tuple: "t", set: "S", frozenset: "F"}[t]
        items = list.__iter__(v) if t is list else tuple.__iter__(v) if t is tuple else (
            set.__iter__(v) if t is set else frozenset.__iter__(v))
        return [tag, [_enc(x, depth + 1, budget) for x in items]]
    if t is dict or t is _COUNTER or t is _ORDERED or t is _DEFAULT:
        tag = "d" if t is dict else "C" if t is _COUNTER else "O" if t is _ORDERED else "D"
        return [tag, [[_enc(k, depth + 1, budget), _enc(x, depth + 1, budget)] for k, x in dict.items(v)]]
    if t is _DEQUE:
        return ["Q", [_enc(x, depth + 1, budget) for x in _DEQUE.__iter__(v)]]
    if t is _FRACTION:
        return ["q", _hex_int(object.__getattribute__(v, "_numerator")), _hex_int(object.__getattribute__(v,
                                                                                                          "_denominator"))]
    if t is _DECIMAL:
        text = _DECIMAL.__str__(v)
        if type(text) is not str or len(text) > 10_000:
            raise WireError("malformed Decimal")
        return ["m", text]
    raise WireError(f"not a plain value: {_type_name(t)}")


def _type_name(t) -> str:
    try:
        name = type.__getattribute__(t, "__qualname__")
        return name if type(name) is str else "?"
    except Exception:
        return "?"


def _hex_int(v: int) -> str:
    if type(v) is not int:
        raise WireError("not an int")
    s = int.__format__(v, "x")
    if len(s) > MAX_INT_HEX_DIGITS + 1:
        raise WireError("integer too large")
    return s


def decode(obj, refs: dict | None = None):
    """The plain value a wire value stands for. Raises ``WireError`` on anything malformed.
    ``refs``: the objects ``["R", name]`` may stand for (the candidate's side only)."""
    budget = [MAX_NODES]
    return _dec(obj, 0, budget, refs)


def _dec(obj, depth: int, budget: list, refs=None):
    budget[0] -= 1
    if budget[0] < 0:
        raise WireError("value too large")
    if depth > MAX_DEPTH:  # the encoder's limit too: what decodes can be sent back
        raise WireError("value nested too deeply")
    if type(obj) is not list or not obj or type(obj[0]) is not str:
        raise WireError("malformed value")
    tag, n = obj[0], len(obj)
    try:
        if tag == "N" and n == 1:
            return None
        if tag == "R" and n == 2 and refs is not None and type(obj[1]) is str and obj[1] in refs:
            return refs[obj[1]]
        if tag == "b" and n == 2 and obj[1] in (0, 1) and type(obj[1]) is int:
            return obj[1] == 1
        if tag == "i" and n == 2:
            return _int(obj[1])
        if tag == "f" and n == 2:
            return _float(obj[1])
        if tag == "c" and n == 3:
            return complex(_float(obj[1]), _float(obj[2]))
        if tag == "s" and n == 2 and type(obj[1]) is str:
            return obj[1]
        if tag == "u" and n == 2 and type(obj[1]) is str:
            return bytes.fromhex(obj[1]).decode("utf-8", "surrogatepass")
        if tag in ("y", "Y") and n == 2 and type(obj[1]) is str:
            data = bytes.fromhex(obj[1])
            return data if tag == "y" else bytearray(data)
        if tag in ("l", "t", "S", "F") and n == 2 and type(obj[1]) is list:
            if depth >= MAX_DEPTH:
                raise WireError("value nested too deeply")
            items = [_dec(x, depth + 1, budget, refs) for x in obj[1]]
            if tag in ("S", "F"):
                _few_equal_hashes(items)
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
        if tag in ("Q", "d", "C", "O", "D") and depth >= MAX_DEPTH:
            raise WireError("value nested too deeply")
        if tag == "Q" and n == 2 and type(obj[1]) is list:
            return _DEQUE(_dec(x, depth + 1, budget, refs) for x in obj[1])
        if tag == "q" and n == 3:
            num, den = _int(obj[1]), _int(obj[2])
            if den <= 0:
                raise WireError("malformed Fraction")
            return _FRACTION(num, den)
        if tag == "m" and n == 2 and type(obj[1]) is str and len(obj[1]) <= 10_000:
            return _DECIMAL(obj[1])
        if tag in ("d", "C", "O", "D") and n == 2 and type(obj[1]) is list:
            out = {"d": dict, "C": _COUNTER, "O": _ORDERED, "D": lambda: _DEFAULT(None)}[tag]()
            pairs = []
            for pair in obj[1]:
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("malformed dict item")
                pairs.append((_dec(pair[0], depth + 1, budget, refs), _dec(pair[1], depth + 1, budget, refs)))
            _few_equal_hashes([k for k, _ in pairs])
            for k, v in pairs:
                out[k] = v
            return out
    except WireError:
        raise
    except (TypeError, ValueError, OverflowError, ArithmeticError) as e:  # unhashable set items or keys, bad hex
        raise WireError(f"malformed {tag!r} value: {type(e).__name__}") from None
    raise WireError(f"unknown or malformed tag {tag!r}")


MAX_EQUAL_HASHES = 8


def _few_equal_hashes(items) -> None:
    """Refuse set items or dict keys of which many share one hash (``k * (2**61 - 1)`` all hash
    to 0): building the set would take quadratic time in one C call that no alarm interrupts.
    Distinct plain values rarely share a hash (``-1`` and ``-2`` do), so a few are allowed."""
    counts: dict = {}
    for x in items:
        h = hash(x)  # plain values only: their hashes run no program code
        counts[h] = counts.get(h, 0) + 1
        if counts[h] > MAX_EQUAL_HASHES:
            raise WireError("too many set items or keys share one hash")


def _int(s) -> int:
    if type(s) is not str or not 0 < len(s) <= MAX_INT_HEX_DIGITS + 1:
        raise WireError("malformed int")
    return int(s, 16)


def _float(s) -> float:
    if type(s) is not str or len(s) > 40:
        raise WireError("malformed float")
    return float.fromhex(s)


# ----------------------------------------------------------------------------- frames

def pack(message) -> bytes:
    """One frame: a 4-byte big-endian length, then the message as ASCII JSON."""
    data = json.dumps(message, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > MAX_FRAME_BYTES:
        raise WireError("message too large")
    return _HEADER.pack(len(data)) + data


def unpack_header(header: bytes) -> int:
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise WireError(f"frame of {size} bytes is over the limit")
    return size


def parse(data: bytes):
    """A frame's JSON message (only JSON: no NaN literals, nothing executed)."""
    try:
        return json.loads(data.decode("ascii"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise WireError(f"malformed frame: {type(e).__name__}") from None


def _no_constant(name):
    raise WireError(f"JSON constant {name} is not allowed")
