"""The edits themselves, as libcst syntax-tree transforms on one file's source text.

libcst keeps every comment, blank line and bracket of the file: a transform replaces one
expression (or adds one class member) and the rest of the file is written back byte for
byte, so the diff shows only the changed expression. This is the only module that imports
libcst (an optional dependency: ``pip install django-nplusone-guard[fix]``).

Each function takes source text and returns new source text, or raises :class:`EditError`
saying why the edit cannot be made there; the caller turns that into "fix by hand".
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata import MetadataWrapper, PositionProvider

from .locate import find_querysets
from .plan import EditError

__all__ = [
    "EditError",
    "add_imports",
    "add_model_index",
    "add_view_queryset",
    "edit_admin_prefetch",
    "edit_class_attribute",
    "edit_queryset",
    "read_annotations",
]


#: Calls whose arguments are merged with the suggestion's (one call, not a second one).
_MERGED = ("select_related", "prefetch_related")
#: Calls whose arguments the suggestion replaces: it lists the full set (``.only(...)``).
_REPLACED = ("only", "defer")
#: Calls the audit knows how to add to a queryset.
_METHODS = (*_MERGED, *_REPLACED, "annotate")
#: Builtins that evaluate a queryset they are given: the queryset is their first argument.
_EVALUATING = ("list", "tuple", "sorted", "set", "len")
#: Names a suggestion may use that live in ``django.db.models``.
_MODEL_NAMES = ("Count", "Sum", "Avg", "Min", "Max", "Exists", "OuterRef", "Subquery",
                "Prefetch", "F", "Q")  # fmt: skip


def parse_suggestion(suggestion: str) -> list[tuple[str, list[cst.Arg]]]:
    """``.select_related("a").annotate(n=Count("b"))`` as ``[(method, args), ...]``, in
    order; :class:`EditError` when it is not a chain of queryset calls."""
    if not suggestion.startswith(".") or "..." in suggestion or "<" in suggestion:
        raise EditError("the fix is not a queryset call to append")
    expression = _parse_expression("_" + suggestion, "the fix")
    calls: list[tuple[str, list[cst.Arg]]] = []
    node: cst.BaseExpression = expression
    while isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        calls.append((node.func.attr.value, list(node.args)))
        node = node.func.value
    if not (isinstance(node, cst.Name) and node.value == "_") or not calls:
        raise EditError("the fix is not a queryset call to append")
    unknown = [method for method, _ in calls if method not in _METHODS]
    if unknown:
        raise EditError(f"the fix calls .{unknown[0]}(), which the audit does not write")
    return calls[::-1]


# --------------------------------------------------------------------------- querysets


def _evaluating_call(node: cst.BaseExpression) -> bool:
    return (
        isinstance(node, cst.Call)
        and isinstance(node.func, cst.Name)
        and node.func.value in _EVALUATING
        and bool(node.args)
        and not node.args[0].keyword
        and not node.args[0].star
    )


class _Replace(cst.CSTTransformer):
    def __init__(self, replacements: dict[cst.CSTNode, cst.CSTNode]) -> None:
        super().__init__()
        self.replacements = replacements

    def on_leave(  # type: ignore[override]
        self, original_node: cst.CSTNode, updated_node: cst.CSTNode
    ) -> cst.CSTNode:
        return self.replacements.get(original_node, updated_node)


def _string_value(arg: cst.Arg) -> str | None:
    if arg.keyword is None and not arg.star and isinstance(arg.value, cst.SimpleString):
        value = arg.value.evaluated_value
        return value if isinstance(value, str) else None
    return None


def _merged_args(existing: Sequence[cst.Arg], added: Sequence[cst.Arg]) -> list[cst.Arg]:
    """``existing`` plus the paths of ``added`` not already loaded: a path already listed
    is skipped, and a listed path that the new one extends (``"author"`` when
    ``"author__profile"`` comes) is replaced by it in place, as one would by hand."""
    args = list(existing)
    for arg in added:
        path = _string_value(arg)
        values = [_string_value(a) for a in args]
        if path is None:
            args.append(arg.with_changes(comma=cst.MaybeSentinel.DEFAULT))
        elif path in values or any(v and v.startswith(path + "__") for v in values):
            continue
        else:
            shorter = [i for i, v in enumerate(values) if v and path.startswith(v + "__")]
            if shorter:
                old = args[shorter[0]]
                args[shorter[0]] = old.with_changes(value=arg.value)
            else:
                args.append(arg.with_changes(comma=cst.MaybeSentinel.DEFAULT))
    if args:
        args = [*(_comma(a) for a in args[:-1]), args[-1]]
    return args


def _comma(arg: cst.Arg) -> cst.Arg:
    if isinstance(arg.comma, cst.Comma):
        return arg
    return arg.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))


def _merge(
    node: cst.BaseExpression, method: str, args: Sequence[cst.Arg]
) -> cst.BaseExpression | None:
    """``node`` with ``args`` merged into (or put in place of the arguments of) its chain's
    existing ``.method(...)`` call; None when the chain has none."""
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        if node.func.attr.value == method and (method in _REPLACED or node.args):
            if method in _REPLACED:
                return node.with_changes(args=[_comma(a) for a in args[:-1]] + list(args[-1:]))
            return node.with_changes(args=_merged_args(node.args, args))
        inner = _merge(node.func.value, method, args)
        if inner is None:
            return None
        return node.with_changes(func=node.func.with_changes(value=inner))
    if isinstance(node, cst.Subscript | cst.Attribute):
        inner = _merge(node.value, method, args)
        return None if inner is None else node.with_changes(value=inner)
    return None


def _with_call(
    node: cst.BaseExpression, method: str, args: Sequence[cst.Arg]
) -> cst.BaseExpression:
    """``node`` with ``.method(*args)`` merged in, or added before any slice (Django
    refuses most calls on a sliced queryset) and inside ``list(...)``."""
    if _evaluating_call(node):
        assert isinstance(node, cst.Call)
        first = node.args[0]
        return node.with_changes(
            args=[first.with_changes(value=_with_call(first.value, method, args)), *node.args[1:]]
        )
    if method != "annotate":
        merged = _merge(node, method, args)
        if merged is not None:
            return merged
        if method in _REPLACED:
            raise EditError(f"no .{method}() call on that line to change")
    if isinstance(node, cst.Subscript):
        return node.with_changes(value=_with_call(node.value, method, args))
    return cst.Call(func=cst.Attribute(value=node, attr=cst.Name(method)), args=list(args))


def edit_queryset(source: str, line: int, suggestion: str, *, imports: bool = True) -> str:
    """Add ``suggestion`` (``.select_related("author")``...) to the queryset expression that
    covers ``line``: the right-hand side, returned value or loop iterable there, or the
    value returned by the function defined on that line (``def get_queryset``).

    ``imports=False`` leaves out the imports the fix needs (:func:`add_imports` adds them
    once all edits of a file are made: an import line moves the lines below it)."""
    calls = parse_suggestion(suggestion)
    wrapper, targets = find_querysets(_parse(source), line)
    replacements: dict[cst.CSTNode, cst.CSTNode] = {}
    for target in targets:
        edited = target
        for method, args in calls:
            edited = _with_call(edited, method, args)
        replacements[target] = edited
    result = wrapper.module.visit(_Replace(replacements))
    if imports:
        result = _import_model_names(result, suggestion)
    return _checked(result.code)


def add_imports(source: str, codes: Sequence[str]) -> str:
    """``from django.db.models import ...`` for what ``codes`` use and the file lacks."""
    module = _parse(source)
    for code in codes:
        module = _import_model_names(module, code)
    return _checked(module.code)


def _annotations(suggestion: str) -> dict[str, str]:
    """``.annotate(book_count=Count("book"))`` as ``{"book_count": "Count"}``."""
    found: dict[str, str] = {}
    for method, args in parse_suggestion(suggestion):
        if method != "annotate":
            continue
        for arg in args:
            value = arg.value
            if arg.keyword is not None and isinstance(value, cst.Call):
                function = value.func
                name = function.attr if isinstance(function, cst.Attribute) else function
                if isinstance(name, cst.Name):
                    found[arg.keyword.value] = name.value
    return found


class _RowReads(cst.CSTTransformer):
    """``row.book_set.count()``, ``row.reviews.exists()`` and
    ``row.book_set.aggregate(total=Sum("pages"))["total"]`` on one line, read from the
    row's annotation instead: ``row.book_count``, ``row.has_reviews``, ``row.total``."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, line: int, accessor: str, annotations: dict[str, str]) -> None:
        super().__init__()
        self.line = line
        self.accessor = accessor
        self.by_function = {function: alias for alias, function in annotations.items()}
        self.aliases = set(annotations)
        self.rewritten = 0

    def _on_line(self, node: cst.CSTNode) -> bool:
        where = self.get_metadata(PositionProvider, node)
        return bool(where.start.line <= self.line <= where.end.line)

    def _row(self, node: cst.BaseExpression) -> cst.Name | None:
        if (
            isinstance(node, cst.Attribute)
            and node.attr.value == self.accessor
            and isinstance(node.value, cst.Name)
        ):
            return node.value
        return None

    def _read(self, row: cst.Name, alias: str) -> cst.Attribute:
        self.rewritten += 1
        return cst.Attribute(value=row, attr=cst.Name(alias))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        func = updated_node.func
        if updated_node.args or not isinstance(func, cst.Attribute):
            return updated_node
        alias = {"count": self.by_function.get("Count"),
                 "exists": self.by_function.get("Exists")}.get(func.attr.value)  # fmt: skip
        row = self._row(func.value)
        if alias and row is not None and self._on_line(original_node):
            return self._read(row, alias)
        return updated_node

    def leave_Subscript(
        self, original_node: cst.Subscript, updated_node: cst.Subscript
    ) -> cst.BaseExpression:
        call = updated_node.value
        if not (
            isinstance(call, cst.Call)
            and isinstance(call.func, cst.Attribute)
            and call.func.attr.value == "aggregate"
            and len(updated_node.slice) == 1
        ):
            return updated_node
        index = updated_node.slice[0].slice
        key = index.value if isinstance(index, cst.Index) else None
        alias = key.evaluated_value if isinstance(key, cst.SimpleString) else None
        row = self._row(call.func.value)
        if alias in self.aliases and row is not None and self._on_line(original_node):
            return self._read(row, str(alias))
        return updated_node


