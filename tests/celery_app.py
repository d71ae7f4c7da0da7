"""The Celery app of the tests: eager in the test process, a real worker in a subprocess
(``celery -A tests.celery_app worker``) against the broker this machine runs.

``NPLUSONE_GUARD_CELERY_BROKER`` overrides the broker (default: RabbitMQ on 127.0.0.1);
results come back over the broker itself (``rpc://``). ``NPLUSONE_GUARD_CELERY_QUEUE`` names
the queue, one per worker test, so runs that share the broker never take each other's tasks.
"""

from __future__ import annotations

import os

from celery import Celery

BROKER_URL = os.environ.get("NPLUSONE_GUARD_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//")

app = Celery("tests", broker=BROKER_URL, backend="rpc://", include=["tests.testapp.celery_tasks"])
app.conf.update(
    task_default_queue=os.environ.get("NPLUSONE_GUARD_CELERY_QUEUE", "nplusone_guard_tests"),
    # A worker that answers nobody else's broadcasts, and fails fast without a broker.
    worker_enable_remote_control=False,
    broker_connection_retry_on_startup=False,
    broker_connection_timeout=5,
    task_eager_propagates=True,
)
