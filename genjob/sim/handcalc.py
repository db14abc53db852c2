"""Reproduce a hand-made design's cost arithmetic from its own inputs, step by step.

A scenario file may carry a `design:` section: the design's inputs and its arithmetic as a list
of steps (`name`, `formula` over inputs and earlier steps, and the figure the design `stated`).
Each step is recomputed; later steps use the stated figure, as the design did, so one slip does not
hide the others. A step whose figure does not follow from its inputs is reported, not corrected.
Formulas allow numbers, names, + - * / and round(x, n); nothing else is evaluated.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

_OPS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    formula: str
    stated: float | None = Field(
        None, description="The design's own figure for this step, if it printed one."
    )
    note: str = ""


class Design(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    source: str
    inputs: dict[str, float]
    steps: list[Step] = Field(min_length=1)


class StepResult(BaseModel):
    name: str
    formula: str
    computed: float
    stated: float | None
    matches: bool | None
    note: str


def evaluate(formula: str, names: dict[str, float]) -> float:
    """The value of an arithmetic formula over `names` (numbers, + - * /, round(x, n))."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ValueError(f"formula {formula!r}: unknown name {node.id!r}")
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "round"
            and len(node.args) == 2
            and not node.keywords
        ):
            return round(walk(node.args[0]), int(walk(node.args[1])))
        raise ValueError(f"formula {formula!r}: only numbers, names, + - * / and round(x, n) are allowed")

    try:
        tree = ast.parse(formula, mode="eval")
    except SyntaxError:
        raise ValueError(f"formula {formula!r} is not an arithmetic expression") from None
    return walk(tree)


def _decimals(value: float) -> int:
    text = repr(value)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0


def reproduce(design: Design) -> list[StepResult]:
    """Recompute every step; a stated figure matches when the computed one rounds to it."""
    names = dict(design.inputs)
    results = []
    for step in design.steps:
        if step.name in names:
            raise ValueError(f"design step {step.name!r} reuses a name")
        computed = evaluate(step.formula, names)
        matches = None
        if step.stated is not None:
            matches = round(computed, _decimals(step.stated)) == step.stated
        names[step.name] = step.stated if step.stated is not None else computed
        results.append(
            StepResult(
                name=step.name,
                formula=step.formula,
                computed=computed,
                stated=step.stated,
                matches=matches,
                note=step.note,
            )
        )
    return results


def load_design(path: str | Path) -> Design | None:
    """The `design:` section of a scenario file, or None when it has none."""
    data: Any = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or "design" not in data:
        return None
    return Design.model_validate(data["design"])


def format_reproduction(design: Design, results: list[StepResult]) -> str:
    lines = [f"design: {design.title}", f"  source: {design.source}"]
    width = max(len(r.name) for r in results)
    for r in results:
        if r.stated is None:
            verdict = "(analysis)"
        elif r.matches:
            verdict = f"= stated {r.stated:g}"
        else:
            verdict = f"!= stated {r.stated:g}: the design's figure does not follow from its inputs"
        line = f"  {r.name.ljust(width)}  {r.formula} = {r.computed:.6g}  {verdict}"
        lines.append(line + (f"  [{r.note}]" if r.note else ""))
    return "\n".join(lines)
