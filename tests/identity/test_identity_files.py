import stat

from cryptography import x509

from controlplane.identity.files import atomic_write, write_identity


def test_write_identity_layout_and_modes(tmp_path, ca):
    ident = ca.issue("spiffe://example.org/ns/a/sa/b")
    files = write_identity(tmp_path / "out", ident, ca.bundle_pem)
    assert files.cert.read_bytes() == ident.chain_pem
    assert files.key.read_bytes() == ident.key_pem
    assert files.bundle.read_bytes() == ca.bundle_pem
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bundle.pem", "cert.pem", "key.pem"]
    x509.load_pem_x509_certificate(files.cert.read_bytes())


def test_rewrite_replaces_the_inode_instead_of_truncating(tmp_path, ca):
    """A reader holding the old file keeps reading a whole old file: the new one arrives by rename."""
    first = write_identity(tmp_path, ca.issue("spiffe://example.org/ns/a/sa/b"), ca.bundle_pem)
    with open(first.cert, "rb") as old_reader:
        old_bytes = first.cert.read_bytes()
        second = ca.issue("spiffe://example.org/ns/a/sa/b")
        write_identity(tmp_path, second, ca.bundle_pem)
        assert old_reader.read() == old_bytes
    assert first.cert.read_bytes() == second.chain_pem
    assert stat.S_IMODE(first.key.stat().st_mode) == 0o600


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = atomic_write(tmp_path / "sub" / "x.txt", b"hello", mode=0o640)
    assert target.read_bytes() == b"hello"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["x.txt"]
