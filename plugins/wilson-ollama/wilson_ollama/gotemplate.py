"""An evaluator (parser and executor) for the subset of Go's ``text/template`` that Ollama TEMPLATEs use.

No Go toolchain is available where Wilson is tested, so the Modelfile TEMPLATE is
checked with this evaluator, written to Go's documented semantics:

- actions ``{{ ... }}`` with trim markers ``{{- `` / `` -}}`` (all ASCII whitespace
  next to the action is removed), comments ``{{/* */}}``;
- ``if`` / ``else if`` / ``else`` / ``end``, ``range`` (``$i, $v :=``; maps iterate in
  sorted key order; ``else`` when empty), ``with``, ``define`` / ``template``;
- variables: ``$`` (the root), ``$x := pipeline`` (scoped to the enclosing block),
  ``$x = pipeline`` (assigns the nearest ``$x``);
- fields ``.A.B`` on structs (:class:`GoStruct`, a missing field is an error) and
  maps (a missing key gives ``<no value>``), pipelines with ``|``, parentheses;
- functions ``and or not eq ne lt le gt ge len index slice print printf`` (``%s %v %q
  %d %T``) and Ollama's ``json`` (Go's ``json.Marshal``: compact, map keys sorted,
  ``<``, ``>``, ``&`` escaped);
- truth: false, 0, nil, and empty strings/slices/maps are false; structs are true.

Values: Python ``dict`` = Go ``map[string]interface {}``, ``list`` = ``[]interface {}``,
``float`` = ``float64`` (JSON numbers), ``str``, ``bool``, ``None`` = ``nil``, and
:class:`GoStruct` for Ollama's typed structs (``api.Message``, ``api.Tool``...).
Those values and the builtin functions live in :mod:`.govalues`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .govalues import _MISSING, _unwrap, go_print, go_type, truth
from .govalues import FUNCS as FUNCS
from .govalues import GoNamed as GoNamed
from .govalues import GoStruct as GoStruct
from .govalues import TemplateError as TemplateError

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<decl>:=)
      | (?P<assign>=)
      | (?P<pipe>\|)
      | (?P<lp>\()
      | (?P<rp>\))
      | (?P<comma>,)
      | (?P<var>\$[A-Za-z0-9_]*)
      | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    result = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise TemplateError(f"unexpected {text[pos:pos + 20]!r} in action")
        kind = match.lastgroup or ""
        result.append((kind, match.group(kind)))
        pos = match.end()
        # a field chain right after ")" or a variable: (x).Field / $v.Field
        if kind in ("rp", "var") and pos < len(text) and text[pos] == ".":
            chain = re.match(r"(?:\.[A-Za-z0-9_]+)+", text[pos:])
            if chain:
                result.append(("chain", chain.group(0)))
                pos += chain.end()
    return result


def _go_unquote(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    try:
        return json.loads(literal)
    except ValueError:
        raise TemplateError(f"bad string literal {literal}") from None


# -- parsing ------------------------------------------------------------------------------


class _Node:
    pass


class _Text(_Node):
    def __init__(self, text: str) -> None:
        self.text = text


class _Output(_Node):
    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe


class _Block(_Node):
    def __init__(self, kind: str, pipe: Any, names: list[str], declare: bool) -> None:
        self.kind = kind  # if / range / with
        self.pipe = pipe
        self.names = names
        self.declare = declare
        self.body: list[_Node] = []
        self.else_body: list[_Node] = []


class _Call(_Node):
    def __init__(self, name: str, pipe: Any) -> None:
        self.name = name
        self.pipe = pipe


def _split_actions(source: str) -> list[tuple[str, str]]:
    """[('text', ...), ('action', ...)] with trim markers applied."""
    parts: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for match in _ACTION.finditer(source):
        text = source[pos:match.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if match.group(1):
            text = text.rstrip(" \t\r\n")
        if text:
            parts.append(("text", text))
        body = match.group(2)
        if not body.strip().startswith("/*"):
            parts.append(("action", body))
        elif not body.strip().endswith("*/"):
            raise TemplateError("unterminated comment")
        trim_next = bool(match.group(3))
        pos = match.end()
    text = source[pos:]
    if trim_next:
        text = text.lstrip(" \t\r\n")
    if "{{" in text:
        raise TemplateError(f"unclosed action near {text[text.index('{{'):][:30]!r}")
    if text:
        parts.append(("text", text))
    return parts


class Template:
    """A parsed template; :meth:`render` executes it with a data value."""

    def __init__(self, source: str) -> None:
        self.defines: dict[str, list[_Node]] = {}
        parts = _split_actions(source)
        self.root, rest, end = self._parse(parts, 0, top=True)
        if end is not None:
            raise TemplateError(f"unexpected {{{{{end}}}}}")

    def _parse(self, parts: list[tuple[str, str]], i: int, top: bool = False) -> tuple[list[_Node], int, str | None]:
        nodes: list[_Node] = []
        while i < len(parts):
            kind, value = parts[i]
            i += 1
            if kind == "text":
                nodes.append(_Text(value))
                continue
            action = value.strip()
            word = action.split(None, 1)[0] if action else ""
            rest = action[len(word):].strip()
            if word in ("end", "else"):
                return nodes, i, action
            if word in ("if", "range", "with"):
                block = self._block(word, rest)
                block.body, i, stop = self._parse(parts, i)
                while stop is not None and stop.startswith("else"):
                    tail = stop[4:].strip()
                    if tail.startswith("if") and word == "if":
                        inner = self._block("if", tail[2:].strip())
                        inner.body, i, stop = self._parse(parts, i)
                        block.else_body = [inner]
                        # the chain shares one {{end}}: keep filling the innermost else
                        holder = inner
                        while stop is not None and stop.startswith("else"):
                            tail = stop[4:].strip()
                            if tail.startswith("if"):
                                nxt = self._block("if", tail[2:].strip())
                                nxt.body, i, stop = self._parse(parts, i)
                                holder.else_body = [nxt]
                                holder = nxt
                            else:
                                holder.else_body, i, stop = self._parse(parts, i)
                        break
                    block.else_body, i, stop = self._parse(parts, i)
                if stop != "end":
                    raise TemplateError(f"{{{{{word}}}}} without {{{{end}}}}")
                nodes.append(block)
                continue
            if word == "define":
                name = _go_unquote(rest)
                body, i, stop = self._parse(parts, i)
                if stop != "end":
                    raise TemplateError(f"define {name} without end")
                self.defines[name] = body
                continue
            if word == "template":
                toks = _tokens(rest)
                if not toks or toks[0][0] not in ("str", "raw"):
                    raise TemplateError("template needs a quoted name")
                name = _go_unquote(toks[0][1])
                pipe = _Pipe.parse(toks[1:]) if len(toks) > 1 else None
                nodes.append(_Call(name, pipe))
                continue
            nodes.append(_Output(_Pipe.parse(_tokens(action))))
        return nodes, i, None

    @staticmethod
    def _block(kind: str, rest: str) -> _Block:
        toks = _tokens(rest)
        names: list[str] = []
        declare = False
        if kind == "range" and toks and toks[0][0] == "var":
            j = 0
            candidate = []
            while j < len(toks) and toks[j][0] == "var":
                candidate.append(toks[j][1])
                j += 1
                if j < len(toks) and toks[j][0] == "comma":
                    j += 1
            if j < len(toks) and toks[j][0] in ("decl", "assign"):
                names, declare, toks = candidate, True, toks[j + 1:]
        return _Block(kind, _Pipe.parse(toks), names, declare)

    def render(self, data: Any) -> str:
        out: list[str] = []
        scopes: list[dict[str, Any]] = [{"$": data}]
        self._exec(self.root, data, scopes, out, depth=0)
        return "".join(out)

    # -- execution ----------------------------------------------------------------------

    def _exec(self, nodes: list[_Node], dot: Any, scopes: list[dict[str, Any]], out: list[str], depth: int) -> None:
        if depth > 100:
            raise TemplateError("exceeded maximum template depth (100)")
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Output):
                value = node.pipe.eval(dot, scopes, self)
                if node.pipe.is_declaration:
                    continue
                out.append(go_print(value))
            elif isinstance(node, _Call):
                body = self.defines.get(node.name)
                if body is None:
                    raise TemplateError(f'no such template "{node.name}"')
                arg = node.pipe.eval(dot, scopes, self) if node.pipe else None
                self._exec(body, arg, [{"$": arg}], out, depth + 1)
            elif isinstance(node, _Block):
                self._exec_block(node, dot, scopes, out, depth)

    def _exec_block(self, node: _Block, dot: Any, scopes: list[dict[str, Any]], out: list[str], depth: int) -> None:
        scopes.append({})
        try:
            value = node.pipe.eval(dot, scopes, self)
            if node.kind == "if":
                branch = node.body if truth(value) else node.else_body
                self._exec(branch, dot, scopes, out, depth)
            elif node.kind == "with":
                if truth(value):
                    self._exec(node.body, value, scopes, out, depth)
                else:
                    self._exec(node.else_body, dot, scopes, out, depth)
            else:
                items = _range_items(value)
                if not items:
                    self._exec(node.else_body, dot, scopes, out, depth)
                for key, item in items:
                    scopes.append({})
                    if node.names:
                        if len(node.names) == 1:
                            scopes[-1][node.names[0]] = item
                        else:
                            scopes[-1][node.names[0]] = key
                            scopes[-1][node.names[1]] = item
                    self._exec(node.body, item, scopes, out, depth)
                    scopes.pop()
        finally:
            scopes.pop()


def _range_items(value: Any) -> list[tuple[Any, Any]]:
    value = _unwrap(value)
    if value is None:
        return []
    if isinstance(value, dict):
        return [(k, value[k]) for k in sorted(value)]
    if isinstance(value, (list, tuple)):
        return list(enumerate(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return [(i, i) for i in range(value)]
    raise TemplateError(f"range can't iterate over {go_print(value)}")


class _Pipe:
    def __init__(self, commands: list[list[Any]], decl: str | None = None, assign: bool = False) -> None:
        self.commands = commands
        self.decl = decl
        self.assign = assign

    @property
    def is_declaration(self) -> bool:
        return self.decl is not None

    @classmethod
    def parse(cls, toks: list[tuple[str, str]]) -> _Pipe:
        decl = None
        assign = False
        if len(toks) >= 2 and toks[0][0] == "var" and toks[1][0] in ("decl", "assign"):
            decl, assign, toks = toks[0][1], toks[1][0] == "assign", toks[2:]
        commands: list[list[Any]] = [[]]
        depth = 0
        group: list[tuple[str, str]] = []
        for tok in toks:
            if depth:
                if tok[0] == "lp":
                    depth += 1
                elif tok[0] == "rp":
                    depth -= 1
                    if depth == 0:
                        commands[-1].append(("group", _Pipe.parse(group)))
                        group = []
                        continue
                group.append(tok)
            elif tok[0] == "lp":
                depth = 1
            elif tok[0] == "pipe":
                commands.append([])
            elif tok[0] == "chain":
                if not commands[-1]:
                    raise TemplateError("field chain without a value")
                commands[-1][-1] = ("chained", commands[-1][-1], tok[1])
            else:
                commands[-1].append(tok)
        if depth:
            raise TemplateError("unclosed left paren")
        if any(not c for c in commands):
            raise TemplateError("missing value for command")
        return cls(commands, decl, assign)

    def eval(self, dot: Any, scopes: list[dict[str, Any]], tmpl: Template) -> Any:
        value: Any = _MISSING
        for command in self.commands:
            value = _eval_command(command, dot, scopes, tmpl, value)
        if self.decl is not None:
            if self.assign:
                for scope in reversed(scopes):
                    if self.decl in scope:
                        scope[self.decl] = value
                        break
                else:
                    raise TemplateError(f"undefined variable: {self.decl}")
            else:
                scopes[-1][self.decl] = value
        return value


def _lookup_var(name: str, scopes: list[dict[str, Any]]) -> Any:
    for scope in reversed(scopes):
        if name in scope:
            return scope[name]
    raise TemplateError(f"undefined variable: {name}")


def _field(value: Any, name: str) -> Any:
    if isinstance(value, GoStruct):
        return value.field(name)
    value = _unwrap(value)
    if isinstance(value, dict):
        return value.get(name)
    if value is None:
        raise TemplateError(f"nil pointer evaluating .{name}")
    raise TemplateError(f"can't evaluate field {name} in type {go_type(value)}")


def _chain(value: Any, chain: str) -> Any:
    for name in chain.strip(".").split("."):
        if name:
            value = _field(value, name)
    return value


def _operand(tok: Any, dot: Any, scopes: list[dict[str, Any]], tmpl: Template) -> Any:
    kind = tok[0]
    if kind == "group":
        return tok[1].eval(dot, scopes, tmpl)
    if kind == "chained":
        return _chain(_operand(tok[1], dot, scopes, tmpl), tok[2])
    text = tok[1]
    if kind in ("str", "raw"):
        return _go_unquote(text)
    if kind == "num":
        return float(text) if "." in text else int(text)
    if kind == "var":
        return _lookup_var(text, scopes)
    if kind == "field":
        return dot if text == "." else _chain(dot, text)
    if kind == "ident":
        if text in ("true", "false"):
            return text == "true"
        if text == "nil":
            return None
    raise TemplateError(f"unexpected {text!r}")


def _eval_command(command: list[Any], dot: Any, scopes: list[dict[str, Any]], tmpl: Template, piped: Any) -> Any:
    head = command[0]
    if head[0] == "ident" and head[1] not in ("true", "false", "nil"):
        name = head[1]
        func = FUNCS.get(name)
        if func is None:
            raise TemplateError(f'function "{name}" not defined')
        if name in ("and", "or"):
            return _and_or(name, command[1:], dot, scopes, tmpl, piped)
        args = [_operand(t, dot, scopes, tmpl) for t in command[1:]]
        if piped is not _MISSING:
            args.append(piped)
        return func(*args)
    if len(command) > 1 or piped is not _MISSING:
        raise TemplateError("can't give arguments to a non-function")
    return _operand(head, dot, scopes, tmpl)


def _and_or(name: str, toks: list[Any], dot: Any, scopes: list[dict[str, Any]], tmpl: Template, piped: Any) -> Any:
    values = (_operand(t, dot, scopes, tmpl) for t in toks)
    if piped is not _MISSING:
        values = (*values, piped)  # type: ignore[assignment]
    last: Any = None
    for value in values:
        last = value
        if (name == "and") != truth(value):
            return value
    return last


# -- values -------------------------------------------------------------------------------


def render(source: str, data: Any) -> str:
    return Template(source).render(data)
