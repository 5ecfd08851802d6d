"""The front: nginx in front of gunicorn, so that no worker ever waits on a client.

A sync worker reads its request to the end before it serves another, so a client that sends
slowly (a phone on a bad network, a stuck library, a slowloris) holds a whole worker, and a few
of them stop every prediction. gunicorn's deployment guide asks for a buffering proxy in front of
sync workers for this reason. nginx holds thousands of slow connections for a few kilobytes
each; it passes a request to gunicorn (over a Unix socket only it can reach) once it has all of
it, and takes the answer as fast as gunicorn writes it, so a worker only ever computes.

What the front enforces (`webservice.config`):
- the request line and headers within `HEADER_TIMEOUT` s, and no pause longer than
  `BODY_TIMEOUT` s while the body comes: past either, the connection is closed (nginx logs it
  as 408 and sends nothing: the client is still sending);
- the body limit, from `Content-Length` before the body is read (or as a chunked body passes it):
  413 problem+json, the same answer the service gives;
- at most `MAX_CONNECTIONS` open connections, and at most `MAX_REQUESTS_IN_PROGRESS` requests
  under way at once: 503 problem+json with `Retry-After` beyond, never an exhausted process.

Every answer the front gives itself (these refusals, a client that hung up first, gunicorn not
listening yet) is one JSON line on stdout (`"event":"front"`), counted by `webservice.serve` in
`oncology_front_answers_total{reason}`. This module only writes nginx's configuration.
"""

from __future__ import annotations

import grp
import os
from dataclasses import dataclass
from pathlib import Path

from webservice.jsonbody import body_too_large
from webservice.problems import PROBLEM_JSON, Problem

UPSTREAM_SOCKET = "gunicorn.sock"
ERROR_PREFIX = "/.front-answers/"  # internal locations: never reachable from outside
# Why the front answered a request itself, by "<status>:<upstream status>" (first match wins).
REASONS = (
    ("^408:", "timeout"),
    ("^413:", "body-too-large"),
    ("^(400|405|414|494|505):", "bad-request"),
    ("^499:", "client-closed"),
    ("^503:$", "busy"),
    ("^50[234]:", "upstream-unavailable"),
    ("^500:", "front-error"),
)
# Written into the body where the declared length goes; nginx puts $content_length there.
_DECLARED = 987654321987654321


@dataclass(frozen=True)
class FrontSettings:
    """Where the front listens and what it allows (see the module docstring)."""

    host: str
    port: int
    run_dir: Path
    max_body_bytes: int
    header_timeout: int
    body_timeout: int
    max_connections: int
    max_requests_in_progress: int
    upstream_timeout: int
    shutdown_timeout: int
    max_open_files: int  # the process's hard limit: nginx may not raise its own past it


