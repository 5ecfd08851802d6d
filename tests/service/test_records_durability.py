"""The record's durability rules, for real: the service as served (nginx, gunicorn, two workers)
recording into SQLite or into a real PostgreSQL on loopback, under load, with real signals and a
database stopped and started again. Every test counts the ids the clients were answered against
the rows the database holds."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from harness.live_server import LiveServer, live_server
from harness.postgres import Postgres, running_postgres
from tests.helpers import SEED_JSON
from webservice.records import ids
from webservice.records.store import RecordStore, engine_for
from webservice.records.writer import unrecorded

pytestmark = pytest.mark.slow


class Load:
    """Threads sending single predictions and batches of ten, keeping every answered id."""

    def __init__(self, port: int, threads: int = 6) -> None:
        self.port = port
        self.answered: list[str] = []
        self.statuses: dict[int, int] = {}
        self.answered_before: dict[str, int] = {}  # mark -> answered count when it was taken
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=(n,)) for n in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answered) < count:
            assert time.monotonic() < deadline, f"only {len(self.answered)} answered"
            time.sleep(0.02)

    def _loop(self, number: int) -> None:
        sent = 0
        while not self._stop.is_set():
            sent += 1
            batch = sent % 5 == 0
            body = {"tumors": [SEED_JSON] * 10} if batch else SEED_JSON
            path = "/v1/predictions/batch" if batch else "/v1/predictions"
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                connection.request(
                    "POST", path, json.dumps(body), {"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                time.sleep(0.01)  # stopped or restarting: nothing was answered
                continue
            finally:
                connection.close()
            with self._lock:
                self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
                if response.status == 200:
                    answer = json.loads(data)
                    found = answer["predictions"] if batch else [answer]
                    self.answered.extend(a["prediction_id"] for a in found)


def stored(url: str, answered: list[str]) -> set[str]:
    engine = engine_for(url)
    try:
        return RecordStore(engine).exists(answered)
    finally:
        engine.dispose()


def metric(server: LiveServer, name: str) -> float:
    # An http:// URL on loopback built here (B310 warns of file:/ and custom schemes).
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as page:  # nosec B310
        text = page.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#") and line[len(name)] in " {"
    )


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with running_postgres() as server:
        yield server


@contextmanager
def database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'records.sqlite3'}"
    else:
        server: Postgres = request.getfixturevalue("postgres")
        yield server.url


def serve(tmp_path: Path, url: str, **settings: str) -> AbstractContextManager[LiveServer]:
    env = {"ONCOLOGY_DATABASE_URL": url, "ONCOLOGY_ACCESS_LOG": "false", **settings}
    return live_server(tmp_path, workers=2, env=env)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_graceful_stop_leaves_every_answer_on_record(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Nothing is written on the interval (a minute): only the stop writes, and writes all."""
    with (
        database(kind, tmp_path, request) as url,
        serve(tmp_path, url, ONCOLOGY_RECORDS_FLUSH_SECONDS="60") as server,
    ):
        with Load(server.port) as load:
            load.wait_for(400)
            assert stored(url, load.answered[:50]) == set()  # buffered, not written yet
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=30) == 0
        assert len(load.answered) >= 400
        assert stored(url, load.answered) == set(load.answered)
        assert "without writing" not in server.log.read_text()


