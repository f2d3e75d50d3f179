"""HTTP behaviours: redirects without credentials to another host, chunked
uploads, relative Locations, Warning headers, digest disagreements, a 401
in the middle of a push, mirrors."""
import base64
import json

import pytest

import imagegen
from registry_util import FaultProxy, TokenServer

USER, PASSWORD = "u1", "pw-Very-Secret-1"


@pytest.fixture
def proxy(registry):
    p = FaultProxy(registry.host)
    yield p
    p.stop()


def _image(tmp_path, data=b"http test " * 20000):
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"a.bin": data}, {"b.txt": b"small"}])
    return lay


def _layers(lay):
    idx = json.loads((lay / "index.json").read_text())
    m = json.loads((lay / "blobs" / "sha256" / idx["manifests"][0]["digest"].split(":")[1]).read_text())
    return [l["digest"] for l in m["layers"]]


@pytest.fixture
def token_front(registry_factory, tmp_path):
    """A registry that wants Bearer tokens, the fault proxy kiln talks to in
    front of it, and an authfile with credentials for the proxy's host."""
    ts = TokenServer(tmp_path / "tok", {USER: PASSWORD})
    reg = registry_factory(auth=ts.registry_auth())
    front = FaultProxy(reg.host)
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {front.host: {
        "auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}))
    yield ts, reg, front, authfile
    front.stop()
    ts.stop()


def test_registry_redirect_to_other_host_carries_no_credentials(kiln, token_front, tmp_path):
    ts, reg, front, authfile = token_front
    other = FaultProxy(reg.host)   # "the CDN": another host:port
    try:
        lay = _image(tmp_path)
        kiln.run("copy", "--authfile", authfile, f"oci:{lay}:v1", f"{front.host}/r/app:v1")
        big = _layers(lay)[0]
        front.add(match=f"GET /v2/r/app/blobs/{big}", action="redirect", to=other.host)
        # the other host cannot serve it without a token: kiln must not send ours there
        p, err = kiln.fails("copy", "--authfile", authfile, f"{front.host}/r/app:v1",
                            f"oci:{tmp_path}/out:v1")
        seen = [h for (m, path, h) in other.headers_seen if big in path]
        assert seen, "the redirect was not followed"
        assert all("Authorization" not in h for h in seen)
        assert "401" in err
    finally:
        other.stop()


def test_registry_redirect_same_registry_is_followed(kiln, registry, proxy, tmp_path):
    lay = _image(tmp_path)
    d = kiln.run("copy", f"oci:{lay}:v1", registry.ref("redir/app", "v1")).stdout.strip()
    big = _layers(lay)[0]
    proxy.add(match=f"GET /v2/redir/app/blobs/{big}", action="redirect", to=registry.host)
    p = kiln.run("copy", f"{proxy.host}/redir/app:v1", f"oci:{tmp_path}/out:v1")
    assert p.stdout.strip() == d
    kiln.run("fsck", f"oci:{tmp_path}/out")


def test_registry_redirect_loop_is_bounded(kiln, registry, proxy, tmp_path):
    lay = _image(tmp_path)
    kiln.run("copy", f"oci:{lay}:v1", registry.ref("loop/app", "v1"))
    big = _layers(lay)[0]
    proxy.add(match=f"GET /v2/loop/app/blobs/{big}", action="redirect", to=proxy.host, times=100)
    p, err = kiln.fails("copy", f"{proxy.host}/loop/app:v1", f"oci:{tmp_path}/out:v1", code=6)
    assert "too many redirects" in err


def test_registry_chunked_upload_with_content_range(kiln, registry, proxy, tmp_path):
    import random
    lay = _image(tmp_path, data=random.Random(1).randbytes(512000))  # incompressible
    d = kiln.run("copy", "--chunk-size", "100k", f"oci:{lay}:v1", f"{proxy.host}/chunk/app:v1").stdout.strip()
    patches = [h for (m, path, h) in proxy.headers_seen if m == "PATCH"]
    assert len(patches) >= 5
    ranges = [h["Content-Range"] for h in patches]
    assert ranges[0].startswith("0-102399")
    out = tmp_path / "out"
    assert kiln.run("copy", registry.ref("chunk/app", "v1"), f"oci:{out}:v1").stdout.strip() == d
    kiln.run("fsck", f"oci:{out}")


def test_registry_relative_upload_location(kiln, registry, proxy, tmp_path):
    lay = _image(tmp_path)
    proxy.add(match="POST /v2/rel/app/blobs/uploads/", action="relative_location", times=10)
    d = kiln.run("copy", f"oci:{lay}:v1", f"{proxy.host}/rel/app:v1").stdout.strip()
    puts = [path for (m, path, h) in proxy.headers_seen if m == "PUT" and "/blobs/uploads/" in path]
    assert puts and all("_state=" in p and "digest=sha256" in p for p in puts)
    assert registry.api(f"/v2/rel/app/manifests/{d}", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"})[0] == 200


def test_registry_warning_header_shown_once(kiln, registry, proxy, tmp_path):
    lay = _image(tmp_path)
    kiln.run("copy", f"oci:{lay}:v1", registry.ref("warn/app", "v1"))
    proxy.add(match="/v2/warn/app/", action="pass", times=100,
              add_headers=[("Warning", '299 - "this repository is deprecated"')])
    p = kiln.run("copy", f"{proxy.host}/warn/app:v1", f"oci:{tmp_path}/out:v1")
    assert p.stderr.count("this repository is deprecated") == 1


def test_registry_tag_digest_disagreement_warns_and_uses_content(kiln, registry, proxy, tmp_path):
    lay = _image(tmp_path)
    d = kiln.run("copy", f"oci:{lay}:v1", registry.ref("dig/app", "v1")).stdout.strip()
    proxy.add(match="GET /v2/dig/app/manifests/v1", action="wrong_digest")
    p = kiln.run("copy", f"{proxy.host}/dig/app:v1", f"oci:{tmp_path}/out:v1")
    assert p.stdout.strip() == d
    assert "hashes to" in p.stderr


def _expired(ts, repo):
    return (f'Bearer realm="{ts.realm}",service="{ts.service}",'
            f'scope="repository:{repo}:pull,push",error="invalid_token"')


def test_registry_reauth_on_401_mid_push(kiln, token_front, tmp_path):
    ts, reg, front, authfile = token_front
    front.add(match="PUT /v2/exp/app/blobs/uploads/", action="status", status=401,
              body=b'{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}',
              add_headers=[("WWW-Authenticate", _expired(ts, "exp/app"))])
    lay = _image(tmp_path)
    n0 = len(ts.requests)
    kiln.run("copy", "--authfile", authfile, "--jobs", "1", f"oci:{lay}:v1", f"{front.host}/exp/app:v1")
    assert len(ts.requests) - n0 >= 2  # the first token, then a fresh one after the 401


def test_registry_mirror_map_for_pulls(kiln, registry, tmp_path):
    lay = _image(tmp_path)
    d = kiln.run("copy", f"oci:{lay}:v1", registry.ref("mirror/library/busybox", "1.36")).stdout.strip()
    p = kiln.run("copy", "--mirror", f"docker.io={registry.host}/mirror", "busybox:1.36",
                 f"oci:{tmp_path}/out:v1")
    assert p.stdout.strip() == d


def test_registry_chunked_upload_resyncs_after_416(kiln, registry, proxy, tmp_path):
    import random
    lay = _image(tmp_path, data=random.Random(2).randbytes(400000))
    proxy.add(match="PATCH /v2/resync/app/blobs/uploads/", action="skip", times=1)  # first passes
    proxy.add(match="PATCH /v2/resync/app/blobs/uploads/", action="status", status=416,
              body=b'{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"out of order"}]}')
    d = kiln.run("copy", "--chunk-size", "100k", f"oci:{lay}:v1", f"{proxy.host}/resync/app:v1").stdout.strip()
    statuses = [l for l in proxy.log if l[0] in ("PATCH", "GET") and "/blobs/uploads/" in l[1]]
    assert ("PATCH", 416) in [(l[0], l[2]) for l in statuses]
    assert ("GET", 204) in [(l[0], l[2]) for l in statuses]
    out = tmp_path / "out"
    assert kiln.run("copy", registry.ref("resync/app", "v1"), f"oci:{out}:v1").stdout.strip() == d
    kiln.run("fsck", f"oci:{out}")


def test_registry_chunk_min_length_is_honoured(kiln, registry, proxy, tmp_path):
    import random
    lay = _image(tmp_path, data=random.Random(3).randbytes(500000))
    proxy.add(match="POST /v2/minlen/app/blobs/uploads/", action="pass", times=10,
              add_headers=[("OCI-Chunk-Min-Length", "200000")])
    kiln.run("copy", "--chunk-size", "64k", f"oci:{lay}:v1", f"{proxy.host}/minlen/app:v1")
    ranges = [h["Content-Range"] for (m, path, h) in proxy.headers_seen if m == "PATCH"]
    assert ranges and ranges[0] == "0-199999", ranges


def test_registry_chunk_not_acknowledged_is_an_error(kiln, registry, proxy, tmp_path):
    import random
    lay = _image(tmp_path, data=random.Random(4).randbytes(300000))
    # once: the upload starts again in a new session and succeeds
    proxy.add(match="PATCH /v2/stuck/app/blobs/uploads/", action="stuck_range", nth=1, times=1)
    p = kiln.run("copy", "--chunk-size", "100k", f"oci:{lay}:v1", f"{proxy.host}/stuck/app:v1")
    assert "acknowledged bytes up to 0" in p.stderr and "restarting the upload" in p.stderr
    # always: an error once the restarts are spent
    proxy.add(match="PATCH /v2/stuck/app2/blobs/uploads/", action="stuck_range", nth=1, times=100)
    p, err = kiln.fails("copy", "--chunk-size", "100k", f"oci:{lay}:v1", f"{proxy.host}/stuck/app2:v1",
                        code=6)
    assert "acknowledged bytes up to 0" in err
    assert p.stderr.count("restarting the upload") == 2
    st, _, _ = registry.api("/v2/stuck/app2/manifests/v1",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 404


def test_registry_token_expiring_during_a_streamed_upload(kiln, token_front, tmp_path):
    import random
    ts, reg, front, authfile = token_front
    # over the 8 MiB kept in memory: the body is streamed once
    lay = _image(tmp_path, data=random.Random(5).randbytes(9 << 20))
    big = _layers(lay)[0]
    front.add(match=("PUT /v2/exp2/app/blobs/uploads/", big.split(":")[1]), action="expire_token",
              challenge=_expired(ts, "exp2/app"))
    p = kiln.run("copy", "--authfile", authfile, f"oci:{lay}:v1", f"{front.host}/exp2/app:v1",
                 env={"KILN_RETRY_BASE_MS": "50"})
    assert "restarting the upload" in p.stderr
    puts = [l[2] for l in front.log if l[0] == "PUT" and big.split(":")[1] in l[1]]
    assert puts == [401, 201], front.log
