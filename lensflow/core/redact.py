"""Keep secrets out of what lensflow shows: credentials in URIs and text, and (for public responses) internal paths.

`redact_uri` masks one URI, `redact` every secret it can find in free text (URI passwords, secret-named
query parameters and `key=value` pairs, the values of secret-named environment variables), and
`public_message` also replaces filesystem paths, for messages that leave the machine (HTTP responses).
`install_log_redaction` applies `redact` to every log record of the process.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from functools import lru_cache

MASK = "***"
SECRET_NAME = re.compile(  # names of variables, parameters and keys whose values are secrets
    r"secret|passw(?:or)?d|credential|signature|private[_\-.]?key|api[_\-.]?key|access[_\-.]?key$|auth[_\-.]?string|"
    r"[_\-.]pwd$|^sig$|^key$|(?:^|[_\-.])token(?:$|[_\-.])|(?:^|[_\-.])auth(?:orization)?$",
    re.I,
)
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/?#\s'\"<>`]+)@")
_QUERY_PARAM = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&#\s'\"<>`?;]+)=(?P<value>[^&#\s'\"<>`;]*)")
_KEY_VALUE = re.compile(
    r"(?P<key>\b[\w.\-]*(?:secret|passw(?:or)?d|pwd|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|"
    r"credential)[\w.\-]*)(?P<sep>['\"]?\s*[=:]\s*)(?P<quote>['\"]?)(?P<value>[^\s'\"&,;)}\]]+)",
    re.I,
)
_LOCAL_URI = re.compile(r"\b(?:file|sqlite):/*[^\s'\"<>`;,()]*", re.I)
_ABS_PATH = re.compile(r"(?<![\w.\-~/:@])/[^\s'\"<>`|,;:()\[\]{}]+")


def _userinfo(m: re.Match) -> str:
    user, colon, _ = m["userinfo"].partition(":")
    return f"{m['scheme']}{user}:{MASK}@" if colon else f"{m['scheme']}{MASK}@"  # a lone user part is often a token


def _param(m: re.Match) -> str:
    return f"{m['sep']}{m['name']}={MASK}" if SECRET_NAME.search(m["name"]) and m["value"] else m[0]


def _pair(m: re.Match) -> str:
    secret = SECRET_NAME.search(m["key"]) and m["value"] != MASK
    return f"{m['key']}{m['sep']}{m['quote']}{MASK}" if secret else m[0]


def redact_uri(uri: str) -> str:
    """`uri` with its password (`user:PASSWORD@`, or a lone token `TOKEN@`) and secret-named query parameters
    (`?aws_secret_access_key=...`, `&token=...`) masked; everything else unchanged."""
    return _QUERY_PARAM.sub(_param, _USERINFO.sub(_userinfo, uri)) if "://" in uri else uri


def link(uri: str) -> str:
    """`uri` fit to show as a link: no `user:password@` part at all, secret-named query parameters masked."""
    return redact_uri(_USERINFO.sub(lambda m: m["scheme"], uri))


def has_credentials(uri: str) -> bool:
    """Whether `uri` carries a password, token or secret query parameter."""
    return redact_uri(uri) != uri


@lru_cache(maxsize=4096)
def _secret_name(key: str) -> bool:
    return bool(SECRET_NAME.search(key))


def _secret_env_values() -> list[str]:
    """Values of secret-named environment variables, read now (the names' regex checks are cached: this runs on
    every log record)."""
    values = {v for k, v in os.environ.items() if len(v) >= 6 and _secret_name(k)}
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every credential found masked: URI userinfo and secret query parameters, `password=...`-like
    pairs, and the values of secret-named environment variables (AWS_SECRET_ACCESS_KEY, ...)."""
    if not text:
        return text
    text = _QUERY_PARAM.sub(_param, _USERINFO.sub(_userinfo, text))
    text = _KEY_VALUE.sub(_pair, text)
    for value in _secret_env_values():
        text = text.replace(value, MASK)
    return text


def public_message(text: str) -> str:
    """`redact(text)` with local store URIs (file:, sqlite:) and absolute filesystem paths replaced by `<path>`:
    for messages that leave the machine."""
    return _ABS_PATH.sub("<path>", _LOCAL_URI.sub("<path>", redact(text))) if text else text


def format_exception(exc: BaseException) -> str:
    """The traceback of `exc`, redacted (for server logs)."""
    return redact("".join(traceback.format_exception(exc)).rstrip())


def _redact_arg(arg):
    if arg is None or isinstance(arg, (int, float)):
        return arg
    shown = str(arg)
    clean = redact(shown)
    return arg if clean == shown else clean


def install_log_redaction() -> None:
    """Redact every log record this process creates from now on (message, arguments, traceback), whichever
    logger or handler it goes to. Idempotent."""
    current = logging.getLogRecordFactory()
    if getattr(current, "_lensflow_redacts", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = current(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = format_exception(record.exc_info[1])
        return record

    factory._lensflow_redacts = True
    logging.setLogRecordFactory(factory)