def read_annotations(source: str, line: int, accessor: str, suggestion: str) -> str:
    """The per-row query on ``line`` (``p.book_set.count()``) replaced by a read of the
    annotation ``suggestion`` adds (``p.book_count``): adding the annotation alone leaves
    the loop querying as before."""
    annotations = _annotations(suggestion)
    wrapper = MetadataWrapper(_parse(source))
    reads = _RowReads(line, accessor, annotations)
    result = wrapper.visit(reads)
    if not reads.rewritten:
        raise EditError(
            f"no per-row .{accessor} count, exists() or aggregate() on line {line} to read "
            "from the annotation"
        )
    return _checked(result.code)


def _import_model_names(module: cst.Module, code: str) -> cst.Module:
    """``from django.db.models import Count`` for the names the fix uses that the module
    does not bind yet."""
    used = {node.id for node in ast.walk(ast.parse("_" + code)) if isinstance(node, ast.Name)}
    bound = _bound_names(module)
    missing = sorted(name for name in used & set(_MODEL_NAMES) if name not in bound)
    if not missing:
        return module
    context = CodemodContext()
    for name in missing:
        AddImportsVisitor.add_needed_import(context, "django.db.models", name)
    return AddImportsVisitor(context).transform_module(module)


def _bound_names(module: cst.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.code)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


