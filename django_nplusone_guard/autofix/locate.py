"""Which expression in a file is the queryset a finding's fix goes on.

A finding's ``fix_at`` names the line where the queryset was *evaluated*: often not the
line that builds it (``return render(..., {"books": books})`` evaluates ``books``, built a
line above). This module reads that line as a person would: a queryset written on the line
itself (``for p in Publisher.objects.order_by("pk")``, ``return Book.objects.all()``), else
the local variable the line uses that was last assigned a queryset earlier in the same
function. A line that offers none, or more than one, is left for a person to fix.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from .plan import EditError

__all__ = ["find_querysets"]

#: QuerySet and manager methods that return a queryset: a chain calling one is a queryset.
_QUERYSET_METHODS = frozenset({
    "all", "filter", "exclude", "order_by", "select_related", "prefetch_related", "only",
    "defer", "annotate", "alias", "distinct", "using", "reverse", "none", "union",
    "intersection", "difference", "extra", "get_queryset", "select_for_update", "values",
    "values_list", "complex_filter",
})  # fmt: skip
_MANAGERS = frozenset({"objects", "_default_manager", "_base_manager"})
_EVALUATING = frozenset({"list", "tuple", "sorted", "set", "len"})


def _walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _module_functions(module: cst.Module) -> set[str]:
    return {n.name.value for n in module.body if isinstance(n, cst.FunctionDef)}


def looks_like_queryset(node: cst.BaseExpression, functions: set[str]) -> bool:
    """Whether ``node`` reads as a queryset being built: a chain through ``.objects`` or a
    queryset method, or a call of a function of the same module (``_newest_books()``),
    under any slices and ``list(...)``."""
    while True:
        if isinstance(node, cst.Subscript):
            node = node.value
        elif (
            isinstance(node, cst.Call)
            and isinstance(node.func, cst.Name)
            and node.func.value in _EVALUATING
            and node.args
        ):
            node = node.args[0].value
        else:
            break
    while True:
        if isinstance(node, cst.Call):
            if isinstance(node.func, cst.Attribute):
                if node.func.attr.value in _QUERYSET_METHODS:
                    return True
                node = node.func.value
            elif isinstance(node.func, cst.Name):
                return node.func.value in functions
            else:
                return False
        elif isinstance(node, cst.Attribute):
            if node.attr.value in _MANAGERS:
                return True
            node = node.value
        elif isinstance(node, cst.Subscript):
            node = node.value
        else:
            return False


def _outermost(
    root: cst.CSTNode, functions: set[str], skip: cst.CSTNode | None = None
) -> list[cst.BaseExpression]:
    """The queryset-looking expressions under ``root`` not inside another one."""
    found: list[cst.BaseExpression] = []

    def visit(node: cst.CSTNode) -> None:
        if node is skip:
            return
        if isinstance(node, cst.BaseExpression) and looks_like_queryset(node, functions):
            found.append(node)
            return
        if isinstance(node, cst.FunctionDef | cst.ClassDef | cst.Lambda):
            return
        for child in node.children:
            visit(child)

    visit(root)
    return found


class _Index:
    """Positions of every node, and the statements and functions that cover a line."""

    def __init__(self, wrapper: MetadataWrapper) -> None:
        self.module = wrapper.module
        self.positions: dict[cst.CSTNode, CodeRange] = dict(wrapper.resolve(PositionProvider))

    def covers(self, node: cst.CSTNode, line: int) -> bool:
        where = self.positions.get(node)
        return where is not None and where.start.line <= line <= where.end.line

    def statement_at(self, line: int) -> cst.CSTNode | None:
        """The simple statement covering ``line``, or the compound statement (``for``,
        ``def``...) whose header starts on it; innermost first."""
        best: cst.CSTNode | None = None
        for node in _walk(self.module):
            if isinstance(node, cst.SimpleStatementLine) and self.covers(node, line):
                best = node  # a walk visits the outer statement before the inner
            elif (
                isinstance(node, cst.BaseCompoundStatement)
                and self.positions[node].start.line == line
            ):
                best = node
        return best

    def function_at(self, line: int) -> cst.FunctionDef | None:
        best: cst.FunctionDef | None = None
        for node in _walk(self.module):
            if isinstance(node, cst.FunctionDef) and self.covers(node, line):
                best = node
        return best


def _header(statement: cst.CSTNode) -> list[cst.CSTNode]:
    """The parts of a compound statement written on its first line."""
    if isinstance(statement, cst.For):
        return [statement.target, statement.iter]
    if isinstance(statement, cst.If | cst.While):
        return [statement.test]
    if isinstance(statement, cst.With):
        return list(statement.items)
    if isinstance(statement, cst.FunctionDef):
        return []
    return [statement] if not isinstance(statement, cst.BaseCompoundStatement) else []


def _returns(function: cst.FunctionDef, functions: set[str]) -> list[cst.BaseExpression]:
    values: list[cst.BaseExpression] = []

    def visit(node: cst.CSTNode) -> None:
        if isinstance(node, cst.FunctionDef | cst.ClassDef | cst.Lambda) and node is not function:
            return
        if isinstance(node, cst.Return) and node.value is not None:
            if looks_like_queryset(node.value, functions):
                values.append(node.value)
            return
        for child in node.children:
            visit(child)

    visit(function)
    return values


def find_querysets(
    module: cst.Module, line: int
) -> tuple[MetadataWrapper, list[cst.BaseExpression]]:
    """The wrapper whose module holds the nodes, and the queryset expression(s) a fix on
    ``line`` goes on: one expression, or every ``return`` of the function defined on that
    line (``def get_queryset``). :class:`EditError` says why there is none."""
    wrapper = MetadataWrapper(module)
    index = _Index(wrapper)
    functions = _module_functions(wrapper.module)
    statement = index.statement_at(line)
    if statement is None:
        raise EditError(f"no statement on line {line}")
    if isinstance(statement, cst.FunctionDef):
        returns = _returns(statement, functions)
        if not returns:
            raise EditError(f"{statement.name.value}() returns no queryset written in it")
        return wrapper, returns
    parts = _header(statement)
    direct = [found for part in parts for found in _outermost(part, functions)]
    if len(direct) == 1:
        return wrapper, direct
    if len(direct) > 1:
        raise EditError(f"several querysets on line {line}: which one needs it is unclear")
    return wrapper, [_assigned(index, statement, parts, line, functions)]


def _assigned(
    index: _Index,
    statement: cst.CSTNode,
    parts: list[cst.CSTNode],
    line: int,
    functions: set[str],
) -> cst.BaseExpression:
    """The queryset last assigned, before ``line`` in the same function, to a variable
    the statement reads (``books`` in ``render(..., {"books": books})``)."""
    function = index.function_at(line)
    if function is None:
        raise EditError(f"no queryset on line {line}")
    read = {n.value for part in parts for n in _walk(part) if isinstance(n, cst.Name)}
    assignments: dict[str, cst.BaseExpression] = {}
    for node in _walk(function):
        if not isinstance(node, cst.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0].target
        where = index.positions.get(node)
        if not isinstance(target, cst.Name) or target.value not in read or where is None:
            continue
        if where.end.line >= line:
            continue
        values = _outermost(node.value, functions)
        if len(values) == 1 and values[0] is node.value:
            assignments[target.value] = node.value
        else:
            assignments.pop(target.value, None)  # reassigned to something else
    if len(assignments) == 1:
        return next(iter(assignments.values()))
    if assignments:
        names = ", ".join(sorted(assignments))
        raise EditError(f"line {line} reads several querysets ({names}): which one is unclear")
    raise EditError(f"no queryset on line {line}, nor assigned to a variable it reads")
