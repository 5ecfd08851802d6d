"""The tokens file: who may call and what they may do, as `NAME:SHA256HEX[:PERMISSIONS]` lines,
re-read when it changes.

One line per token: the caller's name, a colon, and the SHA-256 of the token as 64 hex digits
(never the token itself), optionally a colon and the token's permissions, comma-separated, of
`PERMISSIONS` (without them, `predict`: what every API caller could do before permissions
existed); `#` starts a comment; blank lines are skipped. A caller may have several
lines (an old and a new token while rotating). Kubernetes mounts a Secret as a symlink that it
swaps on update, so the path is stat'ed (following symlinks) at most once per second per worker
and re-read when its inode, size or mtime changed. A file that breaks a rule keeps the previous
tokens in force and is logged with the line and the rule (never a line's content).

`python -m webservice.tokens new CALLER` makes a token; `python -m webservice.tokens check FILE`
checks a file before it goes into the Secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import time
from typing import NamedTuple

CHECK_SECONDS = 1.0
# Names become metric label values and log fields: a short, safe set of characters.
_VALID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}").fullmatch
_VALID_HEX = re.compile(r"[0-9a-fA-F]{64}").fullmatch
NAME_RULE = "a caller name is 1 to 64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)"
# What the service reports for requests that needed no token, and for refused ones.
RESERVED_NAMES = frozenset(("anonymous", "unauthenticated"))
PERMISSIONS = ("predict", "outcomes", "records")
"""predict: the prediction and model endpoints; outcomes: sending confirmed outcomes; records:
reading the prediction records."""
DEFAULT_PERMISSIONS = frozenset(("predict",))
FORMAT = "NAME:SHA256HEX[:PERMISSION,...]"

log = logging.getLogger(__name__)


class Caller(NamedTuple):
    """Who presents a token, and what that token may do."""

    name: str
    permissions: frozenset[str]


Entries = tuple[tuple[bytes, Caller], ...]  # (SHA-256 digest, caller)
_Signature = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


class TokensFileError(ValueError):
    """The tokens file cannot be used: `problems` name the file, each line and its rule."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


def digest(token: str) -> bytes:
    """The SHA-256 of a token, as stored (in hex) in the tokens file."""
    # WSGI header values are latin-1 strings (PEP 3333); anything else simply never matches.
    return hashlib.sha256(token.encode("latin-1", "replace")).digest()


