"""Step-by-step solutions for reasoning-gym maths tasks, checked against the gold answer.

What: a registry ``SOLVERS`` from a reasoning-gym dataset name to a function that reads one
entry (``question``, ``answer``, ``metadata``) and writes its solution as numbered steps, or
returns None when it cannot. ``solve`` then checks the solver's own result with the dataset's
``score_answer``: a row is kept only if the written steps reach the gold answer.

  gsm_symbolic      the generator's own ``metadata["answer_cot"]`` (its ``#### N`` line checked)
  chain_sum         left-to-right sums from ``metadata["expression"]``
  basic_arithmetic  the expression reduced one operation at a time: parentheses first, then
                    multiplication and division, then addition and subtraction, left to right.
                    reasoning-gym evaluates ``/`` as floor division; a division that is not
                    exact is not written (the row is dropped, not explained wrongly)
  simple_equations  a linear equation ``a*x + b = c`` (sympy's printing): collect, move the
                    constant, divide, then substitute back as a check
  leg_counting      legs per animal (reasoning-gym's own table) times the count, then the sum
  products          left to right; a factor of two or more digits split into place values
                    (``42 * 25``: ``42 * 20 + 42 * 5``)
  gcd               Euclid's algorithm, one division with remainder a line
  lcm               the multiples of the larger number when the LCM is among its first ten,
                    else ``a * b / GCD(a, b)`` with Euclid's steps

The expression reducer the arithmetic solvers share, and ``Solution``, live in ``math_steps.py``.

Why written steps: most generators give only the answer; SFT on answers alone teaches the
model to guess. The steps here are computed, so they are right whenever the check passes.

Run (prints a solved example per dataset)::

    python -m safework.training.math_cot
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from .math_steps import Solution, eval_steps, numbered, parse_expression

__all__ = [
    "DEFAULT_MATH_MIX",
    "GENERATOR_SETTINGS",
    "SOLVERS",
    "Solution",
    "eval_steps",
    "json_safe",
    "parse_expression",
    "score",
    "solve",
    "solve_basic_arithmetic",
    "solve_chain_sum",
    "solve_gcd",
    "solve_gsm_symbolic",
    "solve_lcm",
    "solve_leg_counting",
    "solve_products",
    "solve_simple_equations",
]


def _expression_solution(expression: str, intro: str) -> Solution | None:
    try:
        found = eval_steps(expression)
    except ValueError:
        return None
    if found is None:
        return None
    steps, value = found
    if not steps:
        return Solution(f"{intro}\nThe expression is already a single number: {value}.", str(value))
    body = f"{intro}\n{numbered(steps)}\nSo the result is {value}."
    return Solution(body, str(value))


def solve_chain_sum(entry: Mapping[str, Any]) -> Solution | None:
    """Add and subtract from left to right."""
    expression = str(entry["metadata"]["expression"])
    return _expression_solution(
        expression, f"I need {expression}. Only + and - appear, so I go from left to right."
    )


def solve_basic_arithmetic(entry: Mapping[str, Any]) -> Solution | None:
    """Parentheses, then * and /, then + and -, one operation at a time."""
    expression = str(entry["metadata"]["expression"])
    return _expression_solution(
        expression,
        f"I need to evaluate {' '.join(expression.split())}, one operation at a time: "
        "parentheses first, then multiplication and division, then addition and subtraction, "
        "each from left to right.",
    )


# --------------------------------------------------------------------------- equations

_TERM = re.compile(r"^(\d+)\*([a-z])$|^([a-z])$|^(\d+)$")


def _linear_side(text: str, variable: str) -> tuple[int, int] | None:
    """(coefficient of ``variable``, constant) of a sum like ``-98*e + 56``; None otherwise."""
    compact = text.replace(" ", "")
    if not compact:
        return None
    if compact[0] not in "+-":
        compact = "+" + compact
    terms = re.findall(r"([+-])([^+-]+)", compact)
    if "".join(sign + body for sign, body in terms) != compact:
        return None
    coef = const = 0
    for sign, body in terms:
        match = _TERM.match(body)
        if not match:
            return None
        factor = -1 if sign == "-" else 1
        if match.group(1) is not None:
            if match.group(2) != variable:
                return None
            coef += factor * int(match.group(1))
        elif match.group(3) is not None:
            if match.group(3) != variable:
                return None
            coef += factor
        else:
            const += factor * int(match.group(4))
    return coef, const


def _linear_text(coef: int, const: int, variable: str) -> str:
    term = {1: variable, -1: f"-{variable}"}.get(coef, f"{coef}*{variable}")
    if const == 0:
        return term
    return f"{term} {'+' if const > 0 else '-'} {abs(const)}"


def solve_simple_equations(entry: Mapping[str, Any]) -> Solution | None:
    """Solve ``a*x + b = c`` (either side may hold either kind of term)."""
    meta = entry["metadata"]
    variable, equation = str(meta["variable"]), str(meta["equation"])
    if equation.count("=") != 1:
        return None
    left_text, right_text = equation.split("=")
    left, right = _linear_side(left_text, variable), _linear_side(right_text, variable)
    if left is None or right is None:
        return None
    coef, const = left[0] - right[0], right[1] - left[1]  # coef * x = const
    if coef == 0 or const % coef:
        return None
    value = const // coef
    lines = [f"The equation is {equation.strip()}; I want {variable} alone on one side."]
    if right[0]:
        lines.append(
            f"Collect the {variable} terms on the left: "
            f"{_linear_text(coef, left[1], variable)} = {right[1]}."
        )
    b = left[1]
    if b > 0:
        lines.append(
            f"Subtract {b} from both sides: {_linear_text(coef, 0, variable)} = "
            f"{right[1]} - {b} = {const}."
        )
    elif b < 0:
        lines.append(
            f"Add {-b} to both sides: {_linear_text(coef, 0, variable)} = "
            f"{right[1]} + {-b} = {const}."
        )
    if coef != 1:
        lines.append(f"Divide both sides by {coef}: {variable} = {const} / {coef} = {value}.")
    lhs = left[0] * value + left[1]
    rhs = right[0] * value + right[1]
    check = "both sides agree" if lhs == rhs else "the sides differ"
    lines.append(
        f"Check: with {variable} = {value} the left side is {lhs} and the right side is "
        f"{rhs}, so {check}."
    )
    if lhs != rhs:
        return None
    body = f"{numbered(lines)}\nSo {variable} = {value}."
    return Solution(body, str(value))


# --------------------------------------------------------------------------- word problems


@cache
def _legs_table() -> dict[str, int]:
    from reasoning_gym.arithmetic.leg_counting import ANIMALS

    return dict(ANIMALS)


def solve_leg_counting(entry: Mapping[str, Any]) -> Solution | None:
    """Legs per animal times how many there are, then the total."""
    animals = entry["metadata"].get("animals")
    if not isinstance(animals, dict) or not animals:
        return None
    legs = _legs_table()
    lines, products = [], []
    for name, count in animals.items():
        if name not in legs:
            return None
        each = legs[name]
        product = each * int(count)
        products.append(product)
        if each == 0:
            article = "An" if name[0] in "aeiou" else "A"
            lines.append(f"{article} {name} has no legs, so {count} of them add 0.")
            continue
        unit = "leg" if each == 1 else "legs"
        article = "An" if name[0] in "aeiou" else "A"
        lines.append(
            f"{article} {name} has {each} {unit}; {count} of them: {count} × {each} = {product}."
        )
    total = sum(products)
    lines.append(f"Add them up: {' + '.join(map(str, products))} = {total}.")
    return Solution(
        f"I count the legs of each kind of animal, then add.\n{numbered(lines)}", str(total)
    )


# --------------------------------------------------------------------------- products, gcd, lcm


def _times(a: int, b: int) -> tuple[list[str], int]:
    """``a * b`` in steps a small model can check: a one-digit factor at once, a longer one
    split into its place values (``42 * 25 = 42 * 20 + 42 * 5``)."""
    small, big = sorted((a, b), key=lambda x: (len(str(abs(x))), x))
    if abs(small) < 10:
        return [f"{a} * {b} = {a * b}."], a * b
    sign = -1 if small < 0 else 1
    digits = str(abs(small))
    parts = [int(d) * 10 ** (len(digits) - i - 1) for i, d in enumerate(digits) if d != "0"]
    lines = [f"Split {abs(small)} into {' + '.join(map(str, parts))}."]
    partial = [big * p for p in parts]
    lines += [f"{big} * {p} = {v}." for p, v in zip(parts, partial, strict=True)]
    total = sign * sum(partial)
    if len(partial) > 1:
        lines.append(f"Add: {' + '.join(map(str, partial))} = {sum(partial)}.")
    if sign < 0:
        lines.append(f"One factor is negative, so the product is {total}.")
    return lines, total


def solve_products(entry: Mapping[str, Any]) -> Solution | None:
    """Multiply left to right, each product through place values."""
    terms = [t.strip() for t in str(entry["metadata"].get("expression", "")).split("*")]
    try:
        numbers = [int(t) for t in terms]
    except ValueError:
        return None
    if len(numbers) < 2:
        return None
    value, lines = numbers[0], []
    for n in numbers[1:]:
        steps, value = _times(value, n)
        lines += steps
    expression = " * ".join(map(str, numbers))
    body = f"I need {expression}.\n{numbered(lines)}\nSo the result is {value}."
    return Solution(body, str(value))


def _euclid(a: int, b: int) -> tuple[list[str], int]:
    """Euclid's algorithm on ``a`` and ``b`` as sentences, and the GCD."""
    a, b = max(a, b), min(a, b)
    lines = []
    while b:
        q, r = divmod(a, b)
        lines.append(f"{a} = {q} * {b} + {r}.")
        a, b = b, r
    return lines, a


