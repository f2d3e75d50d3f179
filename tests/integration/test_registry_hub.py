"""Public registries under their real names, offline: Docker Hub (API at
registry-1.docker.io, anonymous tokens from auth.docker.io, RateLimit
headers, the pull limit's 429), NGC (nvcr.io, user $oauthtoken), and
containers-registries.conf.  Each registry is a TLS front on 127.0.0.1 with
a test CA that kiln reaches through KILN_TEST_CONNECT_TO; the fronts record
every Host they are asked for, docker.io and index.docker.io included."""
import base64
import json

import pytest

import imagegen
from registry_util import NamedRegistry

CUDA = "nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04"
HUB_429 = (b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate '
           b'limit. You may increase the limit by authenticating and upgrading: '
           b'https://www.docker.com/increase-rate-limit"}]}')


def authfile(path, key, user, password):
    tok = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {key: {"auth": tok}}}))
    return path


@pytest.fixture
def hub(tmp_path):
    h = NamedRegistry(tmp_path / "hub", "registry-1.docker.io", "auth.docker.io",
                      "registry.docker.io", {"pusher": "hub-secret-pw"},
                      decoys=("docker.io", "index.docker.io"))
    yield h
    h.stop()


class World:
    """kiln runs against one named registry with a private cache and no
    registries.conf but the test's."""

    def __init__(self, kiln, reg, tmp_path):
        self.kiln, self.reg, self.tmp = kiln, reg, tmp_path
        self.conf = tmp_path / "registries.conf"
        self.conf.write_text("")
        self.anon = tmp_path / "anon.json"
        self.anon.write_text("{}")
        self.env = dict(reg.env, XDG_CACHE_HOME=str(tmp_path / "xdg"),
                        CONTAINERS_REGISTRIES_CONF=str(self.conf), KILN_RETRY_BASE_MS="10")

    def run(self, *args, authfile=None, **kw):
        return self.kiln.run(*args, "--ca-file", self.reg.ca, "--authfile", authfile or self.anon,
                             env=self.env, **kw)

    def fails(self, *args, code=None, authfile=None):
        return self.kiln.fails(*args, "--ca-file", self.reg.ca, "--authfile",
                               authfile or self.anon, env=self.env, code=code)

    def forget(self):
        with self.reg.lock:
            self.reg.log.clear()
            self.reg.hosts.clear()
            self.reg.token_requests.clear()


def push_cuda(world, ref=f"docker.io/{CUDA}"):
    lay = world.tmp / "cuda-base"
    imagegen.make_image(lay, "base", [{"usr/": ("dir",), "usr/local/": ("dir",),
                                       "usr/local/cuda/": ("dir",),
                                       "usr/local/cuda/version.json": b'{"cuda":"12.8.0"}\n'}],
                        env=("PATH=/usr/bin", "CUDA_VERSION=12.8.0"))
    auth = authfile(world.tmp / "pusher.json", "https://index.docker.io/v1/", "pusher",
                    "hub-secret-pw")
    d = world.run("copy", "-q", f"oci:{lay}:base", ref, authfile=auth).stdout.strip()
    world.forget()
    return d


def recipe(tmp_path, base=CUDA):
    (tmp_path / "hello.txt").write_text("hello\n")
    doc = {"recipe": 1, "name": "hubapp", "base": base,
           "layers": [{"name": "files", "kind": "files",
                       "files": [{"src": "hello.txt", "dest": "/opt/hello.txt"}]}],
           "tag": {"repository": "example.invalid/hubapp", "tag": "v1"}}
    p = tmp_path / "hubapp.json"
    p.write_text(json.dumps(doc))
    return p


def test_hub_build_pulls_through_registry_1_with_an_anonymous_token(kiln, hub, tmp_path,
                                                                    figures):
    w = World(kiln, hub, tmp_path)
    push_cuda(w)
    out = tmp_path / "out"
    res = json.loads(w.run("build", recipe(tmp_path), "--output", f"oci:{out}", "--cache",
                           tmp_path / "c", "--json").stdout)
    assert res["digest"].startswith("sha256:")
    figures.zero("registry: requests to docker.io itself in a Docker Hub build",
                 sum(h in ("docker.io", "index.docker.io") for h in hub.hosts))
    # the Hub's flow: ping, challenge, an anonymous pull token, manifest, config
    assert set(hub.hosts) == {"registry-1.docker.io", "auth.docker.io"}, hub.hosts
    assert hub.log[0][:3] == ("GET", "/v2/", 401)
    toks = hub.token_requests
    assert toks and all(t["user"] is None for t in toks)
    assert toks[0]["query"]["scope"] == ["repository:nvidia/cuda:pull"]
    assert toks[0]["query"]["service"] == ["registry.docker.io"]
    assert [l for l in hub.log if l[0] == "GET" and "/manifests/12.8.0" in l[1]]
    assert [l for l in hub.log if l[0] == "GET" and "/blobs/sha256:" in l[1]]
    # the user-facing name stays docker.io's
    man = json.loads(kiln.run("inspect", "--raw", f"oci:{out}:v1").stdout)
    assert man["annotations"]["org.opencontainers.image.base.name"] == CUDA
    assert "registry-1" not in json.dumps(man)


