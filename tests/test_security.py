"""The security promises (README "Security"): secrets stay out of what rayalign records, checkpoints
are read as data and run no code of their own unless asked, a local Ray listens on 127.0.0.1 with
token authentication and rayalign's Jobs client authenticates, a job gets only the variables named."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rayalign.redaction import install_log_redaction, redact_secrets, redact_uri, secret_env_values

REPO = Path(__file__).resolve().parent.parent


# --- redaction: pure functions against exact strings ---------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("https://user:pass@host:5000/path", "https://***@host:5000/path"),
    ("http://token@host", "http://***@host"),
    ("postgresql://u:p@ss@db/x", "postgresql://***@db/x"),  # a raw "@" in the password goes too
    ("failed: GET https://u:p@h/api/2.0/runs (timeout)", "failed: GET https://***@h/api/2.0/runs (timeout)"),
    ("s3://b/k?X-Amz-Signature=abc&x=1&X-Amz-Security-Token=zz#f",
     "s3://b/k?X-Amz-Signature=***&x=1&X-Amz-Security-Token=***#f"),
    ("https://a.blob.core.windows.net/c?sv=2022&sig=c2ln", "https://a.blob.core.windows.net/c?sv=2022&sig=***"),
    ("Protocol=https;AccountName=acc;AccountKey=a2V5;Suffix=core",
     "Protocol=https;AccountName=acc;AccountKey=***;Suffix=core"),
    ("?author=me&design=x&api_key=k1", "?author=me&design=x&api_key=***"),
    # Nothing to redact: left exactly as it was.
    ("sqlite:////tmp/runs/mlflow.db", "sqlite:////tmp/runs/mlflow.db"),
    ("http://host:5000 and bob@example.com", "http://host:5000 and bob@example.com"),
    ("ray://head:10001", "ray://head:10001"),
])
def test_redact_uri_removes_credentials_and_nothing_else(text, expected):
    assert redact_uri(text) == expected


ENV = {"HF_TOKEN": "hf_abcdefghijklmnop", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
       "MLFLOW_TRACKING_PASSWORD": "correct-horse", "RAY_AUTH_TOKEN": "0123456789abcdef0123",
       "PGPASSWORD": "pg-secret-1", "SHORT_TOKEN": "abc1234",  # under 8 characters: not treated as secret
       "TOKENIZERS_PARALLELISM": "falsefalse", "RAY_AUTH_MODE": "token", "HOME": "/home/someone",
       "MLFLOW_TRACKING_USERNAME": "someone-else", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID"}


def test_secret_env_values_are_those_of_secret_names():
    assert set(secret_env_values(ENV)) == {"hf_abcdefghijklmnop", "wJalrXUtnFEMI/K7MDENG", "correct-horse",
                                           "0123456789abcdef0123", "pg-secret-1"}


def test_redact_secrets_walks_a_dump_and_removes_env_secrets_and_uri_credentials():
    value = {"a": ["x https://u:p@h/ y", 3, None, ("hf_abcdefghijklmnop",)], "b": True,
             "c": {"d": "key=wJalrXUtnFEMI/K7MDENG pw=correct-horse ray=0123456789abcdef0123 abc1234 /home/someone"}}
    assert redact_secrets(value, ENV) == {
        "a": ["x https://***@h/ y", 3, None, ("***",)], "b": True,
        "c": {"d": "key=*** pw=*** ray=*** abc1234 /home/someone"}}


@pytest.fixture
def log_redaction():
    saved = logging.getLogRecordFactory()
    install_log_redaction()
    install_log_redaction()  # idempotent: one wrapper, not two
    yield
    logging.setLogRecordFactory(saved)


def test_log_records_are_redacted_before_any_handler_sees_them(log_redaction, caplog, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    with caplog.at_level(logging.INFO, logger="rayalign.test"):
        log = logging.getLogger("rayalign.test")
        log.info("tracking to %s with %s", "https://u:pw@h:5000", "hf_abcdefghijklmnop")
        log.info("%d%% plain", 100)
    assert [r.getMessage() for r in caplog.records] == ["tracking to https://***@h:5000 with ***", "100% plain"]