def parse(text: str, source: str) -> Entries:
    """The entries of a tokens file's text, or TokensFileError naming every broken line."""
    entries: list[tuple[bytes, Caller]] = []
    problems: list[str] = []
    seen: dict[bytes, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        problem = _line_problem(line, seen)
        if problem:
            problems.append(f"{source} line {number}: {problem}")
            continue
        name, hexdigest, permissions = _fields(line)
        value = bytes.fromhex(hexdigest)
        seen[value] = number
        entries.append((value, Caller(name, _permissions(permissions))))
    if problems:
        raise TokensFileError(problems)
    return tuple(entries)


def _fields(line: str) -> tuple[str, str, str | None]:
    """A line's name, digest and permissions (None when it names none)."""
    name, _, rest = line.partition(":")
    hexdigest, colon, permissions = rest.partition(":")
    return name.strip(), hexdigest.strip(), permissions.strip() if colon else None


def _permissions(field: str | None) -> frozenset[str]:
    if field is None:
        return DEFAULT_PERMISSIONS
    return frozenset(part.strip() for part in field.split(","))


def _line_problem(line: str, seen: dict[bytes, int]) -> str | None:
    """The rule a (stripped, comment-free) line breaks, or None."""
    if ":" not in line:
        return f"expected {FORMAT}"
    name, hexdigest, permissions = _fields(line)
    if not _VALID_NAME(name):
        return NAME_RULE
    if name in RESERVED_NAMES:
        return f"the caller name {name!r} is reserved"
    if not _VALID_HEX(hexdigest):
        return (
            "after the colon must come the SHA-256 of the token as 64 hex digits "
            "(never the token itself)"
        )
    if permissions is not None:
        unknown = [p.strip() for p in permissions.split(",") if p.strip() not in PERMISSIONS]
        if unknown or not permissions:
            return f"permissions are some of {', '.join(PERMISSIONS)}, comma-separated"
    value = bytes.fromhex(hexdigest)
    if value in seen:
        return f"the same token as line {seen[value]}"
    return None


def read_file(path: str) -> Entries:
    """The entries of the tokens file at `path`; TokensFileError names the file and why it cannot
    be used (no such file, permission denied, not UTF-8, each bad line and its rule)."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as error:
        raise TokensFileError(
            f"{path}: cannot read the tokens file: {error.strerror or type(error).__name__}"
        ) from None
    except UnicodeDecodeError:
        raise TokensFileError(
            f"{path}: cannot read the tokens file: it is not UTF-8 text"
        ) from None
    return parse(text, path)


def describe(entries: Entries) -> str:
    """`3 tokens for 2 callers: a, b`, in words that agree with their numbers."""
    names = sorted({caller.name for _, caller in entries})
    tokens = "token" if len(entries) == 1 else "tokens"
    callers = "caller" if len(names) == 1 else "callers"
    return f"{len(entries)} {tokens} for {len(names)} {callers}: {', '.join(names)}"


class TokenFile:
    """The callers of one tokens file, kept current; `caller(token)` answers who presents it."""

    def __init__(self, path: str, *, check_seconds: float = CHECK_SECONDS) -> None:
        """Read `path` now; a missing or broken file raises TokensFileError (fail closed)."""
        self.path = path
        self.check_seconds = check_seconds
        self._entries = read_file(path)
        self._signature: _Signature | None = self._stat()
        self._next_check = time.monotonic() + check_seconds
        _log_loaded(path, self._entries)

    def caller(self, token: str) -> str | None:
        """The name of the caller whose token this is, or None (see `identify`)."""
        found = self.identify(token)
        return None if found is None else found.name

    def identify(self, token: str) -> Caller | None:
        """The caller whose token this is, with the token's permissions, or None.

        Constant time in the token: every stored digest is compared (hmac.compare_digest, no early
        exit) with the SHA-256 of the presented token, so neither how close a wrong token is nor
        which entry matches shows in the timing. About 0.1 us per stored token.
        """
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.check_seconds
            self.refresh()
        presented = digest(token)
        found = None
        for stored, caller in self._entries:
            if hmac.compare_digest(stored, presented):
                found = caller
        return found

    def refresh(self) -> None:
        """Re-read the file if it changed; when it cannot be used, keep the tokens in force."""
        signature = self._stat()
        if signature == self._signature:
            return
        self._signature = signature  # a broken version is reported once, not every second
        try:
            entries = read_file(self.path)
        except TokensFileError as error:
            log.error("%s; keeping the previous %d tokens", error, len(self._entries))
            return
        self._entries = entries
        _log_loaded(self.path, entries)

    def _stat(self) -> _Signature | None:
        try:
            stat = os.stat(self.path)  # follows the symlink Kubernetes swaps
        except OSError:
            return None
        return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _log_loaded(path: str, entries: Entries) -> None:
    if not entries:
        log.warning("%s holds no tokens: every request that needs one is refused", path)
    else:
        log.info("%s: %s", path, describe(entries))


def new_token(name: str, permissions: tuple[str, ...] = ()) -> tuple[str, str]:
    """A new random token for `name` and its line for the tokens file (with `permissions`,
    when given; else the line names none and grants `predict`)."""
    if not _VALID_NAME(name) or name in RESERVED_NAMES:
        raise ValueError(f"{name!r}: {NAME_RULE}, and not {' or '.join(sorted(RESERVED_NAMES))}")
    unknown = sorted(set(permissions) - set(PERMISSIONS))
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: permissions are some of {', '.join(PERMISSIONS)}")
    token = secrets.token_urlsafe(32)
    line = f"{name}:{digest(token).hex()}"
    if permissions:
        line += ":" + ",".join(p for p in PERMISSIONS if p in permissions)
    return token, line


USAGE = """usage: python -m webservice.tokens new CALLER [PERMISSION,...]
                  make a token (printed once) and its line; permissions: predict, outcomes,
                  records (default: predict)
       python -m webservice.tokens check FILE    check a tokens file; exit 1 naming line and rule"""


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if not ((command == "check" and len(argv) == 2) or (command == "new" and len(argv) in (2, 3))):
        print(USAGE, file=sys.stderr)
        return 2
    argument = argv[1]
    permissions = tuple(argv[2].split(",")) if len(argv) == 3 else ()
    if command == "check":
        try:
            entries = read_file(argument)
        except TokensFileError as error:
            print("\n".join(error.problems), file=sys.stderr)
            return 1
        print(f"{argument}: {describe(entries)}")
        return 0
    try:
        token, line = new_token(argument, permissions)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    print(
        f"Token for {argument} (shown once: hand it to the caller, keep no other copy):\n\n"
        f"    {token}\n\n"
        "Its line for the tokens file: paste it into the file, one line per token (create the\n"
        "file if it is new, e.g. tokens.txt, then `ONCOLOGY_TOKENS_FILE=tokens.txt make run`;\n"
        "metrics-tokens.txt and ONCOLOGY_METRICS_TOKENS_FILE for a /metrics reader such as\n"
        "Prometheus; in Kubernetes, the Secret's `tokens` or `metrics-tokens` key). The caller\n"
        "sends `Authorization: Bearer <token>`.\n\n"
        f"    {line}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
