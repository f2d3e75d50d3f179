"""The fault matrix: every fault kind below, with several seeds, on a pull
(registry -> oci layout) and on a push (oci layout -> registry) of one image,
through a fault proxy in front of a real docker-registry that wants Bearer
tokens.  The seed picks which request is hit and where in its body.

Every run ends with the right digest and a destination that checks clean, or
with a non-zero exit and exactly one `kiln: error:` line.  Whatever the end:
no blob in the layout that does not hash to its name, no tag in the registry
on an image with a blob missing, no Authorization header seen by the other
host, and the retries and their waits within the budget of docs/registry.md.

KILN_TEST_FAULT_SEEDS seeds (default 2) on an image of KILN_TEST_FAULT_MIB MiB
(default 12: one layer over kiln's 8 MiB in-memory limit, so streamed uploads
are faulted too).  The slow suite runs 20 seeds on 256 MiB."""
import base64
import email.utils
import hashlib
import json
import os
import random
import re
import shutil
import time

import pytest

import imagegen
from registry_util import FaultProxy, Registry, TokenServer

SEEDS = int(os.environ.get("KILN_TEST_FAULT_SEEDS", "2"))
MIB = int(os.environ.get("KILN_TEST_FAULT_MIB", "12"))
USER, PASSWORD = "matrix", "pw-Matrix-Secret-9"
LOW_SPEED_S = 2
STALL_S = LOW_SPEED_S + 3
ENV = {"KILN_RETRY_BASE_MS": "50", "KILN_LOW_SPEED_TIME": str(LOW_SPEED_S)}
# docs/registry.md: a request is retried at most --retry-times (5) times, a
# blob upload restarted at most twice
RETRIES, RESTARTS = 5, 2
# the longest backoff with KILN_RETRY_BASE_MS=50: 50 ms doubled up to the 5th retry
BACKOFF_MAX_MS = 50 << (RETRIES - 1)
ERROR_BODY_SIZES = [0, 1, 119, 120, 121, 4095, 65535, 65536, 65537, 1 << 20, 16 << 20]


