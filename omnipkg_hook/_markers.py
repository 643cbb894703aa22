"""PEP 508 environment markers, standard library only: ``Marker(text).evaluate(env)``.

``pip-omni`` makes a bubble from stored dists without ``packaging`` (whose import costs more
than the work), so it needs to evaluate a dist's ``Requires-Dist`` markers itself. This
follows ``packaging.markers`` 26 (the grammar, the ``python_implementation`` /
``os.name`` aliases, PEP 685 ``extra`` normalisation, version comparison only for the
version-valued names, string comparison otherwise); ``tests/test_markers.py`` checks the two
against each other on a corpus, as ``tests/test_pep440.py`` does for :mod:`._pep440`.

Errors: :class:`InvalidMarker` (a ``ValueError``) for text that does not parse,
:class:`UndefinedEnvironmentName` (a ``KeyError``) for a name the environment lacks,
:class:`UndefinedComparison` (a ``ValueError``) for an operator the values do not allow.
"""

from __future__ import annotations

import re

from ._pep440 import InvalidSpecifier, _parse_one
from .store import normalize

__all__ = ["Marker", "InvalidMarker", "UndefinedComparison", "UndefinedEnvironmentName"]


class InvalidMarker(ValueError):
    """Text that is not a PEP 508 marker."""


class UndefinedComparison(ValueError):
    """An operator the compared values do not support (``~=`` on a string...)."""


class UndefinedEnvironmentName(KeyError):
    """A marker name the evaluation environment does not define."""


_WS = re.compile(r"[ \t]*")
# The variable names, in the order of packaging's pattern
# \b(python_version|python_full_version|os[._]name|sys[._]platform|platform_(?:release|system)
# |platform[._](?:version|machine|python_implementation)|python_implementation
# |implementation_(?:name|version)|extras?|dependency_groups)\b, which :func:`_variable_at`
# matches by hand: compiling that alternation cost more than parsing all of a bubble's markers.
_VARIABLES = (
    "python_version", "python_full_version", "os.name", "os_name", "sys.platform", "sys_platform",
    "platform_release", "platform_system", "platform.version", "platform_version", "platform.machine",
    "platform_machine", "platform.python_implementation", "platform_python_implementation",
    "python_implementation", "implementation_name", "implementation_version", "extras", "extra",
    "dependency_groups",
)


def _word(char: str) -> bool:
    return char.isalnum() or char == "_"  # re's \w on str


def _variable_at(text: str, pos: int) -> str | None:
    """The variable name the pattern above matches at ``pos`` (a word boundary on each side), or None."""
    if pos > 0 and _word(text[pos - 1]):
        return None
    for name in _VARIABLES:
        if text.startswith(name, pos):
            end = pos + len(name)
            if end == len(text) or not _word(text[end]):
                return name
    return None
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_OP = re.compile(r"===|==|~=|!=|<=|>=|<|>")
_BOOLOP = re.compile(r"\b(or|and)\b")
_IN = re.compile(r"\bin\b")
_NOT = re.compile(r"\bnot\b")
_MAX_NESTING = 100  # packaging's limit

_REQUIRE_VERSION = {"implementation_version", "platform_release", "python_full_version", "python_version"}
_SETS = {"extras", "dependency_groups"}
_STRING_OPS = {
    "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b,
    "<": lambda a, b: False,
    "<=": lambda a, b: a == b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">=": lambda a, b: a == b,
    ">": lambda a, b: False,
}