def test_hub_manifest_gets_once_per_base(kiln, hub, tmp_path, figures):
    """The Hub counts manifest GETs against the pull limit (HEADs are free):
    a base pinned by digest is fetched once, then read from the cache; an
    unpinned one costs a HEAD."""
    w = World(kiln, hub, tmp_path)
    push_cuda(w)
    r = recipe(tmp_path)
    w.run("lock", r)
    assert len(hub.manifest_requests("GET")) == 1
    w.forget()
    w.env["XDG_CACHE_HOME"] = str(tmp_path / "fresh-runner")

    def build():
        w.forget()
        w.run("build", r, "--output", f"oci:{tmp_path}/out", "--cache", tmp_path / "c")
        return len(hub.manifest_requests("GET")), len(hub.manifest_requests("HEAD"))

    assert build() == (1, 0)       # a fresh runner: one GET by digest
    later = [build(), build()]
    figures.zero("registry: Docker Hub manifest GETs by locked builds after the first",
                 sum(g for g, _ in later))
    assert later == [(0, 0), (0, 0)]  # pinned and kept: nothing asked of the Hub
    (tmp_path / "hubapp.lock.json").unlink()
    assert build() == (0, 1)       # by tag: a HEAD finds the kept digest


def test_hub_pull_limit_429_is_one_line_and_a_limit_error(kiln, hub, tmp_path):
    w = World(kiln, hub, tmp_path)
    push_cuda(w)
    hub.add(match="GET /v2/nvidia/cuda/manifests/", action="status", status=429, body=HUB_429,
            add_headers=[("Content-Type", "application/json"),
                         ("RateLimit-Limit", "100;w=21600"), ("RateLimit-Remaining", "0;w=21600")],
            times=100)
    p, err = w.fails("copy", f"docker.io/{CUDA}", f"oci:{tmp_path}/out:x", code=8)
    assert "registry 'docker.io' is rate limiting requests" in err
    assert "TOOMANYREQUESTS: You have reached your pull rate limit" in err
    assert "limit 100 per 21600 s" in err
    assert "kiln login docker.io" in err and "--mirror docker.io=HOST" in err
    assert "pull-through cache" in err
    # waiting seconds does not lift the Hub's limit: asked once
    assert len(hub.manifest_requests("GET")) == 1
    assert "docker.io" not in hub.hosts and "index.docker.io" not in hub.hosts


@pytest.mark.parametrize("left,warned", [(5, True), (50, False)])
def test_hub_ratelimit_warns_once_below_10_percent(kiln, hub, tmp_path, left, warned):
    w = World(kiln, hub, tmp_path)
    push_cuda(w)
    hub.ratelimit = (100, left)
    p = w.run("copy", f"docker.io/{CUDA}", f"oci:{tmp_path}/out:x")
    lines = [l for l in p.stderr.splitlines() if "rate-limit window" in l]
    assert len(hub.manifest_requests("HEAD")) + len(hub.manifest_requests("GET")) >= 2
    if warned:
        assert lines == ["kiln: warning: registry 'docker.io': 5 of 100 manifest requests left "
                         "in its rate-limit window of 21600 s; log in ('kiln login docker.io') or "
                         "pull through a mirror ('--mirror docker.io=HOST') before it answers 429"]
    else:
        assert lines == []


def test_hub_mirror_maps_the_user_facing_name(kiln, hub, registry, tmp_path):
    w = World(kiln, hub, tmp_path)
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"m": b"from the mirror"}])
    d = kiln.run("copy", "-q", f"oci:{lay}:v1", registry.ref("hubcache/nvidia/cuda", "mirrored")).stdout.strip()
    p = w.run("copy", "-q", "--mirror", f"docker.io={registry.host}/hubcache",
              "docker.io/nvidia/cuda:mirrored", f"oci:{tmp_path}/out:x")
    assert p.stdout.strip() == d
    assert hub.hosts == []


