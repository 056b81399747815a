"""Keeping secrets out of what rayalign records: MLflow params and tags, config.yaml, summary.json,
mlflow_run.json and log lines.

Two kinds of secret are replaced by REDACTED: credentials inside URIs (the user:password or token
before a host's "@", and query parameters such as X-Amz-Signature or access_token), and the values
of environment variables whose name marks a secret (HF_TOKEN, AWS_SECRET_ACCESS_KEY,
MLFLOW_TRACKING_PASSWORD, RAY_AUTH_TOKEN, ...). Only what is recorded is redacted: connections
always use the real values.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***"

# scheme://userinfo@host. Greedy up to the last "@" before the path, so a password holding a raw "@"
# (invalid, yet typed) is removed whole instead of leaving its tail behind.
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#]+@")
# A query parameter (?name=value, &name=value, or ;name=value as in connection strings); its value
# goes when a word of its name is in _SECRET_PARAM_WORDS (X-Amz-Signature, X-Amz-Security-Token,
# the sig of an Azure SAS, api_key, AccountKey, ...).
_QUERY_PARAM = re.compile(r"([?&;])([^=&#\s?;]+)=([^&#\s;]*)")
_NAME_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_SECRET_PARAM_WORDS = {"token", "secret", "password", "passwd", "pwd", "signature", "sig", "credential",
                       "key", "apikey", "auth", "authorization"}
# Environment variables whose value is a secret: HF_TOKEN, AWS_SESSION_TOKEN, AWS_SECRET_ACCESS_KEY,
# OPENAI_API_KEY, MLFLOW_TRACKING_PASSWORD, PGPASSWORD, AZURE_CLIENT_SECRET, RAY_AUTH_TOKEN, ...
# Names ending so, not merely containing the word: TOKENIZERS_PARALLELISM and RAY_AUTH_MODE are settings.
_SECRET_ENV_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|_KEY|CONNECTION_STRING)$", re.IGNORECASE)
# Shorter values would match inside ordinary words and paths and garble everything recorded.
MIN_SECRET_LENGTH = 8


def redact_uri(text: str) -> str:
    """`text` with the credentials of every URI in it replaced by REDACTED: the userinfo before the
    host ("https://user:pass@host/x" -> "https://***@host/x") and secret query parameters
    ("?X-Amz-Signature=abc&x=1" -> "?X-Amz-Signature=***&x=1")."""
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)

    def query(match: re.Match) -> str:
        words = {w.lower() for w in _NAME_WORDS.findall(match.group(2))}
        return f"{match.group(1)}{match.group(2)}={REDACTED}" if words & _SECRET_PARAM_WORDS else match.group(0)

    return _QUERY_PARAM.sub(query, text)


def secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values (of MIN_SECRET_LENGTH characters or more) of the environment variables whose name
    marks a secret, longest first so that a secret holding another is removed whole."""
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if _SECRET_ENV_NAME.search(k) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact_secrets(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """`value` with every string in it (through dicts, lists and tuples, as in a JSON or YAML dump)
    stripped of URI credentials (redact_uri) and of the values of secret environment variables
    (secret_env_values; `environ` defaults to os.environ). Other values come back unchanged."""
    secrets = secret_env_values(environ)

    def clean(item: Any) -> Any:
        if isinstance(item, str):
            for secret in secrets:
                item = item.replace(secret, REDACTED)
            return redact_uri(item)
        if isinstance(item, dict):
            return {k: clean(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return type(item)(clean(v) for v in item)
        return item

    return clean(value)


def install_log_redaction() -> None:
    """Redact every log record this process makes from now on (rayalign's, MLflow's, Ray's), before
    any handler sees it. Idempotent. Tracebacks attached to records are not rewritten."""
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "redacts", False):
        return

    def redacting(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: leave it to logging's own error report
            return record
        clean = redact_secrets(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    redacting.redacts = True
    logging.setLogRecordFactory(redacting)
