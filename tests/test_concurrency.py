"""Concurrency: every request's report holds exactly its own queries and findings.

Each request runs a pattern of its own (an N+1 over ``n`` books, a duplicate when ``n`` is
even, and a query tagged with a token only it knows), so a query leaking from one request
into another changes a count or shows a foreign token. Requests are forced to overlap with
barriers: they all stop half-way until the others have started.

Three servers: Django's ``ThreadedWSGIServer`` over real sockets, Django's ASGI handler
driven in-process with ``asyncio.gather``, and a WSGI handler called from a pool of
reused threads (how gunicorn's gthread workers run) for the memory soak.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.db import connections
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.test import Client
from django.urls import path

from django_nplusone_guard.capture import Scope, active_scope
from django_nplusone_guard.middleware import REQUEST_ATTR
from django_nplusone_guard.report import Report
from tests.factories import BookFactory
from tests.testapp.models import Author, Book, Publisher

pytestmark = pytest.mark.django_db(transaction=True)

GUARD = "django_nplusone_guard.middleware.NPlusOneGuardMiddleware"
TOKEN_PREFIX = "token-"


# --------------------------------------------------------------------------- the patterns


_barriers: dict[str, threading.Barrier] = {}
_async_barriers: dict[str, asyncio.Barrier] = {}


def pattern(request: HttpRequest, n: int) -> HttpResponse:
    token = request.GET["t"]
    Author.objects.filter(name=TOKEN_PREFIX + token).exists()
    barrier = _barriers.get(request.GET.get("wait", ""))
    if barrier is not None:
        barrier.wait(timeout=30)  # every request of the wave is now half-way through
    names = [book.author.name for book in Book.objects.order_by("id")[:n]]
    if n % 2 == 0:
        Publisher.objects.filter(name=TOKEN_PREFIX + token).exists()
        Publisher.objects.filter(name=TOKEN_PREFIX + token).exists()
    return HttpResponse(",".join(names))


async def async_pattern(request: HttpRequest, n: int) -> HttpResponse:
    token = request.GET["t"]
    await Author.objects.filter(name=TOKEN_PREFIX + token).aexists()
    barrier = _async_barriers.get(request.GET.get("wait", ""))
    if barrier is not None:
        await asyncio.wait_for(barrier.wait(), timeout=30)
    names = []
    async for book in Book.objects.order_by("id")[:n]:
        names.append((await Author.objects.aget(pk=book.author_id)).name)
    if n % 2 == 0:
        await Publisher.objects.filter(name=TOKEN_PREFIX + token).aexists()
        await Publisher.objects.filter(name=TOKEN_PREFIX + token).aexists()
    return HttpResponse(",".join(names))


def failing(request: HttpRequest) -> HttpResponse:
    Author.objects.filter(name=TOKEN_PREFIX + request.GET["t"]).exists()
    raise RuntimeError("view failed")


urlpatterns = [
    path("pattern/<int:n>/", pattern),
    path("async/pattern/<int:n>/", async_pattern),
    path("failing/", failing),
]


@dataclass(frozen=True)
class Expected:
    queries: int
    nplusone_count: int
    duplicates: int

    @classmethod
    def for_pattern(cls, n: int) -> Expected:
        duplicate = n % 2 == 0
        return cls(
            queries=1 + 1 + n + (2 if duplicate else 0),
            nplusone_count=n,
            duplicates=int(duplicate),
        )

    @property
    def header(self) -> str:
        return (
            f"nplusone=1; duplicates={self.duplicates}; missing_indexes=0; queries={self.queries}"
        )


# --------------------------------------------------------------------------- report recorder

_reports: dict[str, Report] = {}
_reports_lock = threading.Lock()


class RecordReports:
    """Outermost middleware: keeps each request's finished report under its token."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self._acall(request)
        response = self.get_response(request)
        self._keep(request)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase = await self.get_response(request)
        self._keep(request)
        return response

    @staticmethod
    def _keep(request: HttpRequest) -> None:
        report = getattr(request, REQUEST_ATTR, None)
        if report is not None:
            with _reports_lock:
                _reports[request.GET["t"]] = report


@pytest.fixture
def patterns(settings) -> Iterator[dict[str, Report]]:
    """Settings for the pattern views; yields the reports recorded per token."""
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = [f"{__name__}.RecordReports", GUARD]
    settings.NPLUSONE_GUARD = {"ENABLED": True, "ACTION": "off", "HEADER": True}
    BookFactory.create_batch(9)
    _reports.clear()
    yield _reports
    _reports.clear()


