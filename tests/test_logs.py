"""controlplane.logs: one record is one line in both formats, whatever the message holds; JSON parses."""

from __future__ import annotations

import io
import json
import logging

import pytest

from controlplane.logs import configure_logging

FORGED = "policy ns/p refused\nFAKE LINE 2099-01-01 INFO controlplane: all good\r\x1b[2Jcleared\u2028sep"


@pytest.fixture
def logged():
    """Configure the root logger into a buffer; give back a function that logs and returns the output."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()

    def log(log_format: str, message: str, *args, **kwargs) -> str:
        configure_logging("info", log_format, stream=buffer)
        logging.getLogger("controlplane.test").warning(message, *args, **kwargs)
        return buffer.getvalue()

    yield log
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_message_with_newlines_is_one_line(logged, log_format):
    out = logged(log_format, "bad input: %s", FORGED)
    assert len(out.splitlines()) == 1 and out.endswith("\n")
    assert "\nFAKE LINE" not in out


def test_text_escapes_control_characters_visibly(logged):
    out = logged("text", "bad input: %s", FORGED)
    assert "WARNING controlplane.test: bad input: policy ns/p refused\\nFAKE LINE" in out
    assert "\\r\\x1b[2Jcleared\\u2028sep" in out


def test_json_lines_parse_with_fields_and_extras(logged):
    out = logged("json", "bad input: %s", FORGED, extra={"proxy": "gw~quickstart~agent-gateway", "attempt": 3})
    record = json.loads(out)
    assert record["message"] == f"bad input: {FORGED}"
    assert (record["level"], record["logger"]) == ("WARNING", "controlplane.test")
    assert record["time"].endswith("+00:00")
    assert (record["proxy"], record["attempt"]) == ("gw~quickstart~agent-gateway", 3)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_traceback_stays_on_the_record_line(logged, log_format):
    root = logging.getLogger()
    buffer = io.StringIO()
    configure_logging("info", log_format, stream=buffer)
    try:
        raise ValueError("boom\nFAKE LINE")
    except ValueError:
        root.exception("failed")
    out = buffer.getvalue()
    assert len(out.splitlines()) == 1
    assert "ValueError" in out


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="text, json"):
        configure_logging("info", "xml")
