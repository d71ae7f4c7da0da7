"""The recorder: one execute wrapper on every connection, and context-local capture scopes.

Design constraints, in order of importance:

* **Never harm the query.** The wrapper calls ``execute`` exactly once and lets its result
  and exceptions through untouched; anything that goes wrong while recording is swallowed
  and logged once.
* **Cheap when idle, cheap when active.** With no scope active the cost is one
  ``ContextVar.get()``. With a scope active it is a clock read, a short walk over frames whose
  classification is cached per code object, and one tuple appended to a list. Fingerprints,
  rendering and attribution happen after the scope ends, once per distinct statement.
* **Context-local.** Scopes live in a ``ContextVar``, which asyncio tasks and
  ``sync_to_async`` threads inherit and which concurrent requests never share.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import os
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from time import perf_counter
from types import CodeType, FrameType, TracebackType
from typing import Any, Final, Literal, NamedTuple, ParamSpec, TypeVar

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

from . import conf, owners
from .report import Report

__all__ = [
    "Scope",
    "active_scope",
    "capture",
    "ignore",
    "install",
    "render_frame",
    "render_stack",
    "suppressed",
]

logger = logging.getLogger("django_nplusone_guard")

P = ParamSpec("P")
R = TypeVar("R")

#: How many user frames a query keeps; the first is its call site.
MAX_USER_FRAMES = 6
#: Give up walking after this many frames (deep recursion, huge middleware stacks).
MAX_WALK = 256
#: Distinct statements counted past ``max_queries``; beyond it they only add to the totals,
#: so a scope that generates endless distinct SQL still has bounded memory.
MAX_OVERFLOW_KEYS = 1_000
#: Calls of one finding that ORM attribution looks at to name its cause and template line.
#: A finding is one statement from one call stack, so its calls agree in practice; reading
#: a call's template node costs a locals snapshot of a frame, so few are read.
MAX_ATTRIBUTED_CALLS = 8
#: Library frames noted above a stack's first entry (to name the library that called it).
MAX_ABOVE = 24
#: Walks remembered per scope (one per distinct statement text), to skip repeated walks.
MAX_WALKS_PER_SCOPE = 256
#: Rendered frames (``path:line in func``) kept; cleared when full.
MAX_RENDERED_FRAMES = 8_192
#: Code objects whose frame kind is cached; cleared when full (code made by ``exec`` or
#: template engines would otherwise be kept alive forever).
MAX_FRAME_KINDS = 20_000
#: How long a ``sync_to_async`` worker waits for its task to suspend before giving up on the
#: call site (see :func:`_walk_task`). The wait is normally microseconds; on a loaded machine
#: the event loop thread can be descheduled for several of the GIL's 5 ms switch intervals,
#: and losing the call site would split one N+1 into two findings.
TASK_SETTLE_SECONDS = 0.05

# Record layout, a plain tuple because it is built once per query on the hot path.
ALIAS: Final = 0
SQL: Final = 1
PARAMS: Final = 2
MANY: Final = 3
DURATION: Final = 4
STACK: Final = 5
CALL: Final = 6
IGNORED: Final = 7
EVENT: Final = 8  # the hooked ORM call (``hooks._Event``) the statement ran in directly, or None
Record = tuple[str, Any, Any, bool, float, tuple[Any, ...], int, bool, Any]

_current: ContextVar[Scope | None] = ContextVar("django_nplusone_guard_scope", default=None)
#: The hooked ORM call being made (a ``hooks._Event``), set by :mod:`.orm.hooks`.
current_call: ContextVar[Any] = ContextVar("django_nplusone_guard_orm_call", default=None)
_call_ids = itertools.count(1)


class Scope:
    """What one ``capture()`` (or one request) has recorded so far.

    ``records`` keeps up to ``max_queries`` statements; past that, ``overflow`` counts them
    per (alias, sql, stack), for at most ``MAX_OVERFLOW_KEYS`` distinct keys, so totals stay
    right while memory stays flat.
    """

    __slots__ = (
        "_batch_frames",
        "_last_overflow",
        "aliases",
        "base_frame",
        "count",
        "entries",
        "ignoring",
        "max_queries",
        "orm",
        "overflow",
        "parent",
        "records",
        "reports",
        "task",
        "total_time",
        "walks",
    )

    def __init__(
        self,
        *,
        parent: Scope | None,
        aliases: tuple[str, ...] | None = None,
        max_queries: int = 10_000,
        base_frame: FrameType | None = None,
        ignoring: bool = False,
    ) -> None:
        self.parent = parent
        self.aliases = aliases
        self.max_queries = max_queries
        self.base_frame = base_frame
        self.ignoring = ignoring
        # Whether its owner delivers its findings itself (the middleware's request scope):
        # guarded work inside it then leaves its findings to it (see ``delivery``).
        self.reports = False
        self.records: list[Record] = []
        self.overflow: dict[tuple[Any, ...], list[Any]] = {}
        # The last overflow key and its slot: a loop repeats one key, and comparing tuples
        # is cheaper than hashing one (the stack's code objects hash slowly).
        self._last_overflow: tuple[tuple[Any, ...], list[Any]] | None = None
        self.count = 0
        self.total_time = 0.0
        self._batch_frames: dict[tuple[Any, ...], tuple[FrameType, int]] = {}
        # Statement text -> the last full walk made for it (see ``_record``).
        self.walks: dict[Any, Anchor] = {}
        # id(stack) -> the module of the function each stack entry called, and the modules
        # of the library code that called the first entry, noted by full walks: whether a
        # repeat is the user's loop or a library's.
        self.entries: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        # Unused-eager bookkeeping of the ORM hooks (``hooks._EagerLog``), created on first use.
        self.orm: Any = None
        # The task, in async code; asked only with a loop running (without one,
        # current_task() raises, and raising costs more than the rest of this method).
        loop = asyncio._get_running_loop()
        self.task: asyncio.Task[Any] | None = None if loop is None else asyncio.current_task(loop)

    def add(self, record: Record) -> None:
        # ``_record`` does the first branch inline for a lone scope: change both together.
        self.count += 1
        self.total_time += record[DURATION]
        if len(self.records) < self.max_queries:
            self.records.append(record)
            return
        key = (record[ALIAS], record[SQL], record[STACK], record[IGNORED])
        last = self._last_overflow
        if last is not None and last[0] == key:
            slot = last[1]
        else:
            found = self.overflow.get(key)
            if found is None:
                if len(self.overflow) < MAX_OVERFLOW_KEYS:
                    found = self.overflow[key] = [1, record[DURATION], record[MANY]]
                    self._last_overflow = (key, found)
                return
            self._last_overflow = (key, found)
            slot = found
        slot[0] += 1
        slot[1] += record[DURATION]

    def call_id(self, stack: tuple[Any, ...], batch: FrameType | None) -> int:
        """A new id per call from user code, except for the queries of one batching call
        (``bulk_create`` batches, per-chunk prefetches) which share the id of its frame."""
        if batch is None:
            return next(_call_ids)
        seen = self._batch_frames.get(stack)
        if seen is not None and seen[0] is batch:
            return seen[1]
        call = next(_call_ids)
        # Holding the frame keeps ``is`` meaningful (no id reuse); released at scope exit.
        self._batch_frames[stack] = (batch, call)
        return call

    def close(self) -> None:
        self._batch_frames.clear()
        self.walks.clear()
        self.entries.clear()
        self.base_frame = None
        self.orm = None


def active_scope() -> Scope | None:
    """The innermost scope recording for the current context, if any."""
    return _current.get()


# --------------------------------------------------------------------------- frames

# Library frames are 0 so the walk skips them with one truth test; unknown ones get _UNKNOWN.
_LIBRARY, _USER, _BATCH, _UNKNOWN = 0, 1, 2, 3
_CONNECT = 4
_HOP = 5
_ASYNC_TO_SYNC = 6
_RENDER = 7
_OWNER = 8  # a library frame whose locals name the user's class (see :mod:`.owners`)
# Keyed by ``id(code)``: hashing a code object hashes its bytecode and constants, which made
# a code-keyed lookup the most expensive step of a query. ``_frame_codes`` keeps every code
# in ``_frame_kinds`` alive, so no id is reused while it is a key; both change under the lock.
_frame_kinds: dict[int, int] = {}
_frame_codes: list[CodeType] = []
# Line of each call instruction of user code, by ``id(code)`` then ``f_lasti``: reading
# ``f_lineno`` scans the code's line table from its start, microseconds in a long view.
_user_lines: dict[int, dict[int, int]] = {}
_frame_lock = threading.Lock()
_batch_codes: set[CodeType] = set()
# Backends' ``init_connection_state``: what a (re)connection runs is Django's set-up, not the
# user's query; Django's own assertNumQueries connects first for the same reason. Without
# this, MySQL's ``SET SQL_AUTO_IS_NULL = 0`` would count in every request after the first
# on a reused thread.
_connect_codes: set[CodeType] = set()
# asgiref's ``SyncToAsync.thread_handler``: where a ``sync_to_async`` call enters its worker
# thread. Frames below it belong to whoever that thread was doing before (the sync caller of
# ``async_to_sync``, e.g. a test runner), not to the coroutine that awaited the query.
_hop_codes: set[CodeType] = set()
# asgiref's ``AsyncToSync.__call__``: a sync caller running a coroutine (Django's WSGI handler
# running an async view). Below a hop, its ``awaitable`` local leads to the user's coroutine.
_async_to_sync_codes: set[CodeType] = set()
# Django's ``Node.render_annotated``: its ``self`` is the template node an ORM call came from.
_render_codes: set[CodeType] = set()
# What a middleware calls to pass the request on (Django's ``convert_exception_to_response``
# wrapper around the next handler): a user frame that called it is a middleware the query
# merely passed through, never its call site.
_pass_codes: set[CodeType] = set()
# id(code) of each owner frame -> how to read the user's object from it (:mod:`.owners`).
_owner_readers: dict[int, Any] = {}
_ignored_modules: tuple[str, ...] = ()
_ignored_paths: tuple[str, ...] = ()

_ALWAYS_IGNORED = ("django", "asgiref", "django_nplusone_guard", "debug_toolbar")


def _library_paths() -> tuple[str, ...]:
    paths = {
        sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")
    }
    paths |= {p for p in sys.path if p.rstrip(os.sep).endswith(("site-packages", "dist-packages"))}
    return tuple(sorted({os.path.join(os.path.realpath(p), "") for p in paths}))


def _clear_frame_kinds() -> None:
    with _frame_lock:
        _frame_kinds.clear()  # keys first: a key must never outlive its code
        _user_lines.clear()
        _owner_readers.clear()
        _frame_codes.clear()
    owners.forget()


def _reset_frame_cache() -> None:
    """Recompute what counts as user code, and forget the cached frame kinds only if that
    changed (STACK_IGNORE, or the library paths): any change to the guard's settings calls
    this, and a test suite that switches ``ENABLED`` per test should not re-classify
    every frame after each switch."""
    global _ignored_modules, _ignored_paths
    modules = _ALWAYS_IGNORED + conf.get_config().STACK_IGNORE
    paths = _library_paths()
    if (modules, paths) != (_ignored_modules, _ignored_paths):
        _clear_frame_kinds()
        _ignored_modules, _ignored_paths = modules, paths


def _classify(frame: FrameType) -> int:
    code = frame.f_code
    if code in _batch_codes:
        kind = _BATCH
    elif code in _connect_codes:
        kind = _CONNECT
    elif code in _hop_codes:
        kind = _HOP
    elif code in _async_to_sync_codes:
        kind = _ASYNC_TO_SYNC
    elif code in _render_codes:
        kind = _RENDER
    else:
        module = frame.f_globals.get("__name__") or ""
        reader = None
        if _is_user_module(module, code.co_filename) or _is_shell_input(module, code.co_filename):
            kind = _USER
        else:
            reader = owners.OWNER_FRAMES.get((module, code.co_qualname))
            kind = _LIBRARY if reader is None else _OWNER
    if len(_frame_kinds) >= MAX_FRAME_KINDS:
        _clear_frame_kinds()
    with _frame_lock:
        _frame_codes.append(code)  # the code first: a key must never outlive its code
        if kind == _USER:
            _user_lines[id(code)] = {}
        elif kind == _OWNER:
            _owner_readers[id(code)] = reader
        _frame_kinds[id(code)] = kind
    return kind


def _is_user_module(module: str, filename: str) -> bool:
    """Whether code of ``module`` in ``filename`` is the user's: not under an ignored
    module (``STACK_IGNORE`` and the guard's own list), not under a library path."""
    return not (
        any(module == m or module.startswith(m + ".") for m in _ignored_modules)
        or filename.startswith(_ignored_paths)
        or filename.startswith("<frozen")
    )


owners.is_user_module = _is_user_module

#: Where an interactive session's code comes from: ``python`` and ``code.interact`` (Django's
#: ``shell``), Python 3.13's REPL, IPython's terminal cells.
_SHELL_FILES = ("<stdin>", "<console>")
_SHELL_FILE_PREFIXES = ("<python-input-", "<ipython-input-")
#: Django's ``shell -c`` and ``shell < script.py`` run the code in the command's own module.
_SHELL_COMMAND_MODULE = "django.core.management.commands.shell"


def _is_shell_input(module: str, filename: str) -> bool:
    """Whether the code was typed into (or piped to) an interactive shell: the user's, even
    when it runs in the globals of Django's ``shell`` command, a library module. Only code
    classification asks, once per code object."""
    if filename in _SHELL_FILES or filename.startswith(_SHELL_FILE_PREFIXES):
        return True
    return filename == "<string>" and module == _SHELL_COMMAND_MODULE


class Anchor(NamedTuple):
    """What a full walk found, to recognise the same call site without walking again: the
    first user frame, its depth from the statement and the instruction it is suspended
    at, and the depths of the hooked ORM call and of the template node above it."""

    depth: int
    frame: FrameType
    lasti: int
    stack: tuple[Any, ...]
    hook_depth: int
    hook_at: int
    render_depth: int
    #: How many calls have had their template node read through this walk.
    node_reads: list[int]


# ``Anchor(...)`` runs the named tuple's ``__new__``, a Python function: one frame more in a
# walk that every statement with a new call site makes. ``tuple.__new__`` builds the same.
_new_anchor = tuple.__new__


def _walk(
    frame: FrameType | None,
    base: FrameType | None,
    async_scope: bool = False,
    hook: FrameType | None = None,
) -> tuple[
    tuple[Any, ...] | None, Any, bool, int, Any, Anchor | None, tuple[list[Any], list[Any]]
]:
    """User frames as a flat (code, line, code, line, ...) tuple, plus the outermost
    batching frame seen before the first user frame; ``None`` for the frames of a statement
    run while a connection is being set up. For a scope opened in async code
    (``async_scope``) the walk stops where ``sync_to_async`` entered the thread and says so
    (third item): the rest of the call site is in the awaiting task.

    ``hook`` is the frame of the hooked ORM call the statement runs in, if any. The fourth
    item is how much of the stack had been collected when the walk passed it (0: no user
    code between that call and the statement; -1: not passed), and the fifth the template
    node being rendered where the call was made, so the ORM layer needs no walk of its own.
    The last item is the frame the stack's first entry called (the library function a user
    line entered), and of each later entry: the frames each entry called; and the library
    frames between the first entry and the next (whose code called the first entry).

    A user frame that called the next handler of the middleware chain is a middleware the
    statement passed through: it is skipped. A library frame that holds the user's object
    (:mod:`.owners`: the view of ``View.dispatch``, the ``ModelAdmin`` behind the changelist)
    adds that object's class as a stack entry, so library-driven code has a call site too.

    This loop runs for every frame of every query (often 20-60 frames), so it is written for
    speed: one dict lookup by ``id`` per frame, and library frames fall through two tests.
    """
    stack: list[Any] = []
    batch = None
    hopped = False
    hook_at = -1
    node = None
    first: FrameType | None = None
    first_depth = hook_depth = render_depth = -1
    reusable = True  # False once the walk saw what only a full walk gets right
    below: FrameType | None = None  # the frame the current one called
    entered: list[FrameType | None] = []
    above: list[FrameType] = []
    collecting = False  # from the first entry to the next: library code that called it
    if frame is None:
        return (), None, False, -1, None, None, ([], [])
    kind_of = _frame_kinds.get
    for depth in range(MAX_WALK):
        code = frame.f_code
        kind = kind_of(id(code), _UNKNOWN)
        if kind == _UNKNOWN:
            kind = _classify(frame)
        if not kind:
            if frame is hook:
                hook_at = len(stack)
                hook_depth = depth
            if collecting:
                above.append(frame)
                collecting = len(above) < MAX_ABOVE
        elif kind == _USER and below is not None and below.f_code in _pass_codes:
            pass  # a middleware passing the request on to the next handler
        else:
            if kind == _USER:
                entered.append(below)
                collecting = len(entered) == 1
                if first is None:
                    first, first_depth = frame, depth
                lines = _user_lines.get(id(code))
                if lines is None:  # cleared by another thread meanwhile
                    line = frame.f_lineno
                else:
                    line = lines.get(frame.f_lasti)
                    if line is None:
                        line = lines[frame.f_lasti] = frame.f_lineno
                stack.append(code)
                stack.append(line)
                if len(stack) >= 2 * MAX_USER_FRAMES:
                    break
            elif kind == _OWNER:
                found = owners.entry(frame, _owner_readers.get(id(code)) or _no_owner)
                if found:
                    entered.append(below)
                    collecting = len(entered) == 1
                    stack.extend(found)
                    if len(stack) >= 2 * MAX_USER_FRAMES:
                        break
            elif kind == _RENDER:
                if node is None and hook_at == len(stack):
                    node = frame.f_locals.get("self")
                    render_depth = depth
            elif kind == _BATCH and not stack:
                batch = frame
                reusable = False
            elif kind == _CONNECT:
                return None, None, False, -1, None, None, ([], [])
            elif kind == _HOP:
                reusable = False
                if async_scope:
                    hopped = True
                    break
                hopped = True  # keep walking: the coroutine is found at AsyncToSync below
            elif kind == _ASYNC_TO_SYNC and hopped:
                # A sync scope (WSGI middleware) around an async view: the query came back to
                # this thread through sync_to_async; the user's await is in the coroutine.
                stack.extend(_walk_coro(frame.f_locals.get("awaitable")))
                hopped = False
                if len(stack) >= 2 * MAX_USER_FRAMES:
                    del stack[2 * MAX_USER_FRAMES :]
                    break
        if frame is base:
            break
        below = frame
        frame = frame.f_back
        if frame is None:
            break
    result = tuple(stack)
    anchor = None
    if reusable and first is not None:
        lasti = first.f_lasti
        fields = (first_depth, first, lasti, result, hook_depth, hook_at, render_depth, [0])
        anchor = _new_anchor(Anchor, fields)
    return result, batch, hopped and async_scope, hook_at, node, anchor, (entered, above)


def _module(frame: FrameType) -> str:
    return frame.f_globals.get("__name__") or ""


def _no_owner(frame: FrameType) -> None:
    """Reader of an owner frame whose reader was dropped with the caches meanwhile."""
    return None


def _render_node(render_depth: int) -> Any:
    """The template node at a remembered walk's ``render_depth``, if a node is being
    rendered there (called from ``_record``, so the walk's depth 0 is frame 3 here)."""
    if render_depth < 0:
        return None
    frame = sys._getframe(3 + render_depth)
    if frame.f_code not in _render_codes:
        return None
    return frame.f_locals.get("self")


def _coro_frames(coro: Any) -> list[FrameType] | None:
    """Frames of the coroutine chain ``coro`` is suspended in, outermost first; None while
    it is running (a running coroutine does not expose what it will await)."""
    frames: list[FrameType] = []
    while coro is not None and len(frames) < MAX_WALK:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            break
        frames.append(frame)
        awaited = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        if awaited is None and (
            getattr(coro, "cr_running", False) or getattr(coro, "ag_running", False)
        ):
            return None
        coro = awaited
    return frames


def is_user_frame(frame: FrameType) -> bool:
    """Whether ``frame`` runs the user's code, by the recorder's rules and from its cache;
    the ORM hooks use it so both layers agree on what a call site is."""
    kind = _frame_kinds.get(id(frame.f_code), _UNKNOWN)
    if kind == _UNKNOWN:
        kind = _classify(frame)
    return kind == _USER


# ``render_frame``'s cache, keyed by ``(id(code), line)``: each entry holds its code object,
# so no id is reused while it is a key. Keying by the code itself hashes its bytecode and
# constants (nested functions included) on every lookup, which made rendering the stacks of
# a small request's analysis cost more than the rest of it.
_rendered_frames: dict[tuple[int, int], tuple[CodeType, str]] = {}


def render_frame(code: CodeType, lineno: int) -> str:
    """``path/to/file.py:LINE in func``, the path relative to the working directory when the
    file is under it (that is how editors and terminals make it clickable)."""
    found = _rendered_frames.get((id(code), lineno))
    if found is not None:
        return found[1]
    path = code.co_filename
    try:
        rel = os.path.relpath(path)
        if not rel.startswith(".."):
            path = rel
    except ValueError:  # another drive on Windows
        pass
    text = f"{path}:{lineno} in {code.co_qualname}"
    if len(_rendered_frames) >= MAX_RENDERED_FRAMES:
        _rendered_frames.clear()
    _rendered_frames[(id(code), lineno)] = (code, text)
    return text


def render_stack(stack: tuple[Any, ...]) -> list[str]:
    """A recorded ``(code, line, code, line, ...)`` stack as rendered frames, innermost
    first."""
    return list(map(render_frame, stack[::2], stack[1::2]))


def _walk_task(task: asyncio.Task[Any] | None) -> tuple[Any, ...]:
    """User frames of the coroutine chain a scope's task is awaiting on.

    Used when a query runs in a ``sync_to_async`` worker thread, whose own stack holds no
    user code: the user's ``await Book.objects.aget(...)`` line is in the awaiting task.
    """
    return () if task is None else _walk_coro(task.get_coro())


def _walk_coro(coro: Any) -> tuple[Any, ...]:
    """User frames (innermost first) of the coroutine chain ``coro`` is awaiting on."""
    frames = _coro_frames(coro)
    if frames is None:
        # The event loop is still running the task: the worker picked the job up before
        # the task suspended on it, so the chain is incomplete. It suspends within
        # microseconds; wait a little, bounded, rather than lose the call site.
        deadline = perf_counter() + TASK_SETTLE_SECONDS
        while frames is None and perf_counter() < deadline:
            time.sleep(0.00005)
            frames = _coro_frames(coro)
        if frames is None:
            return ()
    stack: list[Any] = []
    below: FrameType | None = None
    for frame in reversed(frames):
        if is_user_frame(frame) and (below is None or below.f_code not in _pass_codes):
            stack.extend((frame.f_code, frame.f_lineno))
            if len(stack) >= 2 * MAX_USER_FRAMES:
                break
        below = frame
    return tuple(stack)


# --------------------------------------------------------------------------- the wrapper

_failures_logged: set[str] = set()


def log_internal_error(where: str, *, exc_info: bool = True) -> None:
    """Log an internal failure once per place, with its traceback; never raise."""
    if where in _failures_logged:
        return
    _failures_logged.add(where)
    logger.error(
        "django-nplusone-guard hit an internal error in %s; the query ran normally and "
        "this scope may be incomplete. Please report it.",
        where,
        exc_info=exc_info,
    )


def _execute_wrapper(
    execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    scope = _current.get()
    if scope is None:
        return execute(sql, params, many, context)
    start = perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        duration = perf_counter() - start
        try:
            _record(scope, context["connection"].alias, sql, params, many, duration)
        except Exception:
            log_internal_error("the execute wrapper")


def _record(scope: Scope, alias: str, sql: Any, params: Any, many: bool, duration: float) -> None:
    task = scope.task
    event = current_call.get()
    hook = None if event is None else event.frame
    stack: tuple[Any, ...]
    # A remembered walk for this statement (only plain strings key them: psycopg's Composed
    # is not hashable) still holds when its first user frame is again at the same depth,
    # suspended at the same instruction, so that every frame above it is unchanged, and the
    # hooked ORM call, if any, sits at the same depth too: a loop's repeats. Anything else
    # (another line, a deeper or shallower path) walks in full.
    reuse = task is None and type(sql) is str
    anchor = scope.walks.get(sql) if reuse else None
    if anchor is not None:
        # One unpacking instead of an attribute lookup per field (this runs per statement).
        depth, first, lasti, stack, hook_depth, hook_at, render_depth, reads = anchor
        try:
            # Frame 2 is Django's CursorWrapper._execute_with_wrappers, the walk's depth 0.
            frame = sys._getframe(2 + depth)
            if frame is not first or frame.f_lasti != lasti:
                anchor = None
            elif hook is None:
                if hook_depth >= 0:
                    anchor = None
            elif hook_depth < 0 or sys._getframe(2 + hook_depth) is not hook:
                anchor = None
        except ValueError:  # the stack is shallower than the remembered depth
            anchor = None
    if anchor is not None:
        batch, hopped, node = None, False, None
        if event is not None and event.site is None and reads[0] < MAX_ATTRIBUTED_CALLS:
            # Reading a node is a locals snapshot of its frame; past the calls a finding is
            # explained from (MAX_ATTRIBUTED_CALLS), nobody looks at it.
            reads[0] += 1
            node = _render_node(render_depth)
    else:
        walked, batch, hopped, hook_at, node, anchor, entered = _walk(
            sys._getframe(2), scope.base_frame, task is not None, hook
        )
        if walked is None:
            return
        stack = walked
        if stack:
            called, above = entered
            scope.entries[id(stack)] = (
                tuple(
                    "" if frame is None or is_user_frame(frame) else _module(frame)
                    for frame in called
                ),
                tuple(map(_module, above)),
            )
        if anchor is not None and reuse and len(scope.walks) < MAX_WALKS_PER_SCOPE:
            scope.walks[sql] = anchor
    if task is not None and (hopped or not stack):
        stack = (stack + _walk_task(task))[: 2 * MAX_USER_FRAMES]
    if event is not None:
        if hook_at < 0:
            event = None  # a call made outside this scope's frames
        else:
            if event.site is None and len(stack) > hook_at:
                # The call's own site: the first user frame above its hook.
                event.site = (stack[hook_at], stack[hook_at + 1])
                event.node = node
            if hook_at:
                event = None  # user code ran in between: it explains this statement
    call = next(_call_ids) if batch is None else scope.call_id(stack, batch)
    record: Record = (alias, sql, params, many, duration, stack, call, False, event)
    if scope.parent is None and scope.aliases is None and scope.count < scope.max_queries:
        # The common case inline (one scope for the request, under its sample limit):
        # what ``Scope.add`` would do, without the call.
        scope.count += 1
        scope.total_time += duration
        scope.records.append(record)
        return
    node_scope: Scope | None = scope
    while node_scope is not None:
        if node_scope.ignoring:
            if not record[IGNORED]:
                record = (alias, sql, params, many, duration, stack, call, True, event)
        elif node_scope.aliases is None or alias in node_scope.aliases:
            node_scope.add(record)
        node_scope = node_scope.parent


# --------------------------------------------------------------------------- installation


def _next_handler(request: Any) -> Any:
    """Stands for a middleware's ``get_response``, to learn the code Django wraps it in."""


async def _next_async_handler(request: Any) -> Any:
    """The same for async middleware chains."""


_install_lock = threading.Lock()
_installed = False
# Threads whose existing connections are hooked; later ones are hooked on connect.
_hooked_thread = threading.local()


def _install_on(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    if _execute_wrapper not in connection.execute_wrappers:
        _connect_codes.update(
            cls.__dict__["init_connection_state"].__code__
            for cls in type(connection).__mro__
            if "init_connection_state" in cls.__dict__
        )
        connection.execute_wrappers.append(_execute_wrapper)


def install() -> None:
    """Hook every connection, now and future. Idempotent; called from ``AppConfig.ready``
    and, for projects that use ``capture()`` without the app installed, on first capture.

    Runs at every ``capture()``: once this thread's connections are hooked it returns at
    once, since ``connection_created`` hooks every connection opened after that."""
    global _installed
    if _installed and getattr(_hooked_thread, "done", False):
        return
    with _install_lock:
        if not _installed:
            from asgiref.sync import AsyncToSync, SyncToAsync
            from django.core.handlers.exception import convert_exception_to_response
            from django.db.models import deletion, query
            from django.template.base import Node

            _hop_codes.add(SyncToAsync.thread_handler.__code__)
            _async_to_sync_codes.add(AsyncToSync.__call__.__code__)
            _render_codes.add(Node.render_annotated.__code__)
            _pass_codes.update(
                convert_exception_to_response(handler).__code__
                for handler in (_next_handler, _next_async_handler)
            )

            _batch_codes.update(
                {
                    query.QuerySet.bulk_create.__code__,
                    query.QuerySet.bulk_update.__code__,
                    query.QuerySet._iterator.__code__,  # type: ignore[attr-defined]
                    query.QuerySet.in_bulk.__code__,
                    query.prefetch_related_objects.__code__,
                    deletion.Collector.collect.__code__,
                    deletion.Collector.delete.__code__,
                }
            )
            _reset_frame_cache()
            conf.on_settings_change(_reset_frame_cache)
            connection_created.connect(_install_on, dispatch_uid="django_nplusone_guard")
            _installed = True
    for connection in connections.all(initialized_only=True):
        _install_on(connection)
    _hooked_thread.done = True


# --------------------------------------------------------------------------- public scopes


class capture:  # lower case: used like a function, ``with capture() as report``
    """Record every query run by this block, then analyse them into a :class:`Report`.

    ``with capture() as report: ...`` fills ``report`` when the block exits. Works in sync
    and async code (``with`` or ``async with``), nests (an inner scope's queries also count
    for the outer one) and never sees queries of other threads, tasks or requests.

    ``threshold`` is how many separate calls from one place make an N+1 (default: the
    ``THRESHOLD`` setting); ``using`` limits capture to one alias or a list of aliases;
    ``explain`` switches the missing-index analysis (default: the ``EXPLAIN`` setting).
    """

    def __init__(
        self,
        *,
        explain: bool | None = None,
        using: str | Sequence[str] | None = None,
        threshold: int | None = None,
        allow: Sequence[Any] | None = None,
        max_queries: int | None = None,
    ) -> None:
        config = conf.get_config()
        self.explain = config.EXPLAIN if explain is None else explain
        self.aliases = None if using is None else conf.as_tuple(using)
        self.threshold = config.THRESHOLD if threshold is None else threshold
        self.allow = config.ALLOW + tuple(allow) if allow else config.ALLOW
        self.max_queries = config.MAX_QUERIES if max_queries is None else max_queries
        self.report = Report()
        self.scope: Scope | None = None
        self._token: Any = None

    def start(self, base_frame: FrameType | None = None) -> Report:
        install()
        self.scope = Scope(
            parent=_current.get(),
            aliases=self.aliases,
            max_queries=self.max_queries,
            base_frame=base_frame,
        )
        self._token = _current.set(self.scope)
        return self.report

    def stop(self) -> None:
        """Stop recording; the report is not filled yet (see :meth:`analyse`)."""
        if self._token is not None:
            try:
                _current.reset(self._token)
            except ValueError:
                # Exited in another context than entered (e.g. a generator-based fixture
                # finalised elsewhere): restore the parent explicitly.
                _current.set(self.scope.parent if self.scope else None)
            self._token = None

    def analyse(self) -> Report:
        """Fill ``self.report`` from what was recorded. Never raises: failures are logged
        and noted in ``report.errors``."""
        scope = self.scope
        if scope is None:
            return self.report
        try:
            analyse_scope(scope, self, into=self.report)
        except Exception as exc:
            log_internal_error("analysis")
            self.report.errors.append(f"analysis failed: {exc!r}")
        finally:
            scope.close()
        return self.report

    def __enter__(self) -> Report:
        return self.start(sys._getframe(1))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        self.stop()
        self.analyse()
        return False

    async def __aenter__(self) -> Report:
        return self.start(sys._getframe(1))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        from asgiref.sync import sync_to_async

        self.stop()
        if self.explain:
            # EXPLAIN talks to the database, which is only allowed from sync code.
            await sync_to_async(self.analyse)()
        else:
            self.analyse()
        return False


class ignore:  # lower case: used like a function
    """Silence findings for queries run inside this block or decorated function.

    The queries still count toward the enclosing scope's totals; they just never become
    findings. Nestable, and usable as a decorator on sync and async functions.
    """

    def __init__(self) -> None:
        self._tokens: list[Any] = []

    def __enter__(self) -> None:
        parent = _current.get()
        if parent is None:
            self._tokens.append(None)
            return
        self._tokens.append(_current.set(Scope(parent=parent, ignoring=True, max_queries=0)))

    def __exit__(self, *exc_info: object) -> None:
        token = self._tokens.pop()
        if token is not None:
            _current.reset(token)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with ignore():
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with ignore():
                return func(*args, **kwargs)

        return wrapper


class suppressed:
    """Run the guard's own queries (EXPLAIN, introspection) without recording them, here
    and in django-debug-toolbar's SQL panel when it is recording the same request."""

    def __enter__(self) -> None:
        self._token = _current.set(None)
        # The SQL panel only wraps cursors opened while ``_djdt_logger`` is set; clearing
        # it is how the toolbar hides its own queries too.
        self._toolbar_loggers: list[tuple[Any, Any]] = []
        if "debug_toolbar" not in sys.modules:
            return  # no toolbar, no logger to clear: skip walking the connections
        for connection in connections.all(initialized_only=True):
            toolbar_logger = getattr(connection, "_djdt_logger", None)
            if toolbar_logger is not None:
                self._toolbar_loggers.append((connection, toolbar_logger))
                connection._djdt_logger = None  # type: ignore[attr-defined]

    def __exit__(self, *exc_info: object) -> None:
        for connection, logger in self._toolbar_loggers:
            connection._djdt_logger = logger
        _current.reset(self._token)


class resumed:
    """Record into a stopped capture's scope again, for work that belongs to it but runs
    after its owner returned (a streamed response's body). Set and reset around each step
    in the context that runs it, so the scope never outlives the step there."""

    __slots__ = ("_scope", "_token")

    def __init__(self, scope_capture: capture) -> None:
        self._scope = scope_capture.scope
        self._token: Any = None

    def __enter__(self) -> None:
        if self._scope is not None:
            self._token = _current.set(self._scope)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None


# Bound last: :mod:`.detect` imports this module, which is complete by now. A function-level
# import here would run the import machinery (``ModuleSpec.parent`` included) at the end of
# every request.
from .detect import analyse_scope  # noqa: E402