@pytest.fixture(autouse=True)
def no_scope_left_behind() -> Iterator[None]:
    assert active_scope() is None
    yield
    assert active_scope() is None


def _check_report(report: Report, token: str, n: int) -> None:
    """The report holds exactly this request's statements and findings."""
    expected = Expected.for_pattern(n)
    assert report.query_count == len(report.queries) == expected.queries
    tokens = {
        p for q in report.queries for p in (q.params or ()) if str(p).startswith(TOKEN_PREFIX)
    }
    assert tokens == {TOKEN_PREFIX + token}
    [nplusone] = report.nplusones
    assert nplusone.count == n, [(q.callsite, q.sql[:30]) for q in report.queries]
    assert "testapp_author" in nplusone.sql
    assert len(report.duplicates) == expected.duplicates
    assert report.errors == []


# --------------------------------------------------------------------------- threaded server


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def threaded_server(patterns) -> Iterator[str]:
    server = ThreadedWSGIServer(("127.0.0.1", 0), _QuietHandler, allow_reuse_address=False)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, response.headers["X-NPlusOne-Guard"], response.read().decode()


def test_threaded_server_keeps_every_report_to_its_own_request(threaded_server, patterns):
    wave, total, workers = 8, 160, 16
    _barriers["wave"] = threading.Barrier(wave)
    jobs = []
    for i in range(total):
        n = 2 + i % 8
        token = uuid.uuid4().hex
        wait = "&wait=wave" if i < wave else ""
        jobs.append((token, n, f"{threaded_server}/pattern/{n}/?t={token}{wait}"))
    try:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda job: _get(job[2]), jobs))
    finally:
        _barriers.pop("wave")
    for (token, n, _url), (status, header, body) in zip(jobs, results, strict=True):
        assert status == 200
        assert header == Expected.for_pattern(n).header, (n, header)
        assert body.count(",") == n - 1
        _check_report(patterns[token], token, n)
    assert len(patterns) == total


# --------------------------------------------------------------------------- ASGI


async def _asgi_get(app: ASGIHandler, path_: str, query: str) -> tuple[int, dict[bytes, bytes]]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path_,
        "raw_path": path_.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []
    request_sent = False
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()  # the client never disconnects early
        return {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(dict(message))

    try:
        await app(scope, receive, send)
    finally:
        done.set()
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], dict(start["headers"])


def test_asgi_concurrent_requests_keep_their_own_reports(patterns):
    total = 60
    app = ASGIHandler()
    jobs = [(uuid.uuid4().hex, 2 + i % 8) for i in range(total)]

    async def main() -> list[tuple[int, dict[bytes, bytes]]]:
        _async_barriers["all"] = asyncio.Barrier(total)
        try:
            return await asyncio.gather(
                *(_asgi_get(app, f"/async/pattern/{n}/", f"t={t}&wait=all") for t, n in jobs)
            )
        finally:
            _async_barriers.pop("all")
            await sync_to_async(connections.close_all)()

    results = asyncio.run(main())
    for (token, n), (status, headers) in zip(jobs, results, strict=True):
        assert status == 200
        assert headers[b"X-NPlusOne-Guard"].decode() == Expected.for_pattern(n).header, [
            (q.callsite, q.sql[:30]) for q in patterns[token].queries
        ]
        _check_report(patterns[token], token, n)


# --------------------------------------------------------------------------- reused threads


def _wsgi_environ(path_: str, query: str) -> dict[str, Any]:
    import io
    import sys

    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path_,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def _wsgi_get(app: WSGIHandler, path_: str, query: str) -> tuple[str, str]:
    """One request the way a WSGI server makes it; closing the response ends the request
    (``request_finished`` closes the thread's database connection)."""
    status_headers: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
        status_headers.extend((status, dict(headers)))
        return lambda data: None

    body = app(_wsgi_environ(path_, query), start_response)
    try:
        b"".join(body)
    finally:
        body.close()
    leftover = active_scope()
    assert leftover is None, "a scope outlived its request in a reused thread"
    return status_headers[0], status_headers[1].get("X-NPlusOne-Guard", "")


