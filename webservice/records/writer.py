"""The record writer: answers go to the record in group commits, off the request path.

One writer per gunicorn worker: a request only appends its answer to a bounded buffer (a few
microseconds); a thread writes everything buffered every `interval` seconds in one transaction.
What that costs and what it can lose (docs/records.md):

- A graceful stop (SIGTERM, SIGHUP reload, scale-down) writes everything before the worker exits.
- A killed worker loses at most what it answered in its last interval plus one write; the master
  counts that loss (`oncology_prediction_records_lost_total`, `unrecorded`) and logs it.
- A buffer half full is written at once, not at the interval; a full one, while the database is
  reachable, holds the request that fills it until the writer has made room (backpressure, at
  most `MAX_HOLD` seconds): a busy writer never drops records.
- While the database is unreachable (or has no schema yet) the buffer holds up to `capacity`
  tumors and the writer retries; past that the default drops the oldest (counted), `required`
  refuses new predictions (503, unready) until the database is back and the buffer drains.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence

import sqlalchemy as sa

from webservice.metrics import (
    RECORDS_DROPPED,
    RECORDS_PENDING,
    RECORDS_QUEUED,
    RECORDS_WRITE_ERRORS,
    RECORDS_WRITE_SECONDS,
    RECORDS_WRITTEN,
)
from webservice.records.store import AnswerRecord, RecordStore

log = logging.getLogger(__name__)
MAX_BACKOFF = 5.0  # seconds between retries while the database is unreachable
MAX_GROUP = 100_000  # tumors per transaction
MAX_HOLD = 2.0  # seconds a request may wait for room in a full buffer while the database answers
# Errors the writer retries (the database is away, refuses connections, has no schema yet), as
# against the ones that refuse particular answers.
RETRIED = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.ProgrammingError)
DROP_REASONS = ("full", "stopped", "rejected")


class RecordWriter:
    """Buffer answers and write them in group commits from a thread started on first use (so in
    each gunicorn worker, after the fork)."""

    def __init__(
        self, store: RecordStore, *, capacity: int, interval: float, required: bool
    ) -> None:
        self.store = store
        self.capacity = capacity
        self.interval = interval
        self.required = required
        self._pending: deque[AnswerRecord] = deque()
        self._in_flight: list[AnswerRecord] = []
        self._tumors = 0  # pending and in flight
        self._added = 0  # answers ever added, and ever settled (written, dropped or refused)
        self._settled = 0
        self._lock = threading.Lock()
        self._settled_changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None
        self._stopping = False
        for reason in DROP_REASONS:  # every series at zero from the start, for rates and alerts
            RECORDS_DROPPED.labels(reason)

    @property
    def accepting(self) -> bool:
        """New predictions may be answered: always, unless records are required and the buffer
        is full (the database has been unreachable for a while)."""
        return not self.required or self._tumors < self.capacity

    @property
    def pending(self) -> int:
        """Tumors waiting to be written."""
        return self._tumors

    def add(self, record: AnswerRecord) -> None:
        """Queue one answer (called once the answer is built)."""
        count = len(record.malignant)
        RECORDS_QUEUED.inc(count)
        dropped = 0
        with self._lock:
            self._pending.append(record)
            self._tumors += count
            self._added += 1
            if self._tumors > self.capacity and self._failing_since is None and self._thread:
                self._make_room()
            if not self.required:
                while self._tumors > self.capacity and len(self._pending) > 1:
                    oldest = self._pending.popleft()
                    self._tumors -= len(oldest.malignant)
                    self._settled += 1
                    dropped += len(oldest.malignant)
        if dropped:
            RECORDS_DROPPED.labels("full").inc(dropped)
        if self._thread is None:
            self._start()
        elif self._tumors * 2 >= self.capacity and self._failing_since is None:
            self._wake.set()  # half full: write now rather than at the interval

    def _make_room(self) -> None:
        """Backpressure (the lock held): the database answers but the writer is behind, so wait
        for it, up to MAX_HOLD, rather than drop what was answered."""
        self._wake.set()
        deadline = time.monotonic() + MAX_HOLD
        while self._tumors > self.capacity and self._failing_since is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._settled_changed.wait(left)

    def flush(self, timeout: float) -> bool:
        """Write everything added so far; False when that did not happen within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._added
            if self._settled >= target:
                return True
        if self._thread is None:
            self._start()
        self._wake.set()
        with self._lock:
            while self._settled < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._settled_changed.wait(left)
        return True

    def close(self, timeout: float) -> None:
        """On a graceful stop: write what is buffered; what cannot be written within `timeout`
        (the database is unreachable) is counted as dropped (`stopped`) and logged."""
        written = self.flush(timeout)
        with self._lock:
            self._stopping = True
            left = self._tumors
        if not written and left:
            RECORDS_DROPPED.labels("stopped").inc(left)
            log.error(
                "stopping with %d answered tumors not written to the prediction record: the "
                "database did not take them within %.0f s",
                left,
                timeout,
            )

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="record-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = self.interval
        while True:
            self._wake.wait(backoff)
            self._wake.clear()
            with self._lock:
                if self._stopping:
                    return
                group: list[AnswerRecord] = []
                size = 0
                while self._pending and size < MAX_GROUP:
                    record = self._pending.popleft()
                    group.append(record)
                    size += len(record.malignant)
                self._in_flight = group
            if group:
                backoff = (
                    self.interval
                    if self._write(group, size)
                    else min(max(backoff * 2, self.interval), MAX_BACKOFF)
                )
            RECORDS_PENDING.set(self._tumors)

    def _write(self, group: list[AnswerRecord], size: int) -> bool:
        started = time.perf_counter()
        try:
            self.store.write(group)
        except RETRIED as error:  # unreachable, locked, no schema yet: retry
            self._failed(group, error)
            return False
        except sa.exc.SQLAlchemyError:  # refused: find the answers it refuses, keep the rest
            self._write_one_by_one(group)
            return True
        RECORDS_WRITE_SECONDS.observe(time.perf_counter() - started)
        RECORDS_WRITTEN.inc(size)
        self._settle(len(group), size)
        if self._failing_since is not None:
            log.warning(
                "the prediction record is written again, after %.1f s",
                time.monotonic() - self._failing_since,
            )
            self._failing_since = None
        return True

    def _write_one_by_one(self, group: Sequence[AnswerRecord]) -> None:
        for record in group:
            size = len(record.malignant)
            try:
                self.store.write([record])
            except sa.exc.SQLAlchemyError as error:
                RECORDS_DROPPED.labels("rejected").inc(size)
                log.error("the database refused an answer of %d tumors: %s", size, _why(error))
            else:
                RECORDS_WRITTEN.inc(size)
            self._settle(1, size)

    def _failed(self, group: list[AnswerRecord], error: Exception) -> None:
        RECORDS_WRITE_ERRORS.inc()
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.error(
                "cannot write the prediction record, retrying while up to %d tumors are "
                "buffered: %s",
                self.capacity,
                _why(error),
            )
        dropped = 0
        with self._lock:
            self._pending.extendleft(reversed(group))
            self._in_flight = []
            if not self.required:  # the buffer may have filled meanwhile
                while self._tumors > self.capacity and len(self._pending) > 1:
                    oldest = self._pending.popleft()
                    self._tumors -= len(oldest.malignant)
                    self._settled += 1
                    dropped += len(oldest.malignant)
            self._settled_changed.notify_all()  # settled, or failing: a held request goes on
        if dropped:
            RECORDS_DROPPED.labels("full").inc(dropped)

    def _settle(self, answers: int, tumors: int) -> None:
        with self._lock:
            self._in_flight = []
            self._tumors -= tumors
            self._settled += answers
            self._settled_changed.notify_all()


def _why(error: Exception) -> str:
    """The database's reason, in one line: never the statement's parameters (the engine hides
    them too), which hold medical data."""
    original = getattr(error, "orig", None) or error
    first_line = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return f"{type(original).__name__}: {first_line[:300]}"


def unrecorded(pid: int, folder: str) -> int:
    """Tumors a worker (by pid) queued but neither wrote nor dropped, from its metrics files in
    the multiprocess folder: what it lost when it died without a graceful stop."""
    from prometheus_client.mmap_dict import MmapedDict

    totals = {"queued": 0.0, "written": 0.0, "dropped": 0.0}
    for path in glob.glob(os.path.join(folder, f"counter_{pid}.db")):
        values = MmapedDict.read_all_values_from_file(path)  # type: ignore[no-untyped-call]  # untyped lib
        for key, value, _, _ in values:
            name = json.loads(key)[1]
            for kind in totals:
                if name == f"oncology_prediction_records_{kind}_total":
                    totals[kind] += value
    return max(0, round(totals["queued"] - totals["written"] - totals["dropped"]))
