"""The Celery peer's app: one no-op task, Redis as broker and result backend
($CELERY_REDIS: redis://127.0.0.1:PORT/0)."""

import os

from celery import Celery

app = Celery("bench", broker=os.environ["CELERY_REDIS"], backend=os.environ["CELERY_REDIS"])
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                worker_prefetch_multiplier=64, task_acks_late=False,
                broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task(name="noop")
def noop():
    return None
