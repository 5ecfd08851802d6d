"""Slow clients against a live service, as an unfriendly caller would send them, loopback only.

`slow_client_attack` measures ordinary single and batch predictions unloaded, then again while
300 connections drip their headers (one header line a second) and 100 drip their bodies (one
byte a second), for 30 s; every dripping connection the server closes is opened again, so the
counts hold for the whole time. Bounded: a fixed number of connections, for a fixed time, to
127.0.0.1. Used by `make reliability` (the service as `make run` serves it) and `make k8s-play`
(the played pod).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from harness.load import Recorder

HEADER_DRIPPERS = 300
BODY_DRIPPERS = 100
ATTACK_SECONDS = 30.0
BASELINE_SECONDS = 10.0
MAX_P99_RATIO = 5.0
DRIP_INTERVAL = 1.0


@dataclass
class Drippers:
    """Connections sending their requests a piece a second, reopened when the server closes."""

    port: int
    headers: int
    bodies: int
    closed: dict[str, int] = field(default_factory=lambda: {"headers": 0, "bodies": 0})
    opened: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        asyncio.run(self._all())

    def stop(self) -> None:
        self._stop.set()

    async def _all(self) -> None:
        await asyncio.gather(
            *(self._drip("headers") for _ in range(self.headers)),
            *(self._drip("bodies") for _ in range(self.bodies)),
        )

    async def _drip(self, kind: str) -> None:
        head = b"POST /v1/predictions HTTP/1.1\r\nHost: attack\r\n"
        if kind == "bodies":
            head += b"Content-Length: 100000\r\n\r\n"
        while not self._stop.is_set():
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(DRIP_INTERVAL)
                continue
            self.opened += 1
            try:
                writer.write(head)
                while not self._stop.is_set() and not writer.is_closing():
                    await asyncio.sleep(DRIP_INTERVAL)
                    writer.write(b"X-Slow: 1\r\n" if kind == "headers" else b" ")
                    await writer.drain()
            except OSError:
                pass
            finally:
                if not self._stop.is_set():
                    self.closed[kind] += 1  # by the server: open another
                writer.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measured(
    port: int, seconds: float, headers: dict[str, str], seed: bytes, batch: bytes, prefix: str
) -> dict[str, Any]:
    """Ordinary predictions (4 threads alternating single and batch) for `seconds`."""
    recorder = Recorder(
        port,
        [("/v1/predictions", seed), ("/v1/predictions/batch", batch)],
        threads=4,
        seconds=seconds,
        headers=headers,
        prefix=prefix,
    )
    outcomes = recorder.run()
    durations = [(o.ended - o.started) * 1000 for o in outcomes if o.status == 200]
    return {
        "requests": len(outcomes),
        "failed": sum(o.status != 200 for o in outcomes),
        "errors": sorted({o.error or str(o.status) for o in outcomes if o.status != 200}),
        "p50_ms": round(statistics.median(durations), 2) if durations else None,
        "p99_ms": round(percentile(durations, 0.99), 2) if durations else None,
    }


def slow_client_attack(
    port: int,
    seed: bytes,
    batch: bytes,
    *,
    headers: dict[str, str] | None = None,
    header_drippers: int = HEADER_DRIPPERS,
    body_drippers: int = BODY_DRIPPERS,
    seconds: float = ATTACK_SECONDS,
) -> dict[str, Any]:
    """The figures of one attack (see the module docstring); `passed` says whether it held: no
    ordinary request failed, their p99 within `MAX_P99_RATIO` times the unloaded p99."""
    headers = headers or {}
    unloaded = measured(port, BASELINE_SECONDS, headers, seed, batch, "slow-unloaded")
    drippers = Drippers(port, header_drippers, body_drippers)
    thread = threading.Thread(target=drippers.run, name="drippers", daemon=True)
    thread.start()
    time.sleep(3)  # every dripper connected and sending
    try:
        attacked = measured(port, seconds, headers, seed, batch, "slow-attacked")
    finally:
        drippers.stop()
        thread.join(15)
    ratio = (
        attacked["p99_ms"] / unloaded["p99_ms"]
        if attacked["p99_ms"] and unloaded["p99_ms"]
        else float("inf")
    )
    return {
        "drippers": {"headers": header_drippers, "bodies": body_drippers},
        "connections_opened": drippers.opened,
        "closed_by_server": drippers.closed,
        "unloaded": unloaded,
        "attacked": attacked,
        "p99_ratio": round(ratio, 2),
        "passed": attacked["failed"] == 0 and unloaded["failed"] == 0 and ratio <= MAX_P99_RATIO,
    }
