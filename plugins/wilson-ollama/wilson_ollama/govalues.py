"""Go's values as Ollama's templates see them, and ``text/template``'s builtin functions.

Python ``dict`` = Go ``map[string]interface {}``, ``list`` = ``[]interface {}``,
``float`` = ``float64``, ``None`` = ``nil``; :class:`GoStruct` / :class:`GoNamed` stand for
Ollama's typed structs and named types.  Formatting follows ``fmt`` (``print``,
``printf``) and ``encoding/json`` (Ollama's ``json``); :data:`FUNCS` is the function
table the evaluator in :mod:`.gotemplate` calls.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

from wilson_core.errors import WilsonError


class TemplateError(WilsonError):
    """The template does not parse or fails while executing (as Go would)."""


class GoStruct:
    """A Go struct value: fields by exported (capitalised) name, and its Go type name."""

    def __init__(self, type_name: str, **fields: Any) -> None:
        self.type_name = type_name
        self.fields = fields

    def field(self, name: str) -> Any:
        if name not in self.fields:
            raise TemplateError(f"can't evaluate field {name} in type {self.type_name}")
        return self.fields[name]

    def __repr__(self) -> str:
        return f"GoStruct({self.type_name}, {self.fields!r})"


class GoNamed:
    """A value of a named Go type (``api.ToolCallFunctionArguments``, ``api.PropertyType``)
    wrapping a map or slice; ``json`` may marshal it specially."""

    def __init__(self, type_name: str, value: Any, marshal: Callable[[Any], Any] | None = None) -> None:
        self.type_name = type_name
        self.value = value
        self.marshal = marshal


_MISSING = object()  # sentinel: no value at all (no piped argument, nothing found)


def _unwrap(value: Any) -> Any:
    return value.value if isinstance(value, GoNamed) else value


# -- lexing -------------------------------------------------------------------------------


def truth(value: Any) -> bool:
    if isinstance(value, GoStruct):
        return True
    value = _unwrap(value)
    if value is None or value is False:
        return False
    if isinstance(value, (int, float, str, list, tuple, dict)):
        return bool(value)
    return True


def go_type(value: Any) -> str:
    if isinstance(value, (GoStruct, GoNamed)):
        return value.type_name
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, (list, tuple)):
        return "[]interface {}"
    return type(value).__name__


def _format_float(value: float) -> str:
    """Go's %v for float64 (strconv 'g' with the shortest repr, exponent when large)."""
    if value != value or value in (float("inf"), float("-inf")):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(value)]
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        return f"{mantissa}e{sign}{abs(int(exp)):02d}"
    return text


def go_print(value: Any) -> str:
    """``fmt.Sprint`` of a value (what ``{{ value }}`` outputs)."""
    if isinstance(value, GoNamed):
        return go_print(value.value)
    if isinstance(value, GoStruct):
        return "{" + " ".join(go_print(v) for v in value.fields.values()) + "}"
    if value is None:
        return "<no value>"
    if value is _MISSING:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_print(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_print(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _is_print(ch: str) -> bool:
    if ch == " ":
        return True
    category = unicodedata.category(ch)
    return category[0] in "LMNPS"


def go_quote(text: str) -> str:
    """``strconv.Quote`` (what ``printf "%q"`` does with a string)."""
    out = ['"']
    simple = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\v": r"\v"}
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif _is_print(ch):
            out.append(ch)
        elif ch in simple:
            out.append(simple[ch])
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def go_json(value: Any) -> str:
    """Go's ``json.Marshal`` (Ollama's ``json`` template function)."""
    return _marshal(value)


def _marshal_string(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or ch in "<>&" or code in (0x2028, 0x2029):
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _marshal(value: Any) -> str:
    if isinstance(value, GoNamed):
        return _marshal(value.marshal(value.value) if value.marshal else value.value)
    if isinstance(value, GoStruct):
        marshal = value.fields.get("__json__")
        if marshal is not None:
            return _marshal(marshal)
        raise TemplateError(f"json of struct {value.type_name} is not modelled")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float(value) if abs(value) < 1e21 else repr(value)
    if isinstance(value, str):
        return _marshal_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_marshal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_marshal_string(k)}:{_marshal(value[k])}" for k in sorted(value)) + "}"
    raise TemplateError(f"json: unsupported value {value!r}")


def _printf(fmt: str, *args: Any) -> str:
    out = []
    arg_iter = iter(args)
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%" or i + 1 >= len(fmt):
            out.append(ch)
            i += 1
            continue
        verb = fmt[i + 1]
        i += 2
        if verb == "%":
            out.append("%")
            continue
        try:
            arg = next(arg_iter)
        except StopIteration:
            out.append(f"%!{verb}(MISSING)")
            continue
        if verb == "q" and isinstance(_unwrap(arg), str):
            out.append(go_quote(_unwrap(arg)))
        elif verb == "T":
            out.append(go_type(arg))
        elif verb == "d" and isinstance(arg, int):
            out.append(str(arg))
        elif verb in ("s", "v"):
            out.append(go_print(arg))
        else:
            raise TemplateError(f"printf verb %{verb} is not modelled")
    return "".join(out)


def _len(value: Any) -> int:
    value = _unwrap(value)
    if isinstance(value, (str, list, tuple, dict)):
        return len(value.encode("utf-8")) if isinstance(value, str) else len(value)
    raise TemplateError(f"len of type {go_type(value)}")


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        value = _unwrap(value)
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, (list, tuple)):
            if not isinstance(key, int) or not 0 <= key < len(value):
                raise TemplateError(f"index out of range: {key}")
            value = value[key]
        else:
            raise TemplateError(f"can't index item of type {go_type(value)}")
    return value


def _slice(value: Any, *bounds: int) -> Any:
    value = _unwrap(value)
    if not isinstance(value, (list, tuple, str)):
        raise TemplateError(f"can't slice item of type {go_type(value)}")
    if len(bounds) > 2:
        raise TemplateError("3-index slice is not modelled")
    start = bounds[0] if bounds else 0
    stop = bounds[1] if len(bounds) > 1 else len(value)
    if not 0 <= start <= stop <= len(value):
        raise TemplateError(f"index out of range: {start}:{stop}")
    return value[start:stop]


def _basic(value: Any) -> Any:
    value = _unwrap(value)
    if isinstance(value, GoStruct):
        raise TemplateError("incompatible types for comparison")
    return value


def _eq(first: Any, *others: Any) -> bool:
    a = _basic(first)
    return any(a == _basic(b) and type(a) is type(_basic(b)) for b in others)


def _cmp(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        a, b = _basic(a), _basic(b)
        if type(a) is not type(b):
            raise TemplateError("incompatible types for comparison")
        return op(a, b)

    return compare


def _sprint(args: tuple[Any, ...]) -> str:
    """``fmt.Sprint``: a space between operands when neither is a string."""
    out = []
    for i, arg in enumerate(args):
        if i and not isinstance(_unwrap(arg), str) and not isinstance(_unwrap(args[i - 1]), str):
            out.append(" ")
        out.append(go_print(arg))
    return "".join(out)


FUNCS: dict[str, Callable[..., Any]] = {
    "and": lambda *a: None,  # short-circuit handled in _and_or
    "or": lambda *a: None,
    "not": lambda v: not truth(v),
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": _cmp(lambda a, b: a < b),
    "le": _cmp(lambda a, b: a <= b),
    "gt": _cmp(lambda a, b: a > b),
    "ge": _cmp(lambda a, b: a >= b),
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": lambda *a: _sprint(a),
    "printf": _printf,
    "json": go_json,
}
