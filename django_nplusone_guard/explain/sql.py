"""Just enough SQL reading to know, per table instance, what a statement filters and sorts on.

A plan says *that* a table was scanned or sorted; which columns an index would need comes
from the statement itself: the ``WHERE`` and ``ON`` terms (equality, range, or something no
B-tree index can serve, such as a leading-wildcard ``LIKE``, a function on the column or an
``OR``) and the ``ORDER BY`` columns. Django writes regular SQL (every column qualified,
parameters as ``%s``), so a tokenizer and a small boolean-expression splitter are enough;
nothing here raises on odd input: what it does not understand contributes no column.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Block", "Predicate", "Statement", "parse_statement"]

# Predicate kinds. Only EQ and RANGE (and JOIN for join columns) make index candidates.
EQ, RANGE, JOIN, PATTERN, PREFIX, FUNCTION, OR, NOT, OTHER = (
    "eq",
    "range",
    "join",
    "pattern",
    "prefix",
    "function",
    "or",
    "not",
    "other",
)

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?(?:\*/|$))
  | (?P<string>[EeNnXxBb]?'(?:[^']|'')*(?:'|$))
  | (?P<qident>"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\])
  | (?P<param>%\((?P<pname>[^)]{1,100})\)s|%s)
  | (?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)
  | (?P<word>[A-Za-z_][\w$]*)
  | (?P<cast>::)
  | (?P<punct>[(),.;])
  | (?P<op>[<>=!~@&|#^*/+\-%:?]+)
    """,
    re.VERBOSE | re.DOTALL,
)

_CLAUSE_WORDS = frozenset(
    {
        "FROM",
        "WHERE",
        "GROUP",
        "HAVING",
        "ORDER",
        "LIMIT",
        "OFFSET",
        "FETCH",
        "FOR",
        "WINDOW",
        "UNION",
        "INTERSECT",
        "EXCEPT",
        "RETURNING",
        "INTO",
        "LOCK",
        "QUALIFY",
    }
)
_JOIN_WORDS = frozenset(
    {"JOIN", "INNER", "LEFT", "RIGHT", "FULL", "OUTER", "CROSS", "NATURAL", "STRAIGHT_JOIN"}
)
_KEYWORDS = frozenset(
    {
        "AND", "OR", "NOT", "IS", "NULL", "TRUE", "FALSE", "IN", "LIKE", "ILIKE", "BETWEEN",
        "EXISTS", "ESCAPE", "CASE", "WHEN", "THEN", "ELSE", "END", "AS", "ON", "USING",
        "DISTINCT", "ALL", "ANY", "SOME", "AT", "TIME", "ZONE", "INTERVAL", "BINARY",
        "COLLATE", "REGEXP", "RLIKE", "GLOB", "SIMILAR", "TO", "ASC", "DESC", "NULLS",
        "FIRST", "LAST", "SELECT", "CAST", "DATE", "TIMESTAMP", "UNKNOWN",
        *_CLAUSE_WORDS,
        *_JOIN_WORDS,
    }
)  # fmt: skip
_COMPARISONS = frozenset({"=", "==", "<=>", "<", ">", "<=", ">=", "<>", "!="})
_RANGE_OPS = frozenset({"<", ">", "<=", ">="})
_FLIPPED = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}
_PATTERN_WORDS = frozenset({"LIKE", "ILIKE", "GLOB", "REGEXP", "RLIKE", "SIMILAR"})


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # word, qident, string, number, param, cast, punct, op
    text: str
    value: Any = None  # a bound parameter's value

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def name(self) -> str:
        """An identifier without its quotes."""
        if self.kind == "qident":
            quote = self.text[0]
            inner = self.text[1:-1]
            return inner.replace(quote * 2, quote) if quote in '"`' else inner
        return self.text


_NO_VALUE = object()


@dataclass(frozen=True, slots=True)
class Predicate:
    """One conjunct of a WHERE or ON clause, as seen from one column."""

    alias: str  # lower-cased table alias (or table name); "" when unqualified
    column: str
    kind: str
    detail: str = ""  # why no B-tree index can serve it, for non-candidate kinds
    other: tuple[str, str] | None = None  # the other side of a join equality