def test_hub_login_keeps_docker_io_as_the_key(kiln, hub, tmp_path):
    w = World(kiln, hub, tmp_path)
    auth = tmp_path / "login.json"
    for name in ("docker.io", "index.docker.io"):
        kiln.run("login", name, "-u", "pusher", "--password-stdin", "--ca-file", hub.ca,
                 "--authfile", auth, input="hub-secret-pw\n", env=w.env)
    assert list(json.loads(auth.read_text())["auths"]) == ["https://index.docker.io/v1/"]
    assert set(hub.hosts) <= {"registry-1.docker.io", "auth.docker.io"}, hub.hosts
    assert any(t["user"] == "pusher" for t in hub.token_requests)


@pytest.fixture
def ngc(tmp_path):
    n = NamedRegistry(tmp_path / "ngc", "nvcr.io", "nvcr.io", "ngc",
                      {"$oauthtoken": "nvapi-test-key"}, token_path="/proxy_auth")
    yield n
    n.stop()


def test_ngc_login_with_oauthtoken_and_pull(kiln, ngc, tmp_path):
    w = World(kiln, ngc, tmp_path)
    auth = tmp_path / "ngc.json"
    p = kiln.run("login", "nvcr.io", "-u", "alice", "--password-stdin", "--authfile", auth,
                 input="nvapi-test-key\n", env=w.env, check=False)
    assert p.returncode == 2
    assert p.stderr.splitlines()[0] == ("kiln login: nvcr.io takes the user name '$oauthtoken' and "
                                        "an NGC API key as the password, not user 'alice'")
    assert not auth.exists() and ngc.hosts == []
    kiln.run("login", "nvcr.io", "-u", "$oauthtoken", "--password-stdin", "--ca-file", ngc.ca,
             "--authfile", auth, input="nvapi-test-key\n", env=w.env)
    assert "nvcr.io" in json.loads(auth.read_text())["auths"]
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"n": b"ngc"}])
    d = w.run("copy", "-q", f"oci:{lay}:v1", "nvcr.io/nvidia/pytorch:25.01-py3",
              authfile=auth).stdout.strip()
    assert w.run("copy", "-q", "nvcr.io/nvidia/pytorch:25.01-py3", f"oci:{tmp_path}/out:x",
                 authfile=auth).stdout.strip() == d
    assert set(ngc.hosts) == {"nvcr.io"}
    # login asks for an OAuth2 password grant first (POST, 404 here), as docker does
    assert {t["user"] for t in ngc.token_requests if t["method"] == "GET"} == {"$oauthtoken"}
    assert "nvapi-test-key" not in p.stdout + p.stderr


def test_ghcr_anonymous_pull_and_a_github_token_with_any_user(kiln, tmp_path):
    g = NamedRegistry(tmp_path / "ghcr", "ghcr.io", "ghcr.io", "ghcr.io", {},
                      any_user_token="ghs_test_github_token")
    try:
        w = World(kiln, g, tmp_path)
        auth = tmp_path / "ghcr.json"
        for actor in ("github-actions[bot]", "someone-else"):
            p = kiln.run("login", "ghcr.io", "-u", actor, "--password-stdin", "--ca-file", g.ca,
                         "--authfile", auth, input="ghs_test_github_token\n", env=w.env)
            assert "ghs_test_github_token" not in p.stdout + p.stderr
        lay = tmp_path / "lay"
        imagegen.make_image(lay, "v1", [{"g": b"ghcr"}])
        d = w.run("copy", "-q", f"oci:{lay}:v1", "ghcr.io/frontierkodiak/linnaeus:v1",
                  authfile=auth).stdout.strip()
        w.forget()
        assert w.run("copy", "-q", "ghcr.io/frontierkodiak/linnaeus:v1",
                     f"oci:{tmp_path}/out:x").stdout.strip() == d
        toks = [t for t in g.token_requests if t["method"] == "GET"]
        assert toks and all(t["user"] is None for t in toks)
        assert toks[0]["query"]["scope"] == ["repository:frontierkodiak/linnaeus:pull"]
        assert set(g.hosts) == {"ghcr.io"}
    finally:
        g.stop()