class _Var(str):
    """A marker variable (its canonical name); a plain ``str`` is a quoted value."""

    __slots__ = ()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def fail(self, what: str) -> InvalidMarker:
        return InvalidMarker(f"invalid marker {self.text!r}: {what} at position {self.pos}")

    def match(self, pattern: re.Pattern) -> str | None:
        m = pattern.match(self.text, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return m.group(0)

    def ws(self) -> None:
        self.pos = _WS.match(self.text, self.pos).end()

    def marker(self, depth: int) -> list:
        out = [self.atom(depth)]
        while True:
            op = self.match(_BOOLOP)
            if op is None:
                return out
            out += [op, self.atom(depth)]

    def atom(self, depth: int):
        self.ws()
        if self.text.startswith("(", self.pos):
            if depth >= _MAX_NESTING:
                raise self.fail(f"nested more than {_MAX_NESTING} levels deep")
            self.pos += 1
            self.ws()
            inner = self.marker(depth + 1)
            self.ws()
            if not self.text.startswith(")", self.pos):
                raise self.fail("expected ')'")
            self.pos += 1
        else:
            inner = self.item()
        self.ws()
        return inner

    def item(self) -> tuple:
        lhs = self.var()
        self.ws()
        if self.match(_IN) is not None:
            op = "in"
        elif self.match(_NOT) is not None:
            if self.match(re.compile(r"[ \t]+")) is None or self.match(_IN) is None:
                raise self.fail("expected 'in' after 'not'")
            op = "not in"
        else:
            op = self.match(_OP)
            if op is None:
                raise self.fail("expected a marker operator, one of <=, <, !=, ==, >=, >, ~=, ===, in, not in")
        self.ws()
        rhs = self.var()
        # PEP 685: extra names compare normalised
        if isinstance(lhs, _Var) and lhs == "extra" and not isinstance(rhs, _Var):
            rhs = normalize(rhs)
        elif isinstance(rhs, _Var) and not isinstance(lhs, _Var) and (rhs == "extra" or rhs in _SETS):
            lhs = normalize(lhs)
        return (lhs, op, rhs)

    def var(self) -> str:
        name = _variable_at(self.text, self.pos)
        if name is not None:
            self.pos += len(name)
            name = name.replace(".", "_")
            return _Var("platform_python_implementation" if name == "python_implementation" else name)
        quoted = self.match(_QUOTED)
        if quoted is None:
            raise self.fail("expected a marker variable or quoted string")
        if "\\" not in quoted and quoted.isprintable():
            return quoted[1:-1]
        import ast

        try:
            return str(ast.literal_eval(quoted))
        except (SyntaxError, ValueError):
            raise self.fail("invalid quoted string") from None


class Marker:
    """A parsed marker; :meth:`evaluate` against an environment dict such as
    ``Interpreter.markers`` (``extra`` defaults to ``""``)."""

    __slots__ = ("text", "_tree")

    def __init__(self, text: str) -> None:
        parser = _Parser(text)
        self._tree = parser.marker(0)
        parser.ws()
        if parser.pos != len(text):
            raise parser.fail("expected end of marker expression")
        self.text = text

    def __repr__(self) -> str:
        return f"<Marker({self.text!r})>"

    def evaluate(self, environment: dict) -> bool:
        env = {"extra": "", **environment}
        extra = env["extra"]
        env["extra"] = normalize(extra) if isinstance(extra, str) and extra else ""
        full = env.get("python_full_version")
        if isinstance(full, str) and full.endswith("+"):
            env["python_full_version"] = full + "local"
        return _evaluate(self._tree, env)


def _lookup(env: dict, key: str):
    try:
        return env[key]
    except KeyError:
        raise UndefinedEnvironmentName(key) from None


def _evaluate(tree: list, env: dict) -> bool:
    groups: list[list[bool]] = [[]]
    for node in tree:
        if isinstance(node, list):
            groups[-1].append(_evaluate(node, env))
        elif isinstance(node, tuple):
            groups[-1].append(_compare(*node, env))
        elif node == "or":
            groups.append([])
    return any(all(g) for g in groups)


def _compare(lhs: str, op: str, rhs: str, env: dict) -> bool:
    if isinstance(lhs, _Var):
        key = str(lhs)
        left, right = _lookup(env, key), str(rhs)
    else:
        key = str(rhs)
        left, right = lhs, _lookup(env, key)
    if key in _SETS:
        if isinstance(right, str):
            if not isinstance(lhs, _Var):
                raise UndefinedComparison(f"marker {key!r} must be a set, not {right!r}")
            raise UndefinedComparison(f"set-valued marker {key!r} can only be used as '\"name\" in {key}'")
        left, right = normalize(left), {normalize(v) for v in right}
    elif not isinstance(left, str) or not isinstance(right, str):
        raise UndefinedComparison(f"marker {key!r} must be a string, not {left if not isinstance(left, str) else right!r}")
    if key in _REQUIRE_VERSION:
        try:
            spec = _parse_one(f"{op}{right}".strip(), f"{op}{right}")
        except (InvalidSpecifier, ValueError):
            pass
        else:
            from ._pep440 import _coerce

            parsed, raw = _coerce(left)
            return spec.matches(parsed, raw)
    oper = _STRING_OPS.get(op)
    if oper is None:
        raise UndefinedComparison(f"undefined {op!r} on {left!r} and {right!r}")
    return oper(left, right)
