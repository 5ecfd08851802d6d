"""What the WSGI middleware around the Flask app share: the app type, and `AfterClose`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class AfterClose:
    """The app's answer, then `callback` once the server has sent it and closes it."""

    __slots__ = ("callback", "result")

    def __init__(self, result: Iterable[bytes], callback: Callable[[], None]) -> None:
        self.result = result
        self.callback = callback

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.result)

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            self.callback()