def test_test_resolve_knob_maps_a_name_to_127_0_0_1(kiln, registry, tmp_path):
    """KILN_TEST_RESOLVE (curl's RESOLVE: the port stays) for names that
    keep their port; --insecure-registry lets the name use plain http."""
    port = registry.host.split(":")[1]
    name = f"registry.kiln-test.invalid:{port}"
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"r": b"resolved"}])
    env = {"KILN_TEST_RESOLVE": f"{name}:127.0.0.1", "http_proxy": "", "HTTP_PROXY": ""}
    d = kiln.run("copy", "-q", "--insecure-registry", name, f"oci:{lay}:v1", f"{name}/resolve/app:v1",
                 env=env).stdout.strip()
    st, _, _ = registry.api(f"/v2/resolve/app/manifests/{d}", method="HEAD",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 200
    kiln.fails("copy", "-q", "--insecure-registry", name, f"oci:{lay}:v1", f"{name}/resolve/app:v2",
               env={"KILN_RETRY_BASE_MS": "1", "KILN_TEST_RESOLVE": ""}, code=6)


# ---- containers-registries.conf ----

def test_registries_conf_mirrors_in_order_then_the_location(kiln, hub, registry, tmp_path):
    w = World(kiln, hub, tmp_path)
    d_hub = push_cuda(w)
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"m": b"mirror copy"}])
    d_mirror = kiln.run("copy", "-q", f"oci:{lay}:v1",
                        registry.ref(f"second/{CUDA.split(':')[0]}", CUDA.split(':')[1])).stdout.strip()
    w.conf.write_text(f"""# a CI runner's pull-through caches
unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "{registry.host}/first"    # empty: kiln moves on

[[registry.mirror]]
location = "{registry.host}/second"
""")
    out = tmp_path / "out"
    assert w.run("copy", "-q", f"docker.io/{CUDA}", f"oci:{out}:a").stdout.strip() == d_mirror
    assert hub.hosts == []
    # the image on no mirror: the location (the Hub) is asked
    w.run("copy", "-q", f"docker.io/{CUDA.split(':')[0]}@{d_hub}", f"oci:{out}:b")
    assert "registry-1.docker.io" in hub.hosts and "docker.io" not in hub.hosts
    # --mirror wins over the file
    w.forget()
    imagegen.make_image(lay, "v2", [{"m": b"command line"}])
    d_cli = kiln.run("copy", "-q", f"oci:{lay}:v2",
                     registry.ref(f"cli/{CUDA.split(':')[0]}", CUDA.split(':')[1])).stdout.strip()
    assert w.run("copy", "-q", "--mirror", f"docker.io={registry.host}/cli", f"docker.io/{CUDA}",
                 f"oci:{out}:c").stdout.strip() == d_cli
    assert hub.hosts == []


def test_registries_conf_blocked_is_refused_in_one_line(kiln, hub, tmp_path):
    w = World(kiln, hub, tmp_path)
    w.conf.write_text('[[registry]]\nprefix = "docker.io/nvidia"\nblocked = true\n')
    p, err = w.fails("copy", f"docker.io/{CUDA}", f"oci:{tmp_path}/out:x", code=7)
    assert err == (f"kiln: error: 'docker.io/nvidia/cuda' is blocked: '{w.conf}' sets "
                   "blocked = true for prefix 'docker.io/nvidia'")
    assert hub.hosts == [] and not (tmp_path / "out").exists()


def test_registries_conf_insecure_location(kiln, registry_factory, tmp_path):
    from registry_util import make_ca, make_server_cert
    ca, key = make_ca(tmp_path / "ca")
    reg = registry_factory(tls=make_server_cert(tmp_path / "ca", ca, key))
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"t": b"tls"}])
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{reg.host}"\ninsecure = true\n')
    env = {"CONTAINERS_REGISTRIES_CONF": str(conf)}
    kiln.fails("copy", f"oci:{lay}:v1", reg.ref("app", "v1"), code=6)
    kiln.run("copy", f"oci:{lay}:v1", reg.ref("app", "v1"), env=env)
    kiln.run("copy", reg.ref("app", "v1"), f"oci:{tmp_path}/out:x", env=env)


@pytest.mark.parametrize("text,msg", [
    ('[[registry]]\nprefix = "docker.io"\ninsecure = "yes"\n',
     "[[registry]] 1: 'insecure' must be true or false"),
    ('[[registry]]\nprefix = "docker.io"\nlocation = "x"\nlocation = "y"\n',
     ":4: duplicate key 'location'"),
])
def test_registries_conf_errors_name_the_file(kiln, tmp_path, text, msg):
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    p, err = kiln.fails("copy", "docker.io/library/ubuntu:22.04", f"oci:{tmp_path}/out:x",
                        env={"CONTAINERS_REGISTRIES_CONF": str(conf)}, code=3)
    assert err == f"kiln: error: {conf}{msg if msg.startswith(':') else ': ' + msg}"