# --------------------------------------------------------------------------- classes


def _find_class(module: cst.Module, qualname: str) -> cst.ClassDef:
    body: Sequence[cst.CSTNode] = module.body
    found: cst.ClassDef | None = None
    for name in qualname.split("."):
        found = next(
            (n for n in body if isinstance(n, cst.ClassDef) and n.name.value == name), None
        )
        if found is None:
            raise EditError(f"no class {qualname} in the file")
        body = found.body.body
    assert found is not None
    return found


def _assignment(cls: cst.ClassDef, name: str) -> cst.SimpleStatementLine | None:
    for statement in cls.body.body:
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                if isinstance(small, cst.Assign | cst.AnnAssign) and _target_names(small) == [
                    name
                ]:
                    return statement
    return None


def _target_names(node: cst.Assign | cst.AnnAssign) -> list[str]:
    targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
    return [t.value for t in targets if isinstance(t, cst.Name)]


def _insert_member(cls: cst.ClassDef, statement: cst.BaseStatement) -> cst.ClassDef:
    """``statement`` after the class's docstring and its last leading attribute, before
    its first method or nested class."""
    body = list(cls.body.body)
    at = 0
    for index, member in enumerate(body):
        if isinstance(member, cst.SimpleStatementLine):
            at = index + 1
        else:
            break
    body.insert(at, statement)
    return cls.with_changes(body=cls.body.with_changes(body=body))