@dataclass
class Block:
    """One ``SELECT`` (the statement or a subquery): its tables, terms and sort."""

    tables: dict[str, str] = field(default_factory=dict)  # alias (lower) -> table
    predicates: list[Predicate] = field(default_factory=list)
    #: (alias, column, descending) per ORDER BY term; None when a term is not a column.
    order_by: list[tuple[str, str, bool]] | None = None
    limit: bool = False


@dataclass
class Statement:
    blocks: list[Block]
    #: Every alias of every block (Django keeps subquery aliases distinct: U0, V0...).
    tables: dict[str, str]
    #: False for text that is not one plain SELECT (several statements, SELECT ... INTO).
    single_select: bool

    @property
    def outer(self) -> Block | None:
        return self.blocks[0] if self.blocks else None

    def predicates_for(self, alias: str) -> list[Predicate]:
        return [p for b in self.blocks for p in b.predicates if p.alias == alias]


def tokenize(sql: str, params: Any = None) -> list[Token]:
    """Tokens without whitespace and comments; ``%s`` tokens carry their bound value."""
    tokens: list[Token] = []
    positional = params if isinstance(params, Sequence) and not isinstance(params, str) else ()
    named = params if isinstance(params, Mapping) else {}
    index = 0
    for match in _TOKEN_RE.finditer(sql):
        kind = match.lastgroup or ""
        if kind in ("ws", "comment"):
            continue
        if kind == "pname":  # pragma: no cover - a sub-group, lastgroup is "param"
            kind = "param"
        text = match.group()
        if kind == "param":
            value: Any = _NO_VALUE
            if match.group("pname"):
                value = named.get(match.group("pname"), _NO_VALUE)
            elif index < len(positional):
                value = positional[index]
                index += 1
            tokens.append(Token("param", text, value))
            continue
        tokens.append(Token(kind, text))
    return tokens


def _match_parens(tokens: Sequence[Token]) -> dict[int, int]:
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for i, tok in enumerate(tokens):
        if tok.text == "(" and tok.kind == "punct":
            stack.append(i)
        elif tok.text == ")" and tok.kind == "punct" and stack:
            pairs[stack.pop()] = i
    return pairs


