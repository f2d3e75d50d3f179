"""Faults between kiln and a real registry, injected by a proxy written here:
transient statuses with Retry-After, dropped and corrupted bodies.  kiln either
completes with verified content or fails with one clear error, and never stores
or tags unverified content."""
import email.utils
import hashlib
import json
import re
import time

import pytest

import imagegen
from registry_util import FaultProxy

FAST = {"KILN_RETRY_BASE_MS": "50"}


@pytest.fixture
def proxy(registry):
    p = FaultProxy(registry.host)
    yield p
    p.stop()


def _push(kiln, registry, tmp_path, repo, size=200000):
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"big.bin": hashlib.sha256(repo.encode()).digest() * (size // 32)},
                                    {"small.txt": repo.encode()}])
    d = kiln.run("copy", f"oci:{lay}:v1", registry.ref(repo, "v1")).stdout.strip()
    return lay, d


def _layer_digests(lay):
    idx = json.loads((lay / "index.json").read_text())
    m = json.loads((lay / "blobs" / "sha256" / idx["manifests"][0]["digest"].split(":")[1]).read_text())
    return [l["digest"] for l in m["layers"]]


def test_registry_fault_503_retry_after_then_success(kiln, registry, proxy, tmp_path):
    lay, d = _push(kiln, registry, tmp_path, "faults/a")
    proxy.add(match="GET /v2/faults/a/blobs/", action="status", status=503, retry_after="1", times=2)
    p = kiln.run("copy", f"{proxy.host}/faults/a:v1", f"oci:{tmp_path}/out:v1", env=FAST)
    assert p.stdout.strip() == d
    # Retry-After was honoured: the wait said is its 1 s, not the 50 ms backoff
    waits = re.findall(r"503, retry \d+ in (\d+) ms", p.stderr)
    assert waits == ["1000", "1000"], p.stderr
    kiln.run("fsck", f"oci:{tmp_path}/out")


def test_registry_fault_429_with_http_date(kiln, registry, proxy, tmp_path):
    lay, d = _push(kiln, registry, tmp_path, "faults/b")
    when = email.utils.formatdate(time.time() + 1, usegmt=True)
    proxy.add(match="GET /v2/faults/b/manifests/v1", action="status", status=429, retry_after=when,
              body=b"HAP429 not json", times=1)
    p = kiln.run("copy", f"{proxy.host}/faults/b:v1", f"oci:{tmp_path}/out:v1", env=FAST)
    assert p.stdout.strip() == d