def nginx_config(settings: FrontSettings) -> str:
    """nginx.conf for `settings`: every path under `run_dir` (the root filesystem may be
    read-only), answers the front gives itself in the service's own shapes."""
    run = settings.run_dir
    # Each connection passed on takes two descriptors; a few more for logs and listeners.
    open_files = min(2 * settings.max_connections + 64, settings.max_open_files)
    connections = min(settings.max_connections, (open_files - 64) // 2)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    limit = settings.max_body_bytes
    declared = body_too_large(limit, _DECLARED)
    undeclared = body_too_large(limit)
    busy = Problem(
        503,
        f"The service is working on as many requests as it takes at once "
        f"({settings.max_requests_in_progress}); retry shortly.",
        kind="busy",
    )
    unavailable = Problem(
        503, "The service is starting or stopping; retry shortly.", kind="unavailable"
    )
    bad_request = Problem(400, "The request is not valid HTTP/1.1.", kind="bad-request")
    not_allowed = Problem(405, "The method is not allowed.", kind="method-not-allowed")
    too_long = Problem(
        414, "The request line (the path and query) is too long.", kind="uri-too-long"
    )
    failed = Problem(500, "The server failed to answer this request.", kind="internal-error")
    # name: (status, the body as an nginx value for /v1..., and for /v2, retryable)
    answers: dict[str, tuple[int, str, str, bool]] = {
        "too_large": (413, "$too_large_problem", "$too_large_v2", False),
        **{
            name: (
                problem.status,
                _quoted(problem.body()),
                _quoted(problem.answer("/v2")[0]),
                retry,
            )
            for name, problem, retry in (
                ("busy", busy, True),
                ("unavailable", unavailable, True),
                ("bad_request", bad_request, False),
                ("not_allowed", not_allowed, False),
                ("too_long", too_long, False),
                ("failed", failed, False),
            )
        },
    }
    named = "\n".join(
        _named_location(name, status, body, retry=retry)
        + "\n"
        + _named_location(f"{name}_v2", status, v2_body, retry=retry, v2=True)
        for name, (status, body, v2_body, retry) in answers.items()
    )
    return f"""# Written by webservice.front at each start; edits here are lost.
worker_processes 1;
# On SIGQUIT nginx finishes what it holds, for at most this long (a slow client cannot hold a stop).
worker_shutdown_timeout {settings.shutdown_timeout}s;
worker_rlimit_nofile {open_files};
pid {run}/nginx.pid;
error_log stderr crit;  # every request's outcome is a JSON line instead
{_user_line()}
events {{
    worker_connections {connections};
    multi_accept on;
}}

http {{
    server_tokens off;
    default_type application/octet-stream;
    client_body_temp_path {run}/client-body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;

    client_header_timeout {settings.header_timeout}s;
    client_body_timeout {settings.body_timeout}s;
    send_timeout 30s;
    keepalive_timeout 75s;
    client_max_body_size {limit};
    client_body_buffer_size 64k;
    proxy_request_buffering on;
    proxy_buffering on;
    proxy_buffer_size 16k;
    proxy_buffers 32 16k;
    proxy_read_timeout {settings.upstream_timeout}s;
    proxy_send_timeout {settings.upstream_timeout}s;

    limit_conn_zone $server_port zone=in_progress:1m;  # one key: all requests together
    limit_conn_status 503;
    limit_conn_log_level warn;

    # The client's request id when it is one the service accepts, else nginx's own.
    map $http_x_request_id $rid {{
        "~^[A-Za-z0-9._:@/+=-]{{1,128}}$" $http_x_request_id;
        default $request_id;
    }}
    # A declared length is named; a chunked body's (nginx counts it as it reads) is not.
    map "$http_transfer_encoding|$content_length" $too_large_problem {{
        "~^[|][0-9]+$" '{_declared(declared.body())}';
        default '{_text(undeclared.body())}';
    }}
    map "$http_transfer_encoding|$content_length" $too_large_v2 {{
        "~^[|][0-9]+$" '{_declared(declared.answer("/v2")[0])}';
        default '{_text(undeclared.answer("/v2")[0])}';
    }}
    # The path the client asked for (never the query string, which the logs leave out).
    map $request_uri $path {{
        "~^(?<before_query>[^?]*)" $before_query;
    }}
    # What a 405 the front gives itself (to TRACE, which nginx never passes on) says is allowed.
    map $path $allowed_methods {{
        "~^/v1/predictions(/batch)?$" "OPTIONS, POST";
        "~^/v2/models/[^/]+(/versions/[^/]+)?/infer$" "OPTIONS, POST";
        default "GET, HEAD, OPTIONS";
    }}
    # Answered here, without the service: no upstream, or an upstream that could not be reached.
    map $upstream_status $answered_here {{
        "" 1;
        "~^50[24]" 1;
        default 0;
    }}
    map "$status:$upstream_status" $reason {{
{_reason_map()}
        default other;
    }}
    log_format front escape=json '{{"ts":$msec,"level":"info","event":"front",'
        '"status":$status,"reason":"$reason","method":"$request_method","path":"$path",'
        '"duration_s":$request_time,"request_id":"$rid"}}';
    access_log /dev/stdout front if=$answered_here;

    upstream gunicorn {{
        server unix:{run}/{UPSTREAM_SOCKET};
    }}

    server {{
        listen {host}:{settings.port} backlog=4096;
        limit_conn in_progress {settings.max_requests_in_progress};
        proxy_set_header Host $http_host;
        proxy_set_header X-Request-ID $rid;
        {_error_pages(v2=False)}

        location / {{
            proxy_pass http://gunicorn;
        }}
        location = /v2 {{
            proxy_pass http://gunicorn;
            {_error_pages(v2=True)}
        }}
        location /v2/ {{
            proxy_pass http://gunicorn;
            {_error_pages(v2=True)}
        }}
{named}
    }}
}}
"""


def _error_pages(*, v2: bool) -> str:
    """Where each status the front gives itself is answered: internal URIs, not named locations,
    which nginx cannot reach from a request whose request line it could not read."""
    suffix = "_v2" if v2 else ""
    # `=N`: the status line says N too (nginx keeps the first status otherwise).
    return " ".join(
        f"error_page {codes} {ERROR_PREFIX}{name}{suffix};"
        for codes, name in (
            ("413", "too_large"),
            ("503", "busy"),
            ("502 504 =503", "unavailable"),
            ("400 494 505 =400", "bad_request"),
            ("414", "too_long"),
            ("405", "not_allowed"),
            ("500", "failed"),
        )
    )


def _named_location(name: str, status: int, body: str, *, retry: bool, v2: bool = False) -> str:
    """A location answering `status` with `body` (a problem, or under /v2 the protocol's
    `{"error": ...}`), the request id, `Retry-After` when the client may retry, `Allow` for 405."""
    content_type = "application/json" if v2 else PROBLEM_JSON
    extra = " add_header Retry-After 1 always;" if retry else ""
    if status == 405:
        extra += " add_header Allow $allowed_methods always;"
    return (
        f"        location = {ERROR_PREFIX}{name} {{ internal; default_type {content_type}; "
        f"add_header X-Request-ID $rid always;{extra} return {status} {body}; }}"
    )


def _declared(raw: bytes) -> str:
    """A 413 body naming the declared length: nginx's $content_length where it goes."""
    return _text(raw).replace(str(_DECLARED), "$content_length")


def _quoted(raw: bytes) -> str:
    return f"'{_text(raw)}'"


def _text(raw: bytes) -> str:
    """A JSON body as the inside of a single-quoted nginx string: no quote, backslash or `$`."""
    text = raw.decode()
    if any(char in text for char in "'\\$"):
        raise ValueError(f"cannot write this body into nginx.conf: {text}")
    return text


def _reason_map() -> str:
    return "\n".join(f'        "~{pattern}" {reason};' for pattern, reason in REASONS)


def _user_line() -> str:
    """Run as root (a developer's `make run`), nginx's workers would take the user `nobody`
    and a group named `nobody`, which Debian lacks: name its `nogroup`. Unprivileged (the image,
    the pod), nginx stays the user it is and must not be told otherwise."""
    if os.geteuid() != 0:
        return ""
    try:
        grp.getgrnam("nogroup")
        group = "nogroup"
    except KeyError:
        group = "nobody"
    return f"user nobody {group};"
