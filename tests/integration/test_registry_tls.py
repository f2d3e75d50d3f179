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