def test_registry_fault_500_on_manifest_and_blob_put_is_retried(kiln, registry, proxy, tmp_path):
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"x": b"push retry " * 5000}])
    proxy.add(match="PUT /v2/faults/c/blobs/uploads/", action="status", status=500, times=2)
    proxy.add(match="PUT /v2/faults/c/manifests/", action="status", status=502, times=2)
    p = kiln.run("copy", f"oci:{lay}:v1", f"{proxy.host}/faults/c:v1", env=FAST)
    d = p.stdout.strip()
    st, h, _ = registry.api("/v2/faults/c/manifests/v1",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 200 and h["Docker-Content-Digest"] == d


def test_registry_fault_dropped_blob_body_is_resumed(kiln, registry, proxy, tmp_path):
    lay, d = _push(kiln, registry, tmp_path, "faults/d", size=2_000_000)
    big = _layer_digests(lay)[0]
    proxy.add(match=f"GET /v2/faults/d/blobs/{big}", action="drop_mid_body", times=1)
    p = kiln.run("copy", f"{proxy.host}/faults/d:v1", f"oci:{tmp_path}/out:v1", env=FAST)
    assert p.stdout.strip() == d
    kiln.run("fsck", f"oci:{tmp_path}/out")
    gets = [l for l in proxy.log if l[0] == "GET" and big in l[1]]
    assert len(gets) == 2 and gets[1][2] == 206, gets  # the second GET asked for the rest


def test_registry_fault_corrupt_blob_is_never_stored(kiln, registry, proxy, tmp_path):
    lay, d = _push(kiln, registry, tmp_path, "faults/e")
    big = _layer_digests(lay)[0]
    proxy.add(match=f"GET /v2/faults/e/blobs/{big}", action="corrupt", times=10)
    out = tmp_path / "out"
    p, err = kiln.fails("copy", f"{proxy.host}/faults/e:v1", f"oci:{out}:v1", env=FAST, code=4)
    assert big in err
    assert not (out / "blobs" / "sha256" / big.split(":")[1]).exists()
    if (out / "index.json").exists():
        assert json.loads((out / "index.json").read_text())["manifests"] == []


def test_registry_fault_truncated_blob_then_good(kiln, registry, proxy, tmp_path):
    lay, d = _push(kiln, registry, tmp_path, "faults/f", size=500_000)
    big = _layer_digests(lay)[0]
    proxy.add(match=f"GET /v2/faults/f/blobs/{big}", action="truncate", times=1)
    p = kiln.run("copy", f"{proxy.host}/faults/f:v1", f"oci:{tmp_path}/out:v1", env=FAST)
    assert p.stdout.strip() == d
    kiln.run("fsck", f"oci:{tmp_path}/out")


def test_registry_fault_corrupt_manifest_by_digest_fails(kiln, registry, proxy, tmp_path):
    lay, d = _push(kiln, registry, tmp_path, "faults/g")
    proxy.add(match=f"GET /v2/faults/g/manifests/{d}", action="corrupt", times=10)
    p, err = kiln.fails("copy", f"{proxy.host}/faults/g@{d}", f"oci:{tmp_path}/out:v1", env=FAST)
    assert "does not match its digest" in err or "invalid JSON" in err


def test_registry_fault_retries_are_bounded(kiln, registry, proxy, tmp_path):
    lay, d = _push(kiln, registry, tmp_path, "faults/h")
    proxy.add(match="GET /v2/faults/h/manifests/v1", action="status", status=503, times=100)
    p, err = kiln.fails("copy", "--retry-times", "2", f"{proxy.host}/faults/h:v1",
                        f"oci:{tmp_path}/out:v1", env=FAST, code=6)
    assert "503" in err
    # bounded in count and in the waits said (backoff from 50 ms), not by the clock
    waits = [int(w) for w in re.findall(r"retry \d+ in (\d+) ms", p.stderr)]
    assert len(waits) == 2 and sum(waits) <= 150, p.stderr
    assert len([l for l in proxy.log if "manifests/v1" in l[1]]) == 3


def test_registry_fault_wrong_source_bytes_never_tagged(kiln, registry, tmp_path):
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"x": b"will be corrupted " * 3000}])
    layer = _layer_digests(lay)[0]
    path = lay / "blobs" / "sha256" / layer.split(":")[1]
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    p, err = kiln.fails("copy", f"oci:{lay}:v1", registry.ref("faults/i", "v1"), code=4)
    assert registry.api(f"/v2/faults/i/blobs/{layer}", method="HEAD")[0] == 404
    st, _, _ = registry.api("/v2/faults/i/manifests/v1",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 404


def test_registry_fault_error_body_is_capped_and_sanitised(kiln, registry, proxy, tmp_path):
    proxy.add(match="GET /v2/faults/j/manifests/v1", action="status", status=400,
              body=b"<html>\x1b[31m" + b"A" * 2_000_000 + b"</html>", times=1)
    p, err = kiln.fails("copy", f"{proxy.host}/faults/j:v1", f"oci:{tmp_path}/out:v1", env=FAST)
    assert "400" in err and "\x1b" not in err and len(err) < 600


def test_registry_fault_oversized_manifest_is_refused(kiln, registry, proxy, tmp_path):
    proxy.add(match="GET /v2/faults/k/manifests/v1", action="status", status=200,
              body=b"{" + b" " * 5_000_000 + b"}", times=1)
    p, err = kiln.fails("copy", f"{proxy.host}/faults/k:v1", f"oci:{tmp_path}/out:v1", code=8)
    assert "larger than the limit of 4194304 bytes" in err


def test_registry_fault_connection_refused_is_bounded(kiln, tmp_path):
    from registry_util import free_port
    port = free_port()  # nothing listens there
    p, err = kiln.fails("copy", "--retry-times", "2", f"127.0.0.1:{port}/x/y:v1",
                        f"oci:{tmp_path}/out:v1", env=FAST, code=6)
    assert "connect" in err.lower()
    waits = [int(w) for w in re.findall(r"retry \d+ in (\d+) ms", p.stderr)]
    assert 1 <= len(waits) <= 2 and sum(waits) <= 150, p.stderr


def test_registry_fault_stalled_server_times_out(kiln, registry, proxy, tmp_path):
    lay, d = _push(kiln, registry, tmp_path, "faults/l")
    proxy.add(match="GET /v2/faults/l/manifests/v1", action="stall", seconds=30, times=5)
    p, err = kiln.fails("copy", "--retry-times", "1", f"{proxy.host}/faults/l:v1",
                        f"oci:{tmp_path}/out:v1", env={**FAST, "KILN_LOW_SPEED_TIME": "2"}, code=6)
    assert "too slow" in err.lower() or "timed out" in err.lower() or "timeout" in err.lower()
    # one retry, then the error: the stall (30 s) was cut short both times
    stalls = [f for f in proxy.fired if f[0] == "stall"]
    assert len(stalls) == 2 and p.stderr.count("kiln: retry:") == 1, p.stderr


def _big_image(tmp_path, name):
    import random
    lay = tmp_path / name
    # 9 MiB of noise: above the in-memory limit, so the upload is one streamed PUT
    imagegen.make_image(lay, "v1", [{"noise.bin": random.Random(name).randbytes(9 << 20)}])
    return lay


def test_registry_fault_streamed_upload_restarted_from_registry_source(kiln, registry,
                                                                       registry_factory, tmp_path):
    lay = _big_image(tmp_path, "big")
    d = kiln.run("copy", f"oci:{lay}:v1", registry.ref("faults/src", "v1")).stdout.strip()
    big = _layer_digests(lay)[0]
    other = registry_factory()
    proxy = FaultProxy(other.host)
    try:
        proxy.add(match=f"digest={big.replace(':', '%3A')}", action="status", status=500, times=1)
        p = kiln.run("copy", registry.ref("faults/src", "v1"), f"{proxy.host}/faults/dst:v1", env=FAST)
        assert p.stdout.strip() == d
        assert "restarting the upload" in p.stderr
        puts = [l for l in proxy.log if l[0] == "PUT" and big.split(":")[1] in l[1]]
        assert [l[2] for l in puts] == [500, 201], puts
    finally:
        proxy.stop()


def test_registry_fault_streamed_upload_from_layout_is_restarted(kiln, registry, proxy, tmp_path):
    lay = _big_image(tmp_path, "big2")
    big = _layer_digests(lay)[0]
    proxy.add(match=f"digest={big.replace(':', '%3A')}", action="status", status=500, times=1)
    p = kiln.run("copy", f"oci:{lay}:v1", f"{proxy.host}/faults/m:v1", env=FAST)
    assert "restarting the upload" in p.stderr
    puts = [l for l in proxy.log if l[0] == "PUT" and big.split(":")[1] in l[1]]
    assert [l[2] for l in puts] == [500, 201], puts
    st, h, _ = registry.api("/v2/faults/m/manifests/v1",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 200 and h["Docker-Content-Digest"] == p.stdout.strip()


def test_registry_fault_streamed_upload_cut_from_layout_fails_cleanly(kiln, registry, proxy, tmp_path):
    lay = _big_image(tmp_path, "big4")
    big = _layer_digests(lay)[0]
    # more failures than restarts: a clean error, no tag
    proxy.add(match=f"digest={big.replace(':', '%3A')}", action="status", status=500, times=3)
    p, err = kiln.fails("copy", f"oci:{lay}:v1", f"{proxy.host}/faults/m2:v1", env=FAST, code=6)
    assert big in err and "500" in err
    st, _, _ = registry.api("/v2/faults/m2/manifests/v1",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 404
    # the next run finishes the job
    kiln.run("copy", f"oci:{lay}:v1", f"{proxy.host}/faults/m2:v1", env=FAST)


def test_registry_fault_huge_retry_after_fails_at_once(kiln, registry, proxy, tmp_path):
    _push(kiln, registry, tmp_path, "faults/n")
    proxy.add(match="GET /v2/faults/n/manifests/v1", action="status", status=429,
              retry_after="86400", times=100)
    p, err = kiln.fails("copy", f"{proxy.host}/faults/n:v1", f"oci:{tmp_path}/out:v1", code=8)
    assert "Retry-After '86400', longer than the 60 s kiln waits" in err
    assert "kiln: retry:" not in p.stderr  # no wait at all
    assert len([l for l in proxy.log if "manifests/v1" in l[1]]) == 1


@pytest.mark.parametrize("second", ["416", "shift_content_range"])
def test_registry_fault_refused_resume_starts_again_from_0(kiln, registry, proxy, tmp_path, second):
    import random
    repo = f"faults/o{len(second)}"
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"noise.bin": random.Random(6).randbytes(2_000_000)}])
    d = kiln.run("copy", f"oci:{lay}:v1", registry.ref(repo, "v1")).stdout.strip()
    big = _layer_digests(lay)[0]
    proxy.add(match=f"GET /v2/{repo}/blobs/{big}", action="reset_at", at=700_000)
    if second == "416":
        proxy.add(match=f"GET /v2/{repo}/blobs/{big}", if_header="Range", action="status", status=416,
                  body=b"no")
    else:
        proxy.add(match=f"GET /v2/{repo}/blobs/{big}", if_header="Range", action=second)
    p = kiln.run("copy", f"{proxy.host}/{repo}:v1", f"oci:{tmp_path}/out:v1", env=FAST)
    assert p.stdout.strip() == d
    assert "starting again from 0" in p.stderr
    kiln.run("fsck", "--deep", f"oci:{tmp_path}/out")
    gets = [h for (m, path, h) in proxy.headers_seen if m == "GET" and big in path]
    assert len(gets) == 3 and "Range" in gets[1] and "Range" not in gets[2]