def _soak(app: WSGIHandler, pool: ThreadPoolExecutor, start: int, count: int) -> int:
    """Run ``count`` requests; returns how many reports were wrong."""
    jobs = [(uuid.uuid4().hex, 2 + i % 2) for i in range(start, start + count)]
    futures = [pool.submit(_wsgi_get, app, f"/pattern/{n}/", f"t={t}") for t, n in jobs]
    wrong = 0
    for (token, n), future in zip(jobs, futures, strict=True):
        status, header = future.result()
        report = _reports.pop(token)
        if status != "200 OK" or header != Expected.for_pattern(n).header:
            wrong += 1
        else:
            _check_report(report, token, n)
    return wrong


def _guard_objects() -> int:
    return sum(type(o) in (Scope, Report) for o in gc.get_objects())  # no lazy-object probing


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class MemorySample:
    objects: int  # every object the garbage collector tracks
    guard_objects: int  # live Scope and Report instances
    rss: int

    @classmethod
    def take(cls) -> MemorySample:
        gc.collect()
        return cls(len(gc.get_objects()), _guard_objects(), _rss_bytes())


SOAK_MIN, SOAK_MAX, SOAK_SECONDS = 1_250, 3_000, 4.0


def _close_connections_in_every_thread(pool: ThreadPoolExecutor, threads: int) -> None:
    """A barrier makes each of the pool's threads take exactly one of these jobs."""
    barrier = threading.Barrier(threads)

    def close() -> None:
        barrier.wait(timeout=30)
        connections.close_all()

    for future in [pool.submit(close) for _ in range(threads)]:
        future.result()


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS is read from /proc")
def test_soak_in_reused_threads_keeps_memory_flat(patterns, record_property, monkeypatch):
    """Over a thousand requests (up to 3,000 on a fast machine, after a warm-up of 250) over
    8 reused threads: no wrong report, no growth.

    Memory is sampled after a warm-up (caches, lazily built Django state) and again after
    the soak. A leak of one object per request shows as thousands of objects; a leaked
    report (a few KB each) as megabytes of RSS.
    """
    # Persistent connections, as most deployments run: reconnecting per request would make
    # this test measure PostgreSQL's connection set-up (test_a_reconnection_... covers it).
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 600)
    app = WSGIHandler()
    warmup, batch, threads = 250, 250, 8
    soak = wrong = 0
    with ThreadPoolExecutor(threads) as pool:
        try:
            assert _soak(app, pool, 0, warmup) == 0
            before = MemorySample.take()
            started = perf_counter()
            # At least SOAK_MIN requests; more, up to SOAK_MAX, while within SOAK_SECONDS.
            while soak < SOAK_MIN or (soak < SOAK_MAX and perf_counter() - started < SOAK_SECONDS):
                wrong += _soak(app, pool, warmup + soak, batch)
                soak += batch
            elapsed = perf_counter() - started
            after = MemorySample.take()
        finally:
            _close_connections_in_every_thread(pool, threads)
    record_property("soak", f"{soak} requests, 8 threads, {elapsed:.1f}s: {before} -> {after}")
    assert wrong == 0
    assert after.guard_objects <= before.guard_objects
    assert after.objects - before.objects < soak // 4, (before, after)
    assert after.rss - before.rss < 8 * 1024 * 1024, (before, after)


# --------------------------------------------------------------------------- across requests


def test_a_failing_request_leaves_nothing_for_the_next_one(patterns):
    client = Client(raise_request_exception=False)
    assert client.get("/failing/", {"t": "boom"}).status_code == 500
    assert active_scope() is None
    failed = patterns["boom"]
    assert failed.query_count == 1
    assert TOKEN_PREFIX + "boom" in failed.queries[0].params
    token = uuid.uuid4().hex
    response = client.get("/pattern/3/", {"t": token})
    assert response["X-NPlusOne-Guard"] == Expected.for_pattern(3).header
    _check_report(patterns[token], token, 3)


def test_reports_of_one_request_are_not_touched_by_the_next(patterns):
    client = Client()
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    client.get("/pattern/5/", {"t": first})
    snapshot = patterns[first].to_dict()
    client.get("/pattern/2/", {"t": second})
    assert patterns[first].to_dict() == snapshot
    assert patterns[first] is not patterns[second]


def test_a_reconnection_inside_a_request_is_not_counted(patterns):
    """Django's connection set-up (MySQL runs ``SET SQL_AUTO_IS_NULL = 0``) is not the
    user's query; a thread that reconnects per request must count the same as a new one."""
    connections["default"].close()
    token = uuid.uuid4().hex
    response = Client().get("/pattern/3/", {"t": token})
    assert response["X-NPlusOne-Guard"] == Expected.for_pattern(3).header
    _check_report(patterns[token], token, 3)
