"""`agentic-cp identity request` as a command line: its flags, and its failures as one line each."""

from __future__ import annotations

import argparse
from datetime import timedelta

import pytest

from controlplane.cli import main
from controlplane.commands.identity_request import duration
from controlplane.identity.ca import CertificateAuthority
from controlplane.identity.files import write_identity
from tests.support.envoy import free_port


@pytest.mark.parametrize(("text", "want"), [("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)),
                                            ("12h", timedelta(hours=12)), ("1d", timedelta(days=1))])
def test_durations(text, want):
    assert duration(text) == want


@pytest.mark.parametrize("text", ["0s", "10", "1w", "-5m", "1.5h", ""])
def test_bad_durations_are_usage_errors(text):
    with pytest.raises(argparse.ArgumentTypeError, match="positive duration"):
        duration(text)


def test_a_credential_folder_without_its_files_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "creds").mkdir()
    code = main(["identity", "request", "--xds-address", "127.0.0.1:1", "--credentials", str(tmp_path / "creds"),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "missing cert.pem, key.pem, bundle.pem" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_no_server_is_one_line_and_writes_nothing(tmp_path, capsys):
    ca = CertificateAuthority.create(trust_domain="example.org")
    creds = write_identity(tmp_path / "creds", ca.issue("spiffe://example.org/ns/a/sa/b"), ca.bundle_pem).cert.parent
    address = f"127.0.0.1:{free_port()}"  # nobody listens
    code = main(["identity", "request", "--xds-address", address, "--credentials", str(creds),
                 "--out", str(tmp_path / "out"), "--timeout", "1"])
    err = capsys.readouterr().err
    assert code == 1 and f"no TLS connection to {address}" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
