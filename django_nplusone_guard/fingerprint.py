"""SQL text -> a stable key for the *shape* of a statement.

Two statements share a fingerprint when they differ only in values: literals, placeholders of
any paramstyle, the length of ``IN (...)`` and ``VALUES (...), (...)`` lists, comments
(sqlcommenter tags included), case of keywords and whitespace. That is what lets the detector
see that ``WHERE id = 1`` and ``WHERE id = 2`` issued from one loop are the same query.

The work is done with a handful of linear regular expressions instead of a full SQL parser:
it runs once per distinct SQL string (results are cached) and must never raise, whatever text
reaches ``cursor.execute``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Fingerprint", "fingerprint"]

#: Statements longer than this are fingerprinted on a prefix plus their length, which keeps
#: the cost per statement bounded for megabyte-sized generated SQL.
MAX_NORMALISED_CHARS = 256 * 1024

_TRANSACTION_VERBS = frozenset(
    {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "START", "END", "SET", "SHOW"}
)
_READ_VERBS = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "EXPLAIN", "PRAGMA"})
_WRITE_VERBS = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "UPSERT"})

_COMMENT_RE = re.compile(r"/\*.*?(?:\*/|$)|--[^\n]*", re.DOTALL)
# Quoted strings ('it''s', E'\n'), including a leading E/N/X/B prefix.
_STRING_RE = re.compile(r"(?:\b[ENXBenxb])?'(?:[^'\\]|\\.|'')*(?:'|$)", re.DOTALL)
_NUMBER_RE = re.compile(r"(?<![\w\"`$])[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)\b")
# %s, %(name)s, ?, ?1, $1, :name (but not ::casts)
_PLACEHOLDER_RE = re.compile(r"%\([^)]{1,100}\)s|%s|\?\d*|\$\d+|(?<![:\w]):[A-Za-z_]\w*")
_WS_RE = re.compile(r"\s+")
# After values became "?": collapse "(?, ?, ?)" runs and repeated VALUES tuples.
_LIST_RE = re.compile(r"\(\s*\?(?:\s*,\s*\?)*\s*\)")
_VALUES_RE = re.compile(r"\(\.\.\.\)(?:\s*,\s*\(\.\.\.\))+")
_TABLE_RE = re.compile(
    r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+(?:ONLY\s+)?([\"`\[]?)([\w$.]+)\1", re.IGNORECASE
)
_VERB_RE = re.compile(r"\s*\(?\s*([A-Za-z]+)")


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The shape of one statement.

    ``key`` is a short hex digest, safe to show and to store (baselines, JSON reports);
    ``normalized`` is the text it was computed from, for people and for debugging.
    """

    key: str
    normalized: str
    verb: str
    tables: tuple[str, ...]

    @property
    def is_read(self) -> bool:
        return self.verb in _READ_VERBS

    @property
    def is_write(self) -> bool:
        return self.verb in _WRITE_VERBS

    @property
    def is_transaction_control(self) -> bool:
        """BEGIN/SAVEPOINT/RELEASE and friends: bookkeeping, never an N+1."""
        return self.verb in _TRANSACTION_VERBS


def _normalize(sql: str) -> str:
    text = sql if len(sql) <= MAX_NORMALISED_CHARS else sql[:MAX_NORMALISED_CHARS]
    text = _COMMENT_RE.sub(" ", text)
    text = _STRING_RE.sub("?", text)
    text = _PLACEHOLDER_RE.sub("?", text)
    text = _NUMBER_RE.sub("?", text)
    text = _WS_RE.sub(" ", text).strip().lower()
    text = _LIST_RE.sub("(...)", text)
    text = _VALUES_RE.sub("(...)", text)
    if len(sql) > MAX_NORMALISED_CHARS:
        # Two truncated statements are only "the same shape" if they are also close in size.
        text += f" /* truncated, ~{len(sql) // MAX_NORMALISED_CHARS} x 256k */"
    return text


def _tables(text: str) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for match in _TABLE_RE.finditer(text):
        name = match.group(2).split(".")[-1].strip('"`[]')
        if name and name.lower() not in {"select", "(", "lateral"}:
            seen.setdefault(name, None)
    return tuple(seen)


@lru_cache(maxsize=4096)
def fingerprint(sql: str) -> Fingerprint:
    """Fingerprint ``sql``; cached per distinct string, never raises on odd input."""
    if not isinstance(sql, str):
        sql = sql.decode("utf-8", "replace") if isinstance(sql, bytes) else str(sql)
    try:
        normalized = _normalize(sql)
    except Exception:  # pragma: no cover - regexes above cannot fail on str input
        normalized = _WS_RE.sub(" ", sql[:MAX_NORMALISED_CHARS]).strip().lower()
    # From the normalised text: comments are gone there, however long (a 4 KB prefix used
    # to leave no verb after a long leading comment, and such statements were never N+1s).
    verb_match = _VERB_RE.match(normalized)
    verb = verb_match.group(1).upper() if verb_match else ""
    key = hashlib.blake2b(normalized.encode("utf-8", "replace"), digest_size=8).hexdigest()
    return Fingerprint(key=key, normalized=normalized, verb=verb, tables=_tables(normalized))