def _numbers(entry: Mapping[str, Any]) -> list[int] | None:
    numbers = entry["metadata"].get("numbers")
    if not isinstance(numbers, list) or len(numbers) < 2:
        return None
    if not all(isinstance(n, int) and n > 0 for n in numbers):
        return None
    return numbers


def solve_gcd(entry: Mapping[str, Any]) -> Solution | None:
    """Euclid's algorithm: divide, keep the remainder, until it is 0."""
    numbers = _numbers(entry)
    if numbers is None:
        return None
    value, lines = numbers[0], []
    for n in numbers[1:]:
        steps, found = _euclid(value, n)
        lines += [*steps, f"The last divisor is {found}, so GCD({value}, {n}) = {found}."]
        value = found
    intro = f"I use Euclid's algorithm on {', '.join(map(str, numbers))}."
    return Solution(f"{intro}\n{numbered(lines)}\nSo the GCD is {value}.", str(value))


_MULTIPLES_AT_MOST = 10
"""List multiples of the larger number when the LCM is at most this many of them away."""


def solve_lcm(entry: Mapping[str, Any]) -> Solution | None:
    """Small cases by listing multiples of the larger number; others as a * b / GCD(a, b)."""
    numbers = _numbers(entry)
    if numbers is None:
        return None
    value, lines = numbers[0], []
    for n in numbers[1:]:
        big, small = max(value, n), min(value, n)
        lcm = big * small // math.gcd(big, small)
        if lcm // big <= _MULTIPLES_AT_MOST:
            multiples = ", ".join(str(big * k) for k in range(1, lcm // big + 1))
            lines.append(f"Multiples of {big}: {multiples}.")
            lines.append(f"{lcm} is the first that {small} divides, so LCM({value}, {n}) = {lcm}.")
        else:
            steps, g = _euclid(big, small)
            lines += steps
            lines.append(f"GCD({big}, {small}) = {g}.")
            lines.append(f"LCM = {big} * {small} / {g} = {big * small} / {g} = {lcm}.")
        value = lcm
    intro = f"I need the least common multiple of {', '.join(map(str, numbers))}."
    return Solution(f"{intro}\n{numbered(lines)}\nSo the LCM is {value}.", str(value))


_FINAL = re.compile(r"^\s*####\s*(.+?)\s*$", re.MULTILINE)


def solve_gsm_symbolic(entry: Mapping[str, Any]) -> Solution | None:
    """The generator's worked solution, without its ``#### N`` line (whose N is the result)."""
    cot = str(entry["metadata"].get("answer_cot") or "").strip()
    finals = _FINAL.findall(cot)
    if not cot or len(finals) != 1:
        return None
    result = finals[0].replace(",", "")
    body = _FINAL.sub("", cot).strip()
    if not body:
        return None
    return Solution(f"{body}\nSo the answer is {result}.", result)


DEFAULT_MATH_MIX: dict[str, float] = {
    "gsm_symbolic": 0.2,
    "basic_arithmetic": 0.15,
    "chain_sum": 0.15,
    "products": 0.15,
    "gcd": 0.1,
    "lcm": 0.1,
    "simple_equations": 0.075,
    "leg_counting": 0.075,
}
"""Share of the maths rows per reasoning-gym dataset in the ``cot-sft`` recipe: every family
evaluation measures capability on (``capability.CAPABILITY_LEVELS``: chain sums, arithmetic,
products, GCD, LCM, on questions the data never holds), and the word problems, equations and
leg counting the dev split's ``math`` group scores."""

GENERATOR_SETTINGS: dict[str, dict[str, int]] = {
    "basic_arithmetic": {"max_terms": 5, "max_digits": 3},
    "chain_sum": {"max_terms": 5, "max_digits": 3},
    "leg_counting": {"max_animals": 6, "max_instances": 10},
    "products": {"min_digits": 1, "max_digits": 2},
    "gcd": {"max_value": 100},
    "lcm": {"max_value": 20},
}
"""reasoning-gym config overrides: smaller numbers than its defaults (up to 6 terms of 4
digits), which a small model can learn to work through; recorded in the manifest."""

SOLVERS: dict[str, Callable[[Mapping[str, Any]], Solution | None]] = {
    "gsm_symbolic": solve_gsm_symbolic,
    "chain_sum": solve_chain_sum,
    "basic_arithmetic": solve_basic_arithmetic,
    "simple_equations": solve_simple_equations,
    "leg_counting": solve_leg_counting,
    "products": solve_products,
    "gcd": solve_gcd,
    "lcm": solve_lcm,
}
"""reasoning-gym dataset name -> the function writing its steps."""


@cache
def _score_fn(dataset: str) -> Callable[[str, dict[str, Any]], float]:
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(dataset)


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON data: tuples as lists, fractions and other numbers as strings.

    reasoning-gym entries hold tuples and ``Fraction`` objects; rows store this form, and the
    solvers and the score check read it too, so evaluation from a stored row scores the same.
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return str(value)


def score(dataset: str, answer: str, entry: dict[str, Any]) -> float:
    """reasoning-gym's score of ``answer`` for ``entry`` (1.0 = correct)."""
    return float(_score_fn(dataset)(answer, entry))


def solve(dataset: str, entry: dict[str, Any]) -> Solution | None:
    """The written solution of ``entry`` if its result scores 1.0 with reasoning-gym, else None.

    A ``KeyError`` for a dataset without a solver."""
    solution = SOLVERS[dataset](entry)
    if solution is None or score(dataset, solution.result, entry) != 1.0:
        return None
    return solution


def main() -> int:
    """Print one solved entry per dataset."""
    import reasoning_gym

    for name in SOLVERS:
        entry = json_safe(reasoning_gym.create_dataset(name, size=1, seed=7)[0])
        solution = solve(name, entry)
        print(f"== {name}\n{entry['question']}\n--\n{solution.steps if solution else None}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