class _Reader:
    """Walks one token list; knows matching parentheses."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pairs = _match_parens(tokens)

    def top_level(self, start: int, end: int) -> list[int]:
        """Indexes of tokens in [start, end) not inside parentheses."""
        out = []
        i = start
        while i < end:
            out.append(i)
            if self.tokens[i].text == "(" and self.tokens[i].kind == "punct":
                i = self.pairs.get(i, end - 1) + 1
                continue
            i += 1
        return out

    def is_subquery(self, i: int) -> bool:
        return (
            self.tokens[i].text == "("
            and i + 1 < len(self.tokens)
            and self.tokens[i + 1].upper in ("SELECT", "WITH", "VALUES")
        )


def parse_statement(sql: str, params: Any = None) -> Statement:
    """Read ``sql`` into blocks; never raises."""
    try:
        return _parse(sql, params)
    except Exception:  # odd text must never break analysis; it just yields no columns
        return Statement(blocks=[], tables={}, single_select=False)


def _parse(sql: str, params: Any) -> Statement:
    tokens = tokenize(sql, params)
    reader = _Reader(tokens)
    blocks: list[Block] = []
    single = True
    top = reader.top_level(0, len(tokens))
    for i in top:
        tok = tokens[i]
        if tok.kind == "punct" and tok.text == ";" and i != len(tokens) - 1:
            single = False
        if tok.upper == "INTO":
            single = False
    for i, tok in enumerate(tokens):
        if tok.upper == "SELECT":
            end = _block_end(reader, i)
            blocks.append(_parse_block(reader, i + 1, end))
    tables: dict[str, str] = {}
    for block in blocks:
        tables.update(block.tables)
    for block in blocks:
        if len(block.tables) == 1:
            (only,) = block.tables
            block.predicates = [p if p.alias else _with_alias(p, only) for p in block.predicates]
    return Statement(blocks=blocks, tables=tables, single_select=single and bool(blocks))


def _with_alias(p: Predicate, alias: str) -> Predicate:
    return Predicate(alias, p.column, p.kind, p.detail, p.other)


def _block_end(reader: _Reader, start: int) -> int:
    """Where the SELECT starting at ``start`` ends: its enclosing ")" or a set operator."""
    depth = 0
    tokens = reader.tokens
    for i in range(start + 1, len(tokens)):
        tok = tokens[i]
        if tok.kind == "punct" and tok.text == "(":
            depth += 1
        elif tok.kind == "punct" and tok.text == ")":
            if depth == 0:
                return i
            depth -= 1
        elif depth == 0 and tok.upper in ("UNION", "INTERSECT", "EXCEPT"):
            return i
    return len(tokens)


def _parse_block(reader: _Reader, start: int, end: int) -> Block:
    tokens = reader.tokens
    block = Block()
    clauses: list[tuple[str, int]] = []
    top = reader.top_level(start, end)
    for pos, i in enumerate(top):
        word = tokens[i].upper
        if word in _CLAUSE_WORDS:
            if word in ("GROUP", "ORDER") and (
                pos + 1 >= len(top) or tokens[top[pos + 1]].upper != "BY"
            ):
                continue
            clauses.append((word, i))
    bounds: dict[str, tuple[int, int]] = {}
    for n, (word, i) in enumerate(clauses):
        stop = clauses[n + 1][1] if n + 1 < len(clauses) else end
        bounds.setdefault(word, (i + 1, stop))
    if "FROM" in bounds:
        _parse_from(reader, *bounds["FROM"], block)
    if "WHERE" in bounds:
        block.predicates.extend(_conjuncts(reader, *bounds["WHERE"]))
    if "ORDER" in bounds:
        s, e = bounds["ORDER"]
        block.order_by = _order_by(reader, s + 1, e)  # skip BY
    block.limit = "LIMIT" in bounds or "FETCH" in bounds
    return block


def _parse_from(reader: _Reader, start: int, end: int, block: Block) -> None:
    tokens = reader.tokens
    top = reader.top_level(start, end)
    items: list[list[int]] = [[]]
    for i in top:
        tok = tokens[i]
        if (tok.kind == "punct" and tok.text == ",") or tok.upper in _JOIN_WORDS:
            if items[-1]:
                items.append([])
            continue
        items[-1].append(i)
    for item in items:
        if not item:
            continue
        on_at = next((n for n, i in enumerate(item) if tokens[i].upper in ("ON", "USING")), None)
        head = item if on_at is None else item[:on_at]
        name, alias = _table_and_alias(reader, head)
        if alias:
            block.tables[alias.lower()] = name or ""
        if on_at is not None and tokens[item[on_at]].upper == "ON":
            cond_start = item[on_at] + 1
            cond_end = item[-1] + 1
            if tokens[item[-1]].text == "(" and item[-1] in reader.pairs:
                cond_end = reader.pairs[item[-1]] + 1
            block.predicates.extend(_conjuncts(reader, cond_start, cond_end))


def _table_and_alias(reader: _Reader, head: list[int]) -> tuple[str | None, str | None]:
    tokens = reader.tokens
    if not head:
        return None, None
    first = tokens[head[0]]
    rest = [i for i in head[1:] if tokens[i].upper not in ("AS", "LATERAL", "ONLY")]
    if first.text == "(" or first.upper in ("LATERAL",):
        alias = tokens[rest[-1]].name if rest else None
        return None, alias  # a derived table: no real table behind the alias
    names = [first.name]
    k = 0
    while k + 1 < len(rest) and tokens[rest[k]].text == ".":
        names.append(tokens[rest[k + 1]].name)
        k += 2
    rest = rest[k:]
    table = names[-1]
    alias = next((tokens[i].name for i in rest if tokens[i].kind in ("word", "qident")), table)
    return table, alias


def _order_by(reader: _Reader, start: int, end: int) -> list[tuple[str, str, bool]] | None:
    tokens = reader.tokens
    terms: list[list[Token]] = [[]]
    for i in reader.top_level(start, end):
        if tokens[i].text == "," and tokens[i].kind == "punct":
            terms.append([])
        else:
            terms[-1].append(tokens[i])
    out: list[tuple[str, str, bool]] = []
    for term in terms:
        descending = any(t.upper == "DESC" for t in term)
        core = [t for t in term if t.upper not in ("ASC", "DESC", "NULLS", "FIRST", "LAST")]
        column = _column_ref(core)
        if column is None:
            return None
        out.append((column[0], column[1], descending))
    return out or None


# ----------------------------------------------------------------------------- predicates


def _strip(reader: _Reader, start: int, end: int) -> tuple[int, int]:
    while (
        end - start >= 2
        and reader.tokens[start].text == "("
        and reader.pairs.get(start) == end - 1
        and not reader.is_subquery(start)
    ):
        start, end = start + 1, end - 1
    return start, end


def _split(reader: _Reader, start: int, end: int, word: str) -> list[tuple[int, int]]:
    tokens = reader.tokens
    parts: list[tuple[int, int]] = []
    part_start = start
    in_between = False
    for i in reader.top_level(start, end):
        upper = tokens[i].upper
        if upper == "BETWEEN":
            in_between = True
        elif upper == word:
            if word == "AND" and in_between:
                in_between = False
                continue
            parts.append((part_start, i))
            part_start = i + 1
    parts.append((part_start, end))
    return parts


def _conjuncts(reader: _Reader, start: int, end: int) -> list[Predicate]:
    start, end = _strip(reader, start, end)
    if start >= end:
        return []
    ands = _split(reader, start, end, "AND")
    if len(ands) > 1:
        return [p for s, e in ands for p in _conjuncts(reader, s, e)]
    tokens = reader.tokens
    if len(_split(reader, start, end, "OR")) > 1:
        return _opaque(
            reader, start, end, OR, "an OR of conditions (one B-tree index cannot serve it)"
        )
    if (
        tokens[start].upper == "NOT"
        and tokens[start + 1 : start + 2] != []
        and (tokens[start + 1].upper != "EXISTS")
    ):
        return _opaque(reader, start, end, NOT, "a negated condition")
    return _atom(reader, start, end)


def _opaque(reader: _Reader, start: int, end: int, kind: str, detail: str) -> list[Predicate]:
    seen: dict[tuple[str, str], None] = {}
    for alias, column in _columns_in(reader.tokens[start:end]):
        seen.setdefault((alias, column), None)
    return [Predicate(alias, column, kind, detail) for alias, column in seen]


def _is_name(tok: Token) -> bool:
    return tok.kind == "qident" or (tok.kind == "word" and tok.upper not in _KEYWORDS)


def _column_ref(toks: Sequence[Token]) -> tuple[str, str] | None:
    """``"t"."c"``, ``t.c`` or ``"c"``, optionally cast (``"t"."c"::text``)."""
    toks = list(toks)
    while len(toks) >= 2 and toks[0].text == "(" and toks[-1].text == ")":
        toks = toks[1:-1]
    cast_at = next((n for n, t in enumerate(toks) if t.kind == "cast"), None)
    if cast_at is not None:
        toks = toks[:cast_at]
    if len(toks) == 3 and _is_name(toks[0]) and toks[1].text == "." and _is_name(toks[2]):
        return toks[0].name.lower(), toks[2].name
    if len(toks) == 1 and _is_name(toks[0]):
        return "", toks[0].name
    return None


def _columns_in(toks: Sequence[Token]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if _is_name(tok) and nxt is not None and nxt.text == "." and i + 2 < len(toks):
            out.append((tok.name.lower(), toks[i + 2].name))
            i += 3
            continue
        after_cast = i > 0 and toks[i - 1].kind == "cast"
        is_call = nxt is not None and nxt.text == "("
        if _is_name(tok) and not after_cast and not is_call:
            out.append(("", tok.name))
        i += 1
    return out


def _operand(reader: _Reader, start: int, end: int) -> tuple[str, Any]:
    """('column', (alias, col)) | ('value', bound value or None) | ('subquery', None) |
    ('function', [(alias, col), ...])."""
    start, end = _strip(reader, start, end)
    toks = reader.tokens[start:end]
    if not toks:
        return "value", None
    column = _column_ref(toks)
    if column is not None:
        return "column", column
    if reader.is_subquery(start) and reader.pairs.get(start) == end - 1:
        return "subquery", None
    columns = _columns_in(toks)
    if not columns:
        value = next((t.value for t in toks if t.kind == "param"), None)
        if value is None:
            literal = next((t for t in toks if t.kind == "string"), None)
            value = literal.text.strip("'") if literal is not None else None
        return "value", value
    return "function", columns


def _atom(reader: _Reader, start: int, end: int) -> list[Predicate]:
    tokens = reader.tokens
    top = reader.top_level(start, end)
    op_at = None
    for i in top:
        tok = tokens[i]
        if (tok.kind == "op" and tok.text in _COMPARISONS) or tok.upper in (
            "IN",
            "IS",
            "BETWEEN",
            "NOT",
            *_PATTERN_WORDS,
        ):
            if tok.upper == "NOT" and i == start:
                continue
            op_at = i
            break
        if tok.kind == "op" and tok.text.startswith(("~", "!~", "@", "&&", "?")):
            op_at = i
            break
    if op_at is None:
        kind, what = _operand(reader, start, end)
        if kind == "column":  # a bare boolean column: WHERE "t"."active"
            return [Predicate(what[0], what[1], EQ)]
        return _opaque(reader, start, end, OTHER, "an expression")
    op_words = []
    j = op_at
    while j < end and (
        tokens[j].upper in ("NOT", "IN", "IS", "BETWEEN", "NULL", "DISTINCT", "FROM", "BINARY")
        or tokens[j].upper in _PATTERN_WORDS
        or (tokens[j].kind == "op" and j == op_at)
    ):
        op_words.append(tokens[j].upper or tokens[j].text)
        if tokens[j].upper == "NULL":
            j += 1
            break
        j += 1
    op = " ".join(op_words)
    left_kind, left = _operand(reader, start, op_at)
    escape = next((n for n in range(j, end) if tokens[n].upper == "ESCAPE"), end)
    right_kind, right = _operand(reader, j, escape)
    if left_kind != "column" and right_kind == "column" and op in _COMPARISONS:
        left_kind, left, right_kind, right = right_kind, right, left_kind, left
        op = _FLIPPED.get(op, op)
    if left_kind == "function":
        detail = "a function or expression on the column"
        if "LIKE" in op and isinstance(right, str) and right[:1] in ("%", "_"):
            detail = "UPPER(column) LIKE a pattern with a leading wildcard (icontains)"
        elif "LIKE" in op:
            detail = "UPPER(column) LIKE a pattern (iexact/istartswith)"
        return [Predicate(a, c, FUNCTION, detail) for a, c in dict.fromkeys(left)]
    if left_kind != "column":
        return _opaque(reader, start, end, OTHER, "an expression")
    alias, column = left
    if right_kind == "column":
        if op in ("=", "==", "<=>") and right[0] != alias:
            return [
                Predicate(alias, column, JOIN, other=right),
                Predicate(right[0], right[1], JOIN, other=left),
            ]
        return _opaque(reader, start, end, OTHER, "a comparison between two columns")
    if right_kind == "function":
        return [Predicate(alias, column, OTHER, "a comparison with an expression on a column")]
    return [_classify(alias, column, op, right)]


def _classify(alias: str, column: str, op: str, value: Any) -> Predicate:
    if op in ("=", "==", "<=>", "IN", "IS NULL", "IS NOT DISTINCT FROM"):
        return Predicate(alias, column, EQ)
    if op in _RANGE_OPS or op == "BETWEEN":
        return Predicate(alias, column, RANGE)
    words = op.split()
    if any(w in _PATTERN_WORDS for w in words):
        if "NOT" in words:
            return Predicate(alias, column, NOT, "a negated pattern")
        if not ({"LIKE", "GLOB"} & set(words)):
            return Predicate(alias, column, PATTERN, "a regular expression or ILIKE match")
        if isinstance(value, str) and value[:1] in ("%", "_", "*", "?"):
            return Predicate(
                alias, column, PATTERN, "a pattern with a leading wildcard (contains/icontains)"
            )
        if isinstance(value, str):
            return Predicate(alias, column, PREFIX, "a LIKE pattern")
        return Predicate(alias, column, PATTERN, "a LIKE pattern of unknown shape")
    if op.startswith("IS NOT"):
        return Predicate(alias, column, OTHER, "IS NOT NULL (matches most rows)")
    if op in ("<>", "!=") or "NOT" in words:
        return Predicate(alias, column, OTHER, "an inequality (matches most rows)")
    return Predicate(alias, column, OTHER, f"the operator {op}")