def test_registry_fault_lost_answer_to_a_blob_put_is_checked_with_head(kiln, registry, proxy, tmp_path):
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"x": b"lost answer " * 5000}])
    layer = _layer_digests(lay)[0]
    proxy.add(match=("PUT /v2/faults/p/blobs/uploads/", layer.split(":")[1]), action="lost_response")
    p = kiln.run("copy", f"oci:{lay}:v1", f"{proxy.host}/faults/p:v1", env=FAST)
    heads = [l for l in proxy.log if l[0] == "HEAD" and layer in l[1]]
    assert heads[-1][2] == 200  # asked after the failed upload: the registry had it
    st, h, _ = registry.api("/v2/faults/p/manifests/v1",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 200 and h["Docker-Content-Digest"] == p.stdout.strip()


def test_registry_fault_busy_loopback_registry_is_asked_again(kiln, registry, proxy, tmp_path):
    lay, d = _push(kiln, registry, tmp_path, "faults/q")
    proxy.add(match="GET /v2/ ", action="status", status=503, times=2)
    p = kiln.run("copy", f"{proxy.host}/faults/q:v1", f"oci:{tmp_path}/out:v1", env=FAST)
    assert p.stdout.strip() == d


def test_registry_fault_huge_retry_after_to_a_streamed_upload_is_not_restarted(kiln, registry, proxy,
                                                                              tmp_path):
    lay = _big_image(tmp_path, "big3")
    big = _layer_digests(lay)[0]
    proxy.add(match=f"digest={big.replace(':', '%3A')}", action="status", status=503,
              retry_after="86400", times=100)
    p, err = kiln.fails("copy", f"oci:{lay}:v1", f"{proxy.host}/faults/r:v1", env=FAST, code=8)
    assert "Retry-After '86400'" in err and "restarting" not in p.stderr
    assert len([l for l in proxy.log if l[0] == "PUT" and big.split(":")[1] in l[1]]) == 1


def test_registry_fault_dripping_manifest_ends_at_the_deadline(kiln, registry, proxy, tmp_path):
    # 64 KiB at 2 KiB/s: above the low-speed limit, 32 s a try; the deadline is 2 s
    _push(kiln, registry, tmp_path, "faults/s")
    proxy.add(match="GET /v2/faults/s/manifests/v1", action="drip", times=100)
    p, err = kiln.fails("copy", "--retry-times", "1", f"{proxy.host}/faults/s:v1",
                        f"oci:{tmp_path}/out:v1", env={**FAST, "KILN_REQUEST_DEADLINE": "2"}, code=6)
    assert err.endswith(f"after 1 retries: GET 'http://{proxy.host}/v2/faults/s/manifests/v1' failed: "
                        "not complete within its deadline of 2 s"), err
    assert len([f for f in proxy.fired if f[0] == "drip"]) == 2  # tried again once, then the error
    assert not (tmp_path / "out" / "index.json").exists() or \
        json.loads((tmp_path / "out" / "index.json").read_text())["manifests"] == []
