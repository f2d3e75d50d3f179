"""TLS: a registry with a certificate from a test CA.  Verification is on by
default (even on loopback), --ca-file adds the CA, --insecure-registry HOST
turns verification off for that host only."""
import pytest

import imagegen
from registry_util import make_ca, make_server_cert


@pytest.fixture
def tls_registry(registry_factory, tmp_path):
    ca_crt, ca_key = make_ca(tmp_path / "ca")
    crt, key = make_server_cert(tmp_path / "ca", ca_crt, ca_key)
    return registry_factory(tls=(crt, key)), ca_crt


def test_registry_tls_unknown_ca_fails_closed(kiln, tls_registry, tmp_path):
    reg, ca = tls_registry
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"a": b"tls"}])
    p, err = kiln.fails("copy", f"oci:{lay}:v1", reg.ref("tls/app", "v1"), code=6)
    assert "TLS verification failed" in err and "--ca-file" in err
    assert not (reg.dir / "data" / "docker" / "registry" / "v2" / "repositories" / "tls").exists()


def test_registry_tls_with_ca_file(kiln, tls_registry, tmp_path):
    reg, ca = tls_registry
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"a": b"tls ok"}])
    d = kiln.run("copy", "--ca-file", ca, f"oci:{lay}:v1", reg.ref("tls/app", "v1")).stdout.strip()
    out = tmp_path / "out"
    assert kiln.run("copy", "--ca-file", ca, reg.ref("tls/app", "v1"),
                    f"oci:{out}:v1").stdout.strip() == d
    kiln.run("fsck", f"oci:{out}")


def test_registry_tls_insecure_registry_is_per_host(kiln, tls_registry, tmp_path):
    reg, ca = tls_registry
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"a": b"tls insecure"}])
    kiln.run("copy", "--insecure-registry", reg.host, f"oci:{lay}:v1", reg.ref("tls/ins", "v1"))
    # another host named insecure does not relax this one
    kiln.fails("copy", "--insecure-registry", "127.0.0.1:1", f"oci:{lay}:v1",
               reg.ref("tls/ins", "v2"), code=6)


def test_registry_tls_options_on_read_verbs(kiln, tls_registry, tmp_path):
    reg, ca = tls_registry
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"a": b"tls read verbs"}])
    d = kiln.run("copy", "--ca-file", ca, f"oci:{lay}:v1", reg.ref("tls/read", "v1")).stdout.strip()
    assert kiln.run("digest", "--ca-file", ca, reg.ref("tls/read", "v1")).stdout.strip() == d
    kiln.run("inspect", "--ca-file", ca, reg.ref("tls/read", "v1"))
    assert kiln.run("ls", "--ca-file", ca, reg.ref("tls/read")).stdout.split() == ["v1"]
    kiln.fails("digest", reg.ref("tls/read", "v1"), code=6)


def test_registry_tls_speaks_http2_when_offered(kiln, tls_registry, registry, tmp_path):
    reg, ca = tls_registry
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"a": b"h2" * 5000}])
    p = kiln.run("copy", "--ca-file", ca, f"oci:{lay}:v1", reg.ref("tls/h2", "v1"),
                 env={"KILN_VERBOSE": "1"})
    # (a loopback host is first probed with plain http, which a TLS server refuses)
    debug = [l for l in p.stderr.splitlines() if l.startswith("kiln: debug: ") and " https://" in l]
    assert debug and all(l.endswith("(HTTP/2)") for l in debug), p.stderr
    assert any(l.startswith("kiln: debug: PUT https://") for l in debug)
    # plain http on loopback: HTTP/1.1
    p = kiln.run("copy", f"oci:{lay}:v1", registry.ref("tls/h1", "v1"), env={"KILN_VERBOSE": "1"})
    debug = [l for l in p.stderr.splitlines() if l.startswith("kiln: debug: ")]
    assert debug and all(l.endswith("(HTTP/1.1)") for l in debug), p.stderr
