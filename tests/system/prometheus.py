"""Debian's Prometheus on a free loopback port, scraping a live server with the project's rules
made short (windows and `for:` durations substituted), stopped by PID; and its HTTP API."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.live_server import ROOT
from ops.loopback import free_port, stop
from tests.helpers import require_debian_package

RULES = ROOT / "monitoring" / "rules.yaml"
JOB = "oncology-webservice"  # the job name the rules expect (the PodMonitor's jobLabel: app)
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"

_RANGE = re.compile(r"\[\d+[smhdwy]\]")


def ensure_prometheus() -> None:
    require_debian_package(PROMETHEUS, "prometheus")


def short_rules(source: str, *, window: str, hold: str) -> str:
    """The rule file `source` with every range window replaced by `window` and every alert's
    `for:` by `hold`: the same rules, fast enough for a test."""
    rules = yaml.safe_load(source)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["expr"] = _RANGE.sub(f"[{window}]", rule["expr"])
            if "for" in rule:
                rule["for"] = hold
    return str(yaml.safe_dump(rules, sort_keys=False))


@dataclass
class Prometheus:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> Any:
        """The `data` of a successful API answer (a failed query raises, naming the error)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            answer = json.loads(error.read())
        if answer.get("status") != "success":
            raise AssertionError(f"{path} {params}: {answer.get('error')}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result: [{'metric': {...}, 'value': [time, 'text']}, ...]."""
        data = self.api("query", query=expr)
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        assert isinstance(result, list)
        return result

    def values(self, expr: str, label: str) -> dict[str, float]:
        """An instant query's values by one label."""
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(expr)}

    def alerts(self) -> list[dict[str, Any]]:
        """Active (pending or firing) alerts."""
        alerts = self.api("alerts")["alerts"]
        assert isinstance(alerts, list)
        return alerts

    def wait_ready(self, timeout: float = 30) -> None:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready in {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self, timeout: float = 20) -> None:
        stop(self.process, timeout=timeout)


@contextmanager
def prometheus(
    workdir: Path, *, target: str | list[str], rules: str, scrape_interval: str = "1s"
) -> Iterator[Prometheus]:
    """Prometheus scraping `target` (host:port, or several: pods of one job) as the job the
    rules expect, evaluating `rules` (rule-file text) every scrape interval."""
    ensure_prometheus()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rules.yaml").write_text(rules)
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(workdir / "rules.yaml")],
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [{"targets": [target] if isinstance(target, str) else target}],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(process, port, log)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