def layer_sizes(mib):
    if mib >= 64:
        return [mib * 3 // 8 << 20, mib // 4 << 20, mib // 4 << 20, mib // 8 << 20]
    return [9 << 20, max(1, mib - 10) << 20, 1 << 20]


class Plan:
    """What a kind does to one run: faults for the front proxy and for the
    other host, extra kiln arguments, the outcome it must have ("ok", "fail"
    or "either"), the seconds the fault may legitimately cost, and a check
    of the error line."""

    def __init__(self, faults, expect="ok", other=(), args=(), delay=0.0, check=None):
        self.faults = list(faults)
        self.other = list(other)
        self.args = list(args)
        self.expect = expect
        self.delay = delay
        self.check = check


class Run:
    """The requests one run makes, for the kinds to aim at."""

    def __init__(self, m, direction, repo):
        self.m = m
        self.pull = direction == "pull"
        self.repo = repo
        self.scope = f"repository:{repo}:" + ("pull" if self.pull else "pull,push")

    def layer(self, rng):
        d, size = rng.choice(self.m.layers)
        return d, size

    def blob_get(self, rng):
        d, size = self.layer(rng)
        return f"GET /v2/{self.repo}/blobs/{d}", size

    def blob_put(self, rng):
        d, size = self.layer(rng)
        return ("PUT /v2/" + self.repo + "/blobs/uploads/", "digest=" + d.replace(":", "%3A")), size

    def any_request(self, rng):
        """One request of the run, as (match, nth)."""
        r = f"/v2/{self.repo}/"
        if self.pull:
            choices = [("GET /v2/ ", 0), (f"GET {r}manifests/v1", 0)]
            choices += [(f"GET {r}blobs/{d}", 0) for d, _ in self.m.blobs]
        else:
            n = len(self.m.blobs)
            choices = [("GET /v2/ ", 0), (f"HEAD {r}manifests/", rng.randrange(2)),
                       (f"PUT {r}manifests/", rng.randrange(2))]
            choices += [(f"HEAD {r}blobs/{d}", 0) for d, _ in self.m.blobs]
            choices += [(f"POST {r}blobs/uploads/", rng.randrange(n))]
            choices += [(("PUT " + r + "blobs/uploads/", "digest=" + d.replace(":", "%3A")), 0)
                        for d, _ in self.m.blobs]
        return rng.choice(choices)

    def challenge(self, error=None):
        ts = self.m.ts
        c = f'Bearer realm="{ts.realm}",service="{ts.service}",scope="{self.scope}"'
        return c + (f',error="{error}"' if error else "")


# ---- the kinds ----

def _status(code):
    def kind(run, rng):
        match, nth = run.any_request(rng)
        return Plan([dict(match=match, nth=nth, action="status", status=code)])
    return kind


def _cut(on_pull, on_push, delay=0.0, **extra):
    """A fault at a byte offset of a blob's body: of the answer on a pull, of
    the PUT on a push."""
    def kind(run, rng):
        match, size = run.blob_get(rng) if run.pull else run.blob_put(rng)
        return Plan([dict(match=match, action=on_pull if run.pull else on_push,
                          at=rng.randrange(1, size), **extra)], delay=delay)
    return kind


def reset_before_answer(run, rng):
    match, nth = run.any_request(rng)
    return Plan([dict(match=match, nth=nth, action="reset")])


def lost_answer(run, rng):
    match, nth = run.any_request(rng)
    return Plan([dict(match=match, nth=nth, action="lost_response")])


def stall_before_answer(run, rng):
    match, nth = run.any_request(rng)
    return Plan([dict(match=match, nth=nth, action="stall", seconds=STALL_S)], delay=LOW_SPEED_S + 1)


def retries_exhausted(run, rng):
    match, nth = run.any_request(rng)
    return Plan([dict(match=match, nth=nth, action="status", status=503, times=1000)], expect="fail",
                check=lambda err: "503" in err)


def retry_after_seconds(run, rng):
    match, nth = run.any_request(rng)
    return Plan([dict(match=match, nth=nth, action="status", status=429, retry_after="1",
                      body=b"slow down")], delay=1)


def retry_after_date(run, rng):
    match, nth = run.any_request(rng)
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    return Plan([dict(match=match, nth=nth, action="status", status=429, retry_after=when)], delay=3)


def retry_after_huge(run, rng):
    match, nth = run.any_request(rng)
    when = rng.choice(["86400", "99999999999999999999",
                       email.utils.formatdate(time.time() + 365 * 86400, usegmt=True)])
    return Plan([dict(match=match, nth=nth, action="status", status=rng.choice([429, 503]),
                      retry_after=when, times=1000)],
                expect="fail", check=lambda err: "Retry-After" in err)


def error_body_any_size(run, rng):
    match, nth = run.any_request(rng)
    body = rng.randbytes(rng.choice(ERROR_BODY_SIZES))
    return Plan([dict(match=match, nth=nth, action="status", status=rng.choice([500, 502, 503]),
                      body=body)])


def _sanitised(err):
    return len(err) < 700 and all(32 <= ord(c) < 127 for c in err)


def error_body_4xx(run, rng):
    match, nth = run.any_request(rng)
    size = rng.choice(ERROR_BODY_SIZES)
    body = (b"<html>\x1b[31m\xff" + rng.randbytes(size))[:size]
    code = rng.choice([400, 403, 405])
    # mended: a loopback registry's /v2/ is asked again, and a blob upload
    # refused otherwise than for the credentials starts again in a new session
    upload = not run.pull and "/blobs/uploads/" in (match if isinstance(match, str) else match[0])
    mended = match == "GET /v2/ " or (upload and code != 403)
    return Plan([dict(match=match, nth=nth, action="status", status=code, body=body)],
                expect="ok" if mended else "fail", check=lambda err: str(code) in err and _sanitised(err))


def wrong_bytes(run, rng):
    if run.pull:
        match, size = run.blob_get(rng)
        return Plan([dict(match=match, action="corrupt", at=rng.randrange(size), times=1000)],
                    expect="fail", check=lambda err: "does not match its digest" in err)
    match, size = run.blob_put(rng)
    return Plan([dict(match=match, action="corrupt_request_at", at=rng.randrange(size), times=1000)],
                expect="fail", check=lambda err: "DIGEST_INVALID" in err)


def long_body(run, rng):
    extra = rng.choice([1, 100, 65536, 1 << 20])
    if run.pull:
        match, size = run.blob_get(rng)
        return Plan([dict(match=match, action="long", extra=extra, times=1000)], expect="fail",
                    check=lambda err: "larger than its descriptor's size" in err)
    # a success answer with a body nobody asked for, of any size
    match = rng.choice([run.blob_put(rng)[0], f"PUT /v2/{run.repo}/manifests/"])
    return Plan([dict(match=match, action="long", extra=extra)])


def location_relative(run, rng):
    if run.pull:
        match, _ = run.blob_get(rng)
        return Plan([dict(match=match, action="redirect", location="relative")])
    return Plan([dict(match=f"POST /v2/{run.repo}/blobs/uploads/", nth=rng.randrange(len(run.m.blobs)),
                      action="relative_location")])


def location_missing(run, rng):
    if run.pull:
        match, _ = run.blob_get(rng)
        return Plan([dict(match=match, action="redirect", location="missing")], expect="fail",
                    check=lambda err: "307" in err)
    # every time: once would be mended by a new upload session
    return Plan([dict(match=f"POST /v2/{run.repo}/blobs/uploads/", nth=rng.randrange(len(run.m.blobs)),
                      action="drop_location", times=1000)], expect="fail",
                check=lambda err: "without a Location header" in err)


def location_other_host(run, rng):
    if run.pull:
        match, _ = run.blob_get(rng)
        return Plan([dict(match=match, action="redirect", to=run.m.other.host)])
    return Plan([dict(match=f"POST /v2/{run.repo}/blobs/uploads/", nth=rng.randrange(len(run.m.blobs)),
                      action="other_location", to=run.m.other.host)])


def other_host_challenges(run, rng):
    other = [dict(match="/v2/", action="status", status=401, times=1000,
                  body=b'{"errors":[{"code":"UNAUTHORIZED","message":"sign in"}]}',
                  add_headers=[("WWW-Authenticate", run.challenge())])]
    if run.pull:
        match, _ = run.blob_get(rng)
        return Plan([dict(match=match, action="redirect", to=run.m.other.host)], other=other,
                    expect="fail", check=lambda err: "401" in err)
    return Plan([dict(match=f"POST /v2/{run.repo}/blobs/uploads/", nth=rng.randrange(len(run.m.blobs)),
                      action="other_location", to=run.m.other.host)], other=other,
                expect="fail", check=lambda err: "401" in err)


def token_expires(run, rng):
    match, nth = run.any_request(rng)
    if match == "GET /v2/ ":
        match = f"/v2/{run.repo}/"
    return Plan([dict(match=match, nth=nth, if_header="Authorization", action="expire_token",
                      challenge=run.challenge("invalid_token"))])


def _after_a_reset(run, rng, on_resume):
    """A pull whose blob download is reset at a byte offset, and whose resume
    (the request with a Range) meets on_resume."""
    match, size = run.blob_get(rng)
    return Plan([dict(match=match, action="reset_at", at=rng.randrange(1, size)),
                 dict(match=match, if_header="Range", **on_resume)])


def _chunked(run, rng, on_patch, on_status=None):
    """A push in chunks whose Nth PATCH (N < 4) meets on_patch, and the upload
    status asked after it on_status."""
    chunk = max(1 << 20, run.m.layers[0][1] // 6)
    faults = [dict(match=f"PATCH /v2/{run.repo}/blobs/uploads/", nth=rng.randrange(4), **on_patch)]
    if on_status:
        faults.append(dict(match=f"GET /v2/{run.repo}/blobs/uploads/", **on_status))
    return Plan(faults, args=["--chunk-size", str(chunk)])


def status_416(run, rng):
    if run.pull:
        return _after_a_reset(run, rng, dict(action="status", status=416, body=b"range not satisfiable"))
    return _chunked(run, rng, dict(action="status", status=416,
                                   body=b'{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"out of order"}]}'))


def range_ignored(run, rng):
    if run.pull:
        return _after_a_reset(run, rng, dict(action="strip_range"))
    return _chunked(run, rng, dict(action="status", status=416, body=b"out of order"),
                    dict(action="drop_range"))


def wrong_content_range(run, rng):
    if run.pull:
        return _after_a_reset(run, rng, dict(action="shift_content_range"))
    return _chunked(run, rng, dict(action="stuck_range"))


def wrong_digest_header(run, rng):
    if run.pull:
        return Plan([dict(match=f"GET /v2/{run.repo}/manifests/v1", action="wrong_digest")])
    if rng.randrange(2):
        match, _ = run.blob_put(rng)
        return Plan([dict(match=match, action="wrong_digest")], expect="fail",
                    check=lambda err: "stored blob" in err)
    return Plan([dict(match=f"PUT /v2/{run.repo}/manifests/", nth=rng.randrange(2), action="wrong_digest")],
                expect="fail", check=lambda err: "stored manifest" in err)


def redirect_loop(run, rng):
    if run.pull:
        match, _ = run.blob_get(rng)
    else:
        match = f"HEAD /v2/{run.repo}/blobs/{rng.choice(run.m.blobs)[0]}"
    return Plan([dict(match=match, action="redirect", to=run.m.front.host, times=1000)], expect="fail",
                check=lambda err: "too many redirects" in err)


KINDS = {
    "reset-mid-body": _cut("reset_at", "reset_request_at"),
    "reset-before-answer": reset_before_answer,
    "lost-answer": lost_answer,
    "stall-before-answer": stall_before_answer,
    "stall-mid-body": _cut("stall_at", "stall_request_at", delay=LOW_SPEED_S + 1, seconds=STALL_S),
    "http-408": _status(408),
    "http-500": _status(500),
    "http-502": _status(502),
    "http-503": _status(503),
    "http-504": _status(504),
    "retries-exhausted": retries_exhausted,
    "429-retry-after-seconds": retry_after_seconds,
    "429-retry-after-date": retry_after_date,
    "retry-after-huge": retry_after_huge,
    "error-body-any-size": error_body_any_size,
    "error-body-4xx": error_body_4xx,
    "wrong-bytes": wrong_bytes,
    "short-body": _cut("short_at", "close_request_at"),
    "long-body": long_body,
    "location-relative": location_relative,
    "location-missing": location_missing,
    "location-other-host": location_other_host,
    "other-host-challenges": other_host_challenges,
    "token-expires": token_expires,
    "416": status_416,
    "range-ignored": range_ignored,
    "wrong-content-range": wrong_content_range,
    "wrong-digest-header": wrong_digest_header,
    "redirect-loop": redirect_loop,
}
assert len(KINDS) >= 24


# ---- the setting: a token registry, the front proxy, another host, one image ----

class Matrix:
    pass


def _token(ts, repo):
    return ts._issue(USER, [f"repository:{repo}:pull,push"], ts.service)["token"]


def _repo_of(path):
    rest = path.split("/v2/", 1)[1]
    for sep in ("/blobs/", "/manifests/", "/tags/"):
        if sep in rest:
            return rest.split(sep, 1)[0]
    return rest


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, kiln, figures):
    d = tmp_path_factory.mktemp("matrix")
    figures.count("registry: fault matrix kinds", len(KINDS))
    figures.count("registry: fault matrix image MiB", MIB)
    m = Matrix()
    m.ts = TokenServer(d / "tok", {USER: PASSWORD})
    m.reg = Registry(d / "reg", auth=m.ts.registry_auth())
    m.front = FaultProxy(m.reg.host)
    # the other host: serves what it is asked with its own credentials (a
    # CDN with signed URLs), and records whatever kiln sends it
    m.other = FaultProxy(m.reg.host, upstream_auth=lambda path: "Bearer " + _token(m.ts, _repo_of(path)))
    m.authfile = d / "auth.json"
    cred = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    m.authfile.write_text(json.dumps({"auths": {h: {"auth": cred} for h in (m.reg.host, m.front.host)}}))
    m.layout = d / "image"
    layers = []
    for i, size in enumerate(layer_sizes(MIB)):
        # incompressible and unlike any other run's, made quickly
        block = os.urandom(1 << 20)
        data = b"".join(block[j * 4099 % len(block):] + block[:j * 4099 % len(block)]
                        for j in range(size >> 20))
        layers.append({f"layer{i}.bin": data, f"small{i}.txt": b"%d\n" % i})
    m.digest = imagegen.make_image(m.layout, "v1", layers, compression="none")
    del layers, data, block  # 256 MiB in the slow suite: the layout has them
    man = json.loads((m.layout / "blobs" / "sha256" / m.digest.split(":")[1]).read_bytes())
    m.layers = [(l["digest"], l["size"]) for l in man["layers"]]
    m.blobs = m.layers + [(man["config"]["digest"], man["config"]["size"])]
    m.manifest = man
    kiln.run("copy", "--authfile", m.authfile, f"oci:{m.layout}:v1", m.reg.ref("matrix/src", "v1"))
    # a clean run through the proxy each way, without faults
    for direction in ("pull", "push"):
        p = _copy(kiln, m, direction, "matrix/clean", d / "clean-out", [])
        assert p.returncode == 0 and p.stdout.strip() == m.digest, p.stderr
    yield m
    m.front.stop()
    m.other.stop()
    m.reg.stop()
    m.ts.stop()


def _copy(kiln, m, direction, repo, out, args):
    if direction == "pull":
        src, dst = f"{m.front.host}/matrix/src:v1", f"oci:{out}:v1"
    else:
        src, dst = f"oci:{m.layout}:v1", f"{m.front.host}/{repo}:v1"
    return kiln.run("copy", "--authfile", m.authfile, *args, src, dst, check=False, env=ENV, timeout=900)


def _hash_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_layout(kiln, out, ok):
    """Every blob file hashes to its name; the layout checks clean."""
    blobs = out / "blobs" / "sha256"
    if blobs.is_dir():
        for p in blobs.iterdir():
            if p.name.startswith("."):
                continue  # a writer's temp file, never under a blob's name
            assert _hash_file(p) == p.name, f"unverified blob stored: {p.name}"
    if ok:
        kiln.run("fsck", "--deep", f"oci:{out}")
    elif (out / "index.json").exists():
        kiln.run("fsck", f"oci:{out}")


def _check_registry(m, repo, ok):
    """The tag is missing or names the image, complete."""
    tok = "Bearer " + _token(m.ts, repo)
    st, h, _ = m.reg.api(f"/v2/{repo}/manifests/v1", auth=tok,
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    if not ok and st == 404:
        return
    assert st == 200, f"tag lookup answered {st}"
    assert h["Docker-Content-Digest"] == m.digest
    for d, size in m.blobs:
        st, h, _ = m.reg.api(f"/v2/{repo}/blobs/{d}", method="HEAD", auth=tok)
        assert st == 200 and int(h["Content-Length"]) == size, f"tag on an incomplete image: {d} {st}"


@pytest.mark.parametrize("seed", range(SEEDS))
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("direction", ["pull", "push"])
def test_fault_matrix(kiln, matrix, figures, direction, kind, seed, tmp_path):
    m = matrix
    repo = "matrix/src" if direction == "pull" else f"matrix/{kind}-{seed}"
    run = Run(m, direction, repo)
    plan = KINDS[kind](run, random.Random(f"{kind}/{direction}/{seed}"))
    for proxy, faults in ((m.front, plan.faults), (m.other, plan.other)):
        with proxy.lock:
            proxy.faults = faults
            proxy.fired, proxy.log, proxy.headers_seen = [], [], []
            proxy.expired.clear()
    out = tmp_path / "out"
    t0 = time.monotonic()
    p = _copy(kiln, m, direction, repo, out, plan.args)
    elapsed = time.monotonic() - t0  # shown on failure, never asserted
    fired = len(m.front.fired) + len(m.other.fired)
    summary = f"{kind} {direction} seed {seed}: exit {p.returncode}, {elapsed:.1f} s, fired {m.front.fired}\n{p.stderr}"

    assert p.returncode >= 0, summary  # never a signal
    assert "Sanitizer" not in p.stderr and "runtime error:" not in p.stderr, summary
    assert fired >= 1, "the fault never fired: " + summary
    errs = [l for l in p.stderr.splitlines() if l.startswith("kiln: error:")]
    figures.count("registry: fault matrix runs ending with " +
                  ("the right digest" if p.returncode == 0 else "one clean error"))
    if p.returncode == 0:
        assert plan.expect in ("ok", "either"), "expected a failure: " + summary
        assert p.stdout.strip() == m.digest, summary
        assert not errs, summary
    else:
        assert plan.expect in ("fail", "either"), "expected success: " + summary
        assert len(errs) == 1, "not one error line: " + summary
        if plan.check:
            assert plan.check(errs[0]), "unexpected error: " + summary
    if direction == "pull":
        _check_layout(kiln, out, p.returncode == 0)
    else:
        _check_registry(m, repo, p.returncode == 0)
    # credentials never reach the other host
    leaked = [(meth, path) for meth, path, h in m.other.headers_seen
              if any(k.lower() == "authorization" for k in h)]
    assert not leaked, f"Authorization sent to the other host: {leaked}"
    # the budget: bounded retries, and no wait beyond the fault's own cost
    retries = p.stderr.count("kiln: retry:")
    assert retries <= (RETRIES + 1) * (RESTARTS + 1) * max(1, fired), summary
    # no wait beyond the fault's own cost: the waits kiln announces (backoff,
    # Retry-After) are summed, not the wall clock, which a busy machine stretches
    waits = sum(int(w) for w in re.findall(r"retry \d+ in (\d+) ms", p.stderr))
    budget = 1000 * plan.delay * max(1, min(fired, RETRIES)) + BACKOFF_MAX_MS * retries
    assert waits <= budget, f"waited {waits} ms, budget {budget} ms: " + summary
    shutil.rmtree(out, ignore_errors=True)  # 1160 layouts of 256 MiB would fill the disk