def edit_class_attribute(source: str, qualname: str, name: str, value: str) -> str:
    """Set ``name = value`` in class ``qualname`` (``list_select_related = ["author"]``):
    the existing assignment's value replaced, or the assignment added."""
    module = _parse(source)
    cls = _find_class(module, qualname)
    new_value = _parse_expression(value, "the fix")
    existing = _assignment(cls, name)
    if existing is not None:
        small = next(s for s in existing.body if isinstance(s, cst.Assign | cst.AnnAssign))
        edited = existing.with_changes(
            body=[s.with_changes(value=new_value) if s is small else s for s in existing.body]
        )
        new_cls = cls.with_changes(
            body=cls.body.with_changes(
                body=[edited if m is existing else m for m in cls.body.body]
            )
        )
    else:
        statement = cst.SimpleStatementLine(
            body=[cst.Assign(targets=[cst.AssignTarget(cst.Name(name))], value=new_value)]
        )
        new_cls = _insert_member(cls, statement)
    return _checked(module.deep_replace(cls, new_cls).code)  # type: ignore[union-attr]


def add_view_queryset(source: str, qualname: str, suggestions: Sequence[str]) -> str:
    """A generic view that names only its ``model``: ``queryset = Model.objects...`` with
    the suggested calls, added under ``model = Model`` (Django's ``get_queryset`` uses the
    queryset when there is one). A view with a ``queryset`` gets the calls on it instead."""
    module = _parse(source)
    cls = _find_class(module, qualname)
    existing = _assignment(cls, "queryset")
    if existing is not None:
        line = (
            MetadataWrapper(module, unsafe_skip_copy=True)
            .resolve(PositionProvider)[existing]
            .start.line
        )
        for suggestion in suggestions:
            source = edit_queryset(source, line, suggestion, imports=False)
        return source
    model = _assignment(cls, "model")
    small = model.body[0] if model is not None else None
    if not isinstance(small, cst.Assign) or not isinstance(small.value, cst.Name | cst.Attribute):
        raise EditError(f"{qualname} names no model to build a queryset from")
    queryset: cst.BaseExpression = cst.Attribute(value=small.value, attr=cst.Name("objects"))
    for suggestion in suggestions:
        for method, args in parse_suggestion(suggestion):
            queryset = _with_call(queryset, method, args)
    statement = cst.SimpleStatementLine(
        body=[cst.Assign(targets=[cst.AssignTarget(cst.Name("queryset"))], value=queryset)]
    )
    body = list(cls.body.body)
    body.insert(body.index(model) + 1, statement)  # type: ignore[arg-type]
    new_cls = cls.with_changes(body=cls.body.with_changes(body=body))
    return _checked(module.deep_replace(cls, new_cls).code)  # type: ignore[union-attr]


