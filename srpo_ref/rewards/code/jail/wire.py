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
    and, sent only by the candidate (``encode(value, convert=True)``), values the benchmark's
    tests accept in one process, rebuilt as what those tests would have seen (sympy's integers,
    floats and booleans as the int, float or bool they equal):
    I an iterator (a generator, ``map``, ``filter``, ``zip``...: its items, consumed in the
    candidate; the judge gets a list iterator), V a dict view ("k", "v" or "i", then items),
    r range (three hex), n a numpy scalar and A a numpy array (dtype name, shape, items; numeric,
    bool and fixed-width str dtypes only). Subclasses of builtin types (a namedtuple, an
    ``IntEnum``, ``numpy.float64``'s float part) are sent as their builtin value: their own
    methods (``__eq__`` above all) never reach the judge.

Exact and lossless: ints of any size (hex has no digit limit), every float bit pattern (``-0.0``,
``inf``, ``nan``), strings with lone surrogates.

This file imports only the standard library: it is copied into every sandbox job beside the
harness.
"""

from __future__ import annotations

import collections
import decimal
import fractions
import gc
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
# A reply from the candidate is decoded by the judge: tighter caps there keep the worst reply
# cheap to decode (benchmarks/wire_decode.py measures it). Far above any benchmark's answer.
MAX_REPLY_NODES = 50_000
MAX_REPLY_BYTES = 4 << 20
MAX_FRACTION_HEX_DIGITS = 64  # 256 bits a part: a gcd on 400k-bit parts took 0.2 s each
MAX_DECIMAL_EXPONENT = 4_096  # int(Decimal('1e999999999')) would never finish
MAX_ARRAY_BYTES = 32 << 20  # a numpy array as the judge stores it
# Low-precision floats are compared at float64, holding the value they hold: compared at their own
# precision (NumPy 2 casts the Python number down), float16 inf equals 10**300 and float16(3.14)
# equals 3.1415. The benchmark's one-process harness would let those wrong answers pass.
_WIDER = {"float16": "float64", "float32": "float64", "complex64": "complex128"}
NUMPY_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                          "float16", "float32", "float64", "complex64", "complex128"})
_HEADER = struct.Struct(">I")


class RemoteRef:
    """A name in the candidate's namespace (an object its set-up code built there), sent by the
    judge as ``["R", name]`` and resolved only by a decoder given the allowed names."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class WireError(ValueError):
    """A value that is not plain data, or a malformed or oversized frame."""


def encode(value, convert: bool = False) -> list:
    """``value`` as a wire value; ``WireError`` for anything but exact builtin plain values.
    ``convert`` (the candidate's replies): also iterators, dict views, ranges, numpy values and
    subclasses of builtins, as the tags above (a generator is consumed here)."""
    budget = [MAX_NODES]
    return _enc(value, 0, budget, convert)


def _enc(v, depth: int, budget: list, convert: bool = False):
    budget[0] -= 1
    if budget[0] < 0:
        raise WireError("value too large")
    t = type(v)
    if convert and t not in _EXACT:
        return _convert(v, t, depth, budget)
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
        return [tag, [_enc(x, depth + 1, budget, convert) for x in items]]
    if t is dict or t is _COUNTER or t is _ORDERED or t is _DEFAULT:
        tag = "d" if t is dict else "C" if t is _COUNTER else "O" if t is _ORDERED else "D"
        return [tag, [[_enc(k, depth + 1, budget, convert), _enc(x, depth + 1, budget, convert)]
                      for k, x in dict.items(v)]]
    if t is _DEQUE:
        return ["Q", [_enc(x, depth + 1, budget, convert) for x in _DEQUE.__iter__(v)]]
    if t is _FRACTION:
        return ["q", _hex_int(object.__getattribute__(v, "_numerator")), _hex_int(object.__getattribute__(v,
                                                                                                          "_denominator"))]
    if t is _DECIMAL:
        text = _DECIMAL.__str__(v)
        if type(text) is not str or len(text) > 10_000:
            raise WireError("malformed Decimal")
        return ["m", text]
    raise WireError(f"not a plain value: {_type_name(t)}")


_EXACT = frozenset({type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, set, frozenset, dict,
                    _COUNTER, _ORDERED, _DEFAULT, _DEQUE, _FRACTION, _DECIMAL, RemoteRef})
_VIEWS = {type({}.keys()): "k", type({}.values()): "v", type({}.items()): "i"}
# builtin bases a subclass is sent as, most specific first (bool cannot be subclassed)
_BASES = ((int, int.__int__), (float, float.__float__), (complex, complex.__complex__), (str, str.__str__),
          (bytes, bytes.__bytes__), (bytearray, bytearray), (tuple, lambda v: tuple(tuple.__iter__(v))),
          (list, lambda v: list(list.__iter__(v))), (frozenset, lambda v: frozenset(frozenset.__iter__(v))),
          (set, lambda v: set(set.__iter__(v))), (dict, lambda v: dict(dict.items(v))))


def _convert(v, t, depth: int, budget: list):
    """The candidate's side of ``encode(convert=True)``: what the tests would have seen, as plain
    data (module docstring). Runs in the candidate's process, on its own objects."""
    if depth >= MAX_DEPTH:
        raise WireError("value nested too deeply")
    if t is range:
        return ["r", _hex_int(v.start), _hex_int(v.stop), _hex_int(v.step)]
    if t in _VIEWS:
        kind = _VIEWS[t]
        items = [[_enc(k, depth + 2, budget, True), _enc(x, depth + 2, budget, True)] for k, x in v] if kind == "i" \
            else [_enc(x, depth + 1, budget, True) for x in v]
        return ["V", kind, items]
    numpy = _numpy_module(t)
    if numpy is not None:
        if t is numpy.ndarray:
            name = _dtype_name(v.dtype)
            if v.size > budget[0]:  # checked before tolist() builds it
                raise WireError("value too large")
            return ["A", name, [int(n) for n in v.shape], [_enc(x, depth + 1, budget) for x in v.ravel().tolist()]]
        if isinstance(v, numpy.generic) and v.dtype.kind not in "USO":  # numpy.str_ is sent as its str
            return ["n", _dtype_name(v.dtype), _enc(v.item(), depth + 1, budget)]
    if _module_root(t) == "sympy":
        return _enc(_sympy_number(v), depth, budget, True)
    for base, to_plain in _BASES:
        if isinstance(v, base):
            return _enc(to_plain(v), depth, budget, True)
    if hasattr(t, "__next__") and hasattr(t, "__iter__"):  # an iterator: a generator, map, filter, zip...
        items = []
        for x in v:
            items.append(_enc(x, depth + 1, budget, True))
        return ["I", items]
    raise WireError(f"not a plain value: {_type_name(t)}")


def _module_root(t) -> str:
    module = getattr(t, "__module__", "")
    return module.split(".")[0] if type(module) is str else ""


def _numpy_module(t):
    import sys

    numpy = sys.modules.get("numpy")
    return numpy if numpy is not None and _module_root(t) == "numpy" else None


def _sympy_number(v):
    """sympy's numbers that compare as a plain value does (``factorial(5)`` is ``Integer(120)``,
    and ``Integer(120) == 120`` in the tests): Integer as int, Float as float, true and false as
    bool. Not a Rational (``Rational(1, 2) == 0.5`` is False in sympy, True for a Fraction), a
    symbol or an expression: they are not plain."""
    if getattr(v, "is_Integer", False) is True:
        return int(v)
    if getattr(v, "is_Float", False) is True:
        return float(v)
    if type(v).__name__ in ("BooleanTrue", "BooleanFalse"):
        return bool(v)
    raise WireError(f"not a plain value: a sympy {_type_name(type(v))}")


def _dtype_name(dtype) -> str:
    name = str(dtype.name)
    if name in NUMPY_DTYPES:
        return name
    if dtype.kind == "U" and dtype.itemsize // 4 <= 10_000:
        return f"U{dtype.itemsize // 4}"
    raise WireError(f"numpy dtype {name} is not sent")


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


def decode(obj, refs: dict | None = None, budget: list | None = None):
    """The plain value a wire value stands for. Raises ``WireError`` on anything malformed.
    ``refs``: the objects ``["R", name]`` may stand for (the candidate's side only).
    ``budget``: ``[nodes]`` shared by several values (a reply's value and its changes)."""
    enabled = gc.isenabled()
    gc.disable()  # decoded values hold no cycles: the collector would only walk them, again and again
    try:
        return _dec(obj, 0, [MAX_NODES] if budget is None else budget, refs)
    finally:
        if enabled:
            gc.enable()


def _dec(obj, depth: int, budget: list, refs=None):
    value = _dec_node(obj, depth, budget, refs)
    if type(value) in _HASHED:
        _register_hash(value, budget)
    return value


def _dec_node(obj, depth: int, budget: list, refs=None):
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
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
        if tag in ("Q", "d", "C", "O", "D") and depth >= MAX_DEPTH:
            raise WireError("value nested too deeply")
        if tag == "Q" and n == 2 and type(obj[1]) is list:
            return _DEQUE(_dec(x, depth + 1, budget, refs) for x in obj[1])
        if tag == "q" and n == 3:
            budget[0] -= 4  # a gcd and a modular inverse (its hash): five values' worth of work
            num, den = _int(obj[1], MAX_FRACTION_HEX_DIGITS), _int(obj[2], MAX_FRACTION_HEX_DIGITS)
            if den <= 0:
                raise WireError("malformed Fraction")
            return _FRACTION(num, den)
        if tag == "m" and n == 2 and type(obj[1]) is str and len(obj[1]) <= 10_000:
            value = _DECIMAL(obj[1])
            if value.is_finite() and abs(value.adjusted()) > MAX_DECIMAL_EXPONENT:
                raise WireError("Decimal exponent too large")
            return value
        if tag in "rIVnA":
            return _dec_converted(obj, depth, budget, refs)
        if tag in ("d", "C", "O", "D") and n == 2 and type(obj[1]) is list:
            out = {"d": dict, "C": _COUNTER, "O": _ORDERED, "D": lambda: _DEFAULT(None)}[tag]()
            pairs = []
            for pair in obj[1]:
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("malformed dict item")
                pairs.append((_dec(pair[0], depth + 1, budget, refs), _dec(pair[1], depth + 1, budget, refs)))
            for k, v in pairs:
                out[k] = v
            return out
    except WireError:
        raise
    except (TypeError, ValueError, OverflowError, ArithmeticError) as e:  # unhashable set items or keys, bad hex
        raise WireError(f"malformed {tag!r} value: {type(e).__name__}") from None
    raise WireError(f"unknown or malformed tag {tag!r}")


def _dec_converted(obj: list, depth: int, budget: list, refs):
    """The tags only a candidate's ``encode(convert=True)`` sends (module docstring)."""
    tag, n = obj[0], len(obj)
    if tag == "r" and n == 4:
        value = range(_int(obj[1], 64), _int(obj[2], 64), _int(obj[3], 64))
        if len(value) > budget[0]:  # what list(range) would build counts as nodes
            raise WireError("range too long")
        return value
    if tag == "I" and n == 2 and type(obj[1]) is list:
        return iter([_dec(x, depth + 1, budget, refs) for x in obj[1]])
    if tag == "V" and n == 3 and obj[1] in ("k", "v", "i") and type(obj[2]) is list:
        return _view(obj[1], obj[2], depth, budget, refs)
    if tag == "n" and n == 3 and type(obj[1]) is str and obj[1] in NUMPY_DTYPES:
        import numpy

        item = _numpy_item(_dec(obj[2], depth + 1, budget, refs), obj[1])
        return numpy.dtype(_WIDER.get(obj[1], obj[1])).type(numpy.dtype(obj[1]).type(item))
    if tag == "A" and n == 4 and type(obj[1]) is str and type(obj[2]) is list and type(obj[3]) is list:
        return _array(obj[1], obj[2], obj[3], depth, budget, refs)
    raise WireError(f"malformed {tag!r} value")


def _view(kind: str, items: list, depth: int, budget: list, refs):
    """A dict view, rebuilt from a dict of the judge's own."""
    if kind == "i":
        pairs = []
        for pair in items:
            if type(pair) is not list or len(pair) != 2:
                raise WireError("malformed dict item")
            pairs.append((_dec(pair[0], depth + 1, budget, refs), _dec(pair[1], depth + 1, budget, refs)))
        return dict(pairs).items()
    values = [_dec(x, depth + 1, budget, refs) for x in items]
    if kind == "v":
        return dict(enumerate(values)).values()
    return dict.fromkeys(values).keys()


def _numpy_item(value, dtype: str):
    allowed = (str,) if dtype[:1] == "U" else (bool, int, float, complex)  # numpy parses strings as numbers
    if type(value) not in allowed:
        raise WireError("malformed numpy value")
    return value


def _array(name: str, shape: list, items: list, depth: int, budget: list, refs):
    """A numpy array of an allowed dtype, built by the judge's numpy from plain items."""
    import numpy

    if name not in NUMPY_DTYPES and not (name[:1] == "U" and name[1:].isdigit() and int(name[1:]) <= 10_000):
        raise WireError(f"numpy dtype {name[:20]!r} is not accepted")
    if len(shape) > 32 or any(type(d) is not int or d < 0 for d in shape):
        raise WireError("malformed numpy shape")
    size = 1
    for d in shape:
        size *= d
    if size != len(items):
        raise WireError("numpy shape and items disagree")
    if numpy.dtype(name).itemsize * size > MAX_ARRAY_BYTES:  # a wide str dtype pads every item
        raise WireError("numpy array too large")
    values = [_numpy_item(_dec(x, depth + 1, budget, refs), name) for x in items]
    return numpy.array(values, dtype=numpy.dtype(name)).astype(_WIDER.get(name, name)).reshape(shape)


MAX_EQUAL_HASHES = 8
_HASHED = frozenset({int, float, complex, str, bytes, tuple, frozenset, _FRACTION, _DECIMAL})


def _register_hash(value, budget: list) -> None:
    """Refuse a value of which more than 8 distinct values share one hash (``k * (2**61 - 1)``
    all hash to 0): a set or dict the tests build from them (``set(out)``, a dict of its keys)
    takes quadratic time in one C call that no alarm interrupts. Every hashable value of the
    whole reply counts, at every depth; equal values are one. Plain values only: their hashes
    and comparisons run no program code."""
    if len(budget) == 1:
        budget.append({})
    try:
        h = hash(value)
    except TypeError:  # a tuple holding a list: no set can hold it either
        return
    bucket = budget[1].setdefault(h, [])
    for seen in bucket:
        if type(seen) is type(value) and seen == value:
            return
    bucket.append(value)
    if len(bucket) > MAX_EQUAL_HASHES:
        raise WireError("too many distinct values share one hash")


def _int(s, max_digits: int = MAX_INT_HEX_DIGITS) -> int:
    if type(s) is not str or not 0 < len(s) <= max_digits + 1:
        raise WireError("malformed or too large int")
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


def unpack_header(header: bytes, max_bytes: int = MAX_FRAME_BYTES) -> int:
    (size,) = _HEADER.unpack(header)
    if size > max_bytes:
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
