"""The error tree written at the top of domain/errors.py is the tree the classes form."""

from __future__ import annotations

import inspect
import re

from smsgate.domain import errors


def _documented_tree() -> dict[str, str]:
    """child -> parent, read from the drawing in the module docstring."""
    lines = (errors.__doc__ or "").splitlines()
    drawing = lines[lines.index("    DomainError") :]
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in drawing:
        if not line.strip():
            break
        found = re.match(r"^([\s│├└─]*)([A-Z][A-Za-z]+)\b", line)
        assert found, line
        depth = len(found.group(1))
        name = found.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((depth, name))
    return parents


def _actual_tree() -> dict[str, str]:
    tree: dict[str, str] = {}
    for name, obj in vars(errors).items():
        is_error = inspect.isclass(obj) and issubclass(obj, errors.DomainError)
        if is_error and obj is not errors.DomainError:
            tree[name] = obj.__bases__[0].__name__
    return tree


def test_docstring_draws_every_error_under_its_real_parent() -> None:
    assert _documented_tree() == _actual_tree()


def test_public_names_are_the_errors_and_the_msisdn_problem() -> None:
    assert set(errors.__all__) == {*_actual_tree(), "DomainError", "MsisdnProblem"}


def test_too_long_errors_carry_their_counts() -> None:
    exc = errors.TextTooLong("x", parts=4, max_parts=3)
    assert (exc.parts, exc.max_parts, str(exc)) == (4, 3, "x")
    template = errors.TemplateTooLong("y", parts=2, max_parts=1)
    assert isinstance(template, errors.InvalidTemplate)
    assert isinstance(template, errors.DomainError)