def edit_admin_prefetch(source: str, qualname: str, suggestion: str) -> str:
    """A ``ModelAdmin``'s ``get_queryset`` with ``suggestion`` (``.prefetch_related(...)``)
    added to what it returns; the method added when the class has none."""
    module = _parse(source)
    cls = _find_class(module, qualname)
    method = next(
        (
            m
            for m in cls.body.body
            if isinstance(m, cst.FunctionDef) and m.name.value == "get_queryset"
        ),
        None,
    )
    if method is not None:
        line = (
            MetadataWrapper(module, unsafe_skip_copy=True)
            .resolve(PositionProvider)[method]
            .start.line
        )
        return edit_queryset(source, line, suggestion)
    parse_suggestion(suggestion)
    new_method = cst.parse_statement(
        f"def get_queryset(self, request):\n    return super().get_queryset(request){suggestion}\n"
    )
    assert isinstance(new_method, cst.FunctionDef)
    new_method = new_method.with_changes(leading_lines=[cst.EmptyLine(indent=False)])
    body = [*cls.body.body, new_method]
    new_cls = cls.with_changes(body=cls.body.with_changes(body=body))
    return _checked(module.deep_replace(cls, new_cls).code)  # type: ignore[union-attr]


def add_model_index(source: str, model: str, index: str) -> str:
    """``index`` (``models.Index(fields=["email"], name="author_email_idx")``) added to the
    ``Meta.indexes`` of class ``model``; the list, or the ``Meta`` class, made when
    missing. An index of that name already there is left as it is."""
    module = _parse(source)
    cls = _find_class(module, model)
    new_index = _parse_expression(index, "the index")
    meta = next(
        (m for m in cls.body.body if isinstance(m, cst.ClassDef) and m.name.value == "Meta"),
        None,
    )
    if meta is None:
        meta_class = cst.parse_statement(f"class Meta:\n    indexes = [{index}]\n")
        assert isinstance(meta_class, cst.ClassDef)
        meta_class = meta_class.with_changes(leading_lines=[cst.EmptyLine(indent=False)])
        new_cls = _insert_member(cls, meta_class)
        return _checked(module.deep_replace(cls, new_cls).code)  # type: ignore[union-attr]
    existing = _assignment(meta, "indexes")
    if existing is None:
        statement = cst.parse_statement(f"indexes = [{index}]\n")
        new_meta = _insert_member(meta, statement)
    else:
        small = next(s for s in existing.body if isinstance(s, cst.Assign | cst.AnnAssign))
        value = small.value
        if not isinstance(value, cst.List):
            raise EditError("Meta.indexes is not a list written out in the class")
        if _index_named(value, new_index):
            return source
        elements = [_element_comma(e) for e in value.elements]
        elements.append(cst.Element(new_index))
        edited = existing.with_changes(
            body=[
                s.with_changes(value=value.with_changes(elements=elements)) if s is small else s
                for s in existing.body
            ]
        )
        new_meta = meta.with_changes(
            body=meta.body.with_changes(
                body=[edited if m is existing else m for m in meta.body.body]
            )
        )
    new_cls = cls.with_changes(
        body=cls.body.with_changes(body=[new_meta if m is meta else m for m in cls.body.body])
    )
    return _checked(module.deep_replace(cls, new_cls).code)  # type: ignore[union-attr]


def _element_comma(element: cst.BaseElement) -> cst.BaseElement:
    if isinstance(element.comma, cst.Comma):
        return element
    return element.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))


def _index_named(indexes: cst.List, index: cst.BaseExpression) -> bool:
    def name(node: cst.BaseExpression) -> str | None:
        if isinstance(node, cst.Call):
            for arg in node.args:
                if (
                    arg.keyword is not None
                    and arg.keyword.value == "name"
                    and isinstance(arg.value, cst.SimpleString)
                ):
                    value = arg.value.evaluated_value
                    return value if isinstance(value, str) else None
        return None

    wanted = name(index)
    return wanted is not None and any(name(e.value) == wanted for e in indexes.elements)


# --------------------------------------------------------------------------- parsing


def _parse_expression(code: str, what: str) -> cst.BaseExpression:
    try:
        return cst.parse_expression(code)
    except cst.ParserSyntaxError as exc:
        raise EditError(f"{what} does not parse as Python") from exc


def _parse(source: str) -> cst.Module:
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise EditError(f"the file does not parse: {exc.message}") from exc


def _checked(code: str) -> str:
    """The edited source, only if Python itself compiles it: an edit that leaves a file
    that does not parse is never written."""
    try:
        compile(code, "<edited>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise EditError(f"the edited file would not parse: {exc.msg}") from exc
    return code
