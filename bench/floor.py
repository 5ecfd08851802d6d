"""The floor: the smallest WSGI app, served with the service's own gunicorn settings.

A POST's body is read in full (as the service reads a prediction's) before the small JSON answer;
a GET is answered at once. The bench posts the single prediction's own body, so the floor pays
for everything a prediction pays for at the HTTP level and nothing else.
"""

from collections.abc import Callable, Iterable
from typing import Any

BODY = b'{"status":"ok"}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = environ.get("CONTENT_LENGTH")
    if length:
        environ["wsgi.input"].read(int(length))
    start_response("200 OK", list(HEADERS))
    return [BODY]
