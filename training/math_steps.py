"""Arithmetic written as steps: the expression parser and reducer the maths solvers share.

``eval_steps("3 + 4 * 2")`` reduces an integer expression one operation at a time (parentheses
first, then multiplication and division, then addition and subtraction, each left to right) and
returns the lines that say so and the value. ``Solution`` is what every solver in
``math_cot.py`` returns; ``numbered`` numbers a solver's lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Solution", "eval_steps", "numbered", "parse_expression"]


@dataclass(frozen=True)
class Solution:
    """The reasoning (numbered steps, ending in the result) and the result alone."""

    steps: str
    result: str


# --------------------------------------------------------------------------- expressions


@dataclass
class _Node:
    """An expression tree node: a number (``op`` None), a unary minus (``op`` "neg") or a binary
    operation. ``paren`` marks a node written inside parentheses."""

    op: str | None
    value: int = 0
    left: _Node | None = None
    right: _Node | None = None
    paren: bool = False

    @property
    def is_number(self) -> bool:
        return self.op is None


_TOKEN = re.compile(r"\s*(\d+|[-+*/()])")


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"unexpected character {text[pos]!r} in {text!r}")
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


class _Parser:
    """expr := term (('+'|'-') term)*; term := factor (('*'|'/') factor)*;
    factor := NUMBER | '-' NUMBER | '-' factor | '(' expr ')' — Python's precedence."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise ValueError("expression ends too early")
        self.pos += 1
        return token

    def expr(self) -> _Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            node = _Node(op, left=node, right=self.term())
        return node

    def term(self) -> _Node:
        node = self.factor()
        while self.peek() in ("*", "/"):
            op = self.take()
            node = _Node(op, left=node, right=self.factor())
        return node

    def factor(self) -> _Node:
        token = self.take()
        if token.isdigit():
            return _Node(None, int(token))
        if token == "-":
            if (nxt := self.peek()) is not None and nxt.isdigit():
                return _Node(None, -int(self.take()))
            return _Node("neg", left=self.factor())
        if token == "(":
            node = self.expr()
            if self.take() != ")":
                raise ValueError("unbalanced parentheses")
            node.paren = True
            return node
        raise ValueError(f"unexpected {token!r}")


def parse_expression(text: str) -> _Node:
    """The tree of an integer expression with + - * / and parentheses (ValueError if not one)."""
    parser = _Parser(_tokenize(text))
    node = parser.expr()
    if parser.peek() is not None:
        raise ValueError(f"unexpected {parser.peek()!r} in {text!r}")
    return node


def _render(node: _Node, top: bool = True) -> str:
    if node.is_number:
        text = str(node.value)
    elif node.op == "neg":
        assert node.left is not None
        inner = _render(node.left, top=False)
        text = f"-{inner}" if node.left.paren and not node.left.is_number else f"-({inner})"
    else:
        assert node.left is not None
        assert node.right is not None
        text = f"{_render(node.left, False)} {node.op} {_render(node.right, False)}"
    return f"({text})" if node.paren and not node.is_number and not top else text


def _reducible(node: _Node, inside: bool = False) -> list[tuple[_Node, bool]]:
    """Operations whose operands are plain numbers, left to right, each with whether it sits
    inside parentheses that are still written."""
    if node.is_number:
        return []
    inside = inside or node.paren
    children = [c for c in (node.left, node.right) if c is not None]
    if all(c.is_number for c in children):
        return [(node, inside)]
    return [found for c in children for found in _reducible(c, inside)]


def _next_step(root: _Node) -> tuple[_Node, bool]:
    """The operation to do next, in schoolbook order: inside parentheses first, then
    multiplication and division, then left to right. (Any operation whose operands are numbers
    may go first without changing the value; this order is the one people are taught.)"""
    ready = _reducible(root)
    for wanted in (
        lambda n, inside: inside,
        lambda n, inside: n.op in ("*", "/", "neg"),
        lambda n, inside: True,
    ):
        for node, inside in ready:
            if wanted(node, inside):
                return node, inside
    raise AssertionError("no operation left in a non-number tree")


def _has_additive(node: _Node) -> bool:
    if node.is_number:
        return False
    if node.op in ("+", "-"):
        return True
    return any(c is not None and _has_additive(c) for c in (node.left, node.right))


_OP_WORDS = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide"}


def eval_steps(expression: str) -> tuple[list[str], int] | None:
    """Reduce ``expression`` one operation at a time: the steps as sentences, and the value.

    None when a division is not exact or divides by zero (reasoning-gym would floor it).

    >>> steps, value = eval_steps("(1 + 2) * 3")
    >>> steps
    ['Work inside the parentheses first: 1 + 2 = 3, which leaves 3 * 3.', 'Multiply: 3 * 3 = 9.']
    >>> value
    9
    """
    root = parse_expression(expression)
    root.paren = False  # parentheses around the whole expression change nothing
    steps: list[str] = []
    while not root.is_number:
        node, inside = _next_step(root)
        a = node.left.value if node.left else 0
        b = node.right.value if node.right else 0
        if node.op == "neg":
            value, shown = -a, f"-({a}) = {-a}"
        elif node.op == "/":
            if b == 0 or a % b:
                return None
            value, shown = a // b, f"{a} / {b} = {a // b}"
        else:
            value = a + b if node.op == "+" else a - b if node.op == "-" else a * b
            shown = f"{a} {node.op} {b} = {value}"
        if node.op == "neg":
            why = "Apply the minus sign in front of the parentheses"
        elif inside:
            why = "Work inside the parentheses first"
        elif node.op in ("*", "/") and _has_additive(root):
            why = "Multiplication and division come before addition and subtraction"
        else:
            why = str(_OP_WORDS[node.op or "+"]).capitalize()
        node.op, node.value, node.left, node.right = None, value, None, None
        rest = f", which leaves {_render(root)}." if not root.is_number else "."
        steps.append(f"{why}: {shown}{rest}")
    return steps, root.value


def numbered(lines: list[str]) -> str:
    return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1))