def test_a_reload_leaves_every_answer_of_the_old_workers_on_record(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    with serve(tmp_path, url, ONCOLOGY_RECORDS_FLUSH_SECONDS="60") as server:
        old_workers = server.workers()
        with Load(server.port) as load:
            load.wait_for(300)
            before = len(load.answered)
            os.kill(server.gunicorn_pid, signal.SIGHUP)
            deadline = time.monotonic() + 30
            while set(old_workers) & set(server.workers()):
                assert time.monotonic() < deadline, "the old workers did not stop"
                time.sleep(0.05)
            load.wait_for(before + 100)
            answered_by_old = load.answered[:before]
        assert stored(url, answered_by_old) == set(answered_by_old)


def test_a_killed_worker_loses_only_its_buffer_and_the_loss_is_counted(tmp_path: Path) -> None:
    """The interval is a minute, so the killed worker loses all it answered: that many are
    missing from the record, and exactly that many are counted as lost."""
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    with serve(tmp_path, url, ONCOLOGY_RECORDS_FLUSH_SECONDS="60") as server:
        with Load(server.port) as load:
            load.wait_for(300)
            # The worker holding the most unwritten answers (on a busy machine one worker can
            # take every connection, and the other has nothing to lose).
            victim = max(server.workers(), key=unwritten)
            assert unwritten(victim) > 0
            os.kill(victim, signal.SIGKILL)
            load.wait_for(len(load.answered) + 200)
        # Counted by the master once it has reaped the worker (its loop wakes within a second).
        wait_until(lambda: metric(server, "oncology_prediction_records_lost_total") > 0)
        lost = metric(server, "oncology_prediction_records_lost_total")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
    missing = set(load.answered) - stored(url, load.answered)
    # Counted once an answer is built, just before it is sent: an answer the kill cut off in
    # flight (never received: at most one batch of ten) is counted lost too.
    assert 0 < len(missing) <= lost <= len(missing) + 10
    logged = re.search(
        rf"worker {victim} stopped without writing (\d+) answered tumors", server.log.read_text()
    )
    assert logged and int(logged.group(1)) == lost


def unwritten(worker: int) -> int:
    """What a live worker has answered and not yet written, from its metrics files (the folder
    is in its environment), as the master counts it when the worker dies."""
    environment = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    prefix = b"PROMETHEUS_MULTIPROC_DIR="
    folder = next(item[len(prefix) :] for item in environment if item.startswith(prefix))
    return unrecorded(worker, folder.decode())


def settled(server: LiveServer) -> bool:
    """Every answer queued for the record is written or counted as dropped. (The pending gauge
    is set as the writer loops, so it can read 0 just before the last answers arrive.)"""
    queued = metric(server, "oncology_prediction_records_queued_total")
    done = metric(server, "oncology_prediction_records_written_total") + metric(
        server, "oncology_prediction_records_dropped_total"
    )
    return queued > 0 and queued == done


def wait_until(condition: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_predictions_go_on_while_the_database_is_down_and_the_buffer_drains(
    tmp_path: Path, postgres: Postgres
) -> None:
    with serve(tmp_path, postgres.url, ONCOLOGY_RECORDS_FLUSH_SECONDS="0.2") as server:
        with Load(server.port) as load:
            load.wait_for(100)
            postgres.stop("fast")
            try:
                down_at = len(load.answered)
                load.wait_for(down_at + 300)
                wait_until(lambda: metric(server, "oncology_prediction_records_pending") > 0)
                assert metric(server, "oncology_prediction_records_write_errors_total") > 0
                assert server.status("/readyz") == 200  # the default keeps serving
            finally:
                postgres.start()
            load.wait_for(len(load.answered) + 100)
        wait_until(lambda: settled(server))
        assert set(load.statuses) == {200}
        assert stored(postgres.url, load.answered) == set(load.answered)
        assert metric(server, "oncology_prediction_records_dropped_total") == 0


def test_a_full_buffer_drops_the_oldest_and_counts_exactly_what_is_missing(
    tmp_path: Path, postgres: Postgres
) -> None:
    settings = {"ONCOLOGY_RECORDS_FLUSH_SECONDS": "0.2", "ONCOLOGY_RECORDS_BUFFER": "50"}
    with serve(tmp_path, postgres.url, **settings) as server:
        with Load(server.port) as load:
            load.wait_for(50)
            postgres.stop("fast")
            try:
                load.wait_for(len(load.answered) + 400)
                wait_until(lambda: metric(server, "oncology_prediction_records_dropped_total") > 0)
            finally:
                postgres.start()
        wait_until(lambda: settled(server))
        dropped = metric(server, "oncology_prediction_records_dropped_total")
        missing = set(load.answered) - stored(postgres.url, load.answered)
        assert dropped == len(missing) > 0


def test_required_records_fail_closed_and_recover(tmp_path: Path, postgres: Postgres) -> None:
    settings = {
        "ONCOLOGY_RECORDS": "required",
        "ONCOLOGY_RECORDS_FLUSH_SECONDS": "0.2",
        "ONCOLOGY_RECORDS_BUFFER": "200",
    }
    with serve(tmp_path, postgres.url, **settings) as server:
        with Load(server.port, threads=3) as load:
            load.wait_for(100)
            postgres.stop("fast")
            try:
                wait_until(lambda: load.statuses.get(503, 0) > 0)
                wait_until(lambda: server.status("/readyz") == 503)
            finally:
                postgres.start()
            wait_until(lambda: server.status("/readyz") == 200)
            answered = len(load.answered)
            load.wait_for(answered + 50)
        wait_until(lambda: settled(server))
        assert set(load.statuses) == {200, 503}
        assert stored(postgres.url, load.answered) == set(load.answered)  # nothing answered lost


def test_the_service_migrates_an_empty_postgres_at_start_and_answers_from_any_worker(
    tmp_path: Path,
) -> None:
    with running_postgres() as fresh, serve(tmp_path, fresh.url) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request(
            "POST",
            "/v1/predictions",
            json.dumps(SEED_JSON),
            {"Content-Type": "application/json", "Case-Reference": "PG-1"},
        )
        prediction_id = json.loads(connection.getresponse().read())["prediction_id"]
        body = json.dumps({"outcome": "benign", "source": "histology"})
        for attempt in range(4):  # whichever worker answers, the outcome is joined
            connection.request(
                "PUT",
                f"/v1/predictions/{prediction_id}/outcome",
                body,
                {"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            response.read()
            assert response.status == (201 if attempt == 0 else 200)
        connection.request("GET", f"/v1/predictions/{prediction_id}")
        record = json.loads(connection.getresponse().read())
        assert record["case_reference"] == "PG-1" and record["outcome"]["outcome"] == "benign"
        assert ids.parse(prediction_id)


def test_postgres_migrates_from_empty_and_from_the_previous_revision_keeping_the_record() -> None:
    from webservice.records.quality import Window, groups
    from webservice.records.schema import answers, case_references
    from webservice.records.store import (
        AnswerRecord,
        current_revision,
        downgrade,
        head_revision,
        now,
        pack,
        upgrade,
    )

    with running_postgres() as fresh:
        engine = engine_for(fresh.url)
        try:
            assert current_revision(engine) is None
            upgrade(engine, "0002")
            block = ids.new_block()
            answer = AnswerRecord(
                ids.first_id(block),
                now(),
                "1.0.0",
                "stable",
                "test",
                "req",
                0.5,
                [[1.0] * 9, [float("nan")] * 9],
                [0.1, 0.2],
                [False, False],
                ["PG-9", None],
            )
            with engine.begin() as connection:  # as the previous revision's service wrote it
                connection.execute(answers.insert(), pack(answer))
                connection.execute(
                    case_references.insert(),
                    {"answer_id": 1, "position": 0, "case_reference": "PG-9"},
                )
            upgrade(engine)
            assert groups(RecordStore(engine), Window())[0].answered.tolist() == [2, 0]
            assert current_revision(engine) == head_revision()
            second = ids.ids(block, 2)[1]
            record = RecordStore(engine).record(second)
            assert record is not None and set(record["tumor"].values()) == {None}
            first = RecordStore(engine).record(ids.first_id(block))
            assert first is not None and first["case_reference"] == "PG-9"
            downgrade(engine, "base")
            assert current_revision(engine) is None
        finally:
            engine.dispose()


def test_answers_given_before_the_schema_exists_are_kept_until_it_does(tmp_path: Path) -> None:
    """Pods that start before `make migrate-job` (no migration at start, as in Kubernetes): the
    missing tables are retried like an unreachable database, never counted as refused."""
    with (
        running_postgres() as fresh,
        serve(
            tmp_path, fresh.url, ONCOLOGY_DB_MIGRATE="false", ONCOLOGY_RECORDS_FLUSH_SECONDS="0.2"
        ) as server,
    ):
        with Load(server.port, threads=2) as load:
            load.wait_for(100)
            wait_until(lambda: metric(server, "oncology_prediction_records_write_errors_total") > 0)
        engine = engine_for(fresh.url)
        try:
            from webservice.records.store import upgrade

            upgrade(engine)
        finally:
            engine.dispose()
        wait_until(lambda: settled(server))
        assert stored(fresh.url, load.answered) == set(load.answered)
        assert metric(server, "oncology_prediction_records_dropped_total") == 0
