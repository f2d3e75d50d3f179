"""Authentication against the real registry: htpasswd Basic, Bearer tokens
from a token server written here (JWT signed with a key the registry trusts),
login/logout and the credentials file, scopes, and no secret in any output."""
import base64
import json
import os
import stat

import pytest

import imagegen
from registry_util import TokenServer, make_htpasswd

USER, PASSWORD = "ci-bot", "s3cret-Pa55-w0rd"


def _image(tmp_path):
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"a.txt": b"auth test " * 1000}])
    return lay


def _no_secret(*outputs):
    for o in outputs:
        assert PASSWORD not in o
        assert base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in o


@pytest.fixture
def basic_registry(registry_factory, tmp_path):
    return registry_factory(auth=("htpasswd", make_htpasswd(tmp_path / "htpasswd", USER, PASSWORD)))


def test_registry_basic_auth_push_needs_login(kiln, basic_registry, tmp_path):
    lay = _image(tmp_path)
    authfile = tmp_path / "auth.json"
    p, err = kiln.fails("copy", "--authfile", authfile, f"oci:{lay}:v1",
                        basic_registry.ref("app", "v1"), code=7)
    assert "kiln login" in err
    p, err = kiln.fails("login", "--authfile", authfile, basic_registry.host, "-u", USER,
                        "--password-stdin", input="wrong-password\n", code=7)
    assert not authfile.exists()
    p = kiln.run("login", "--authfile", authfile, basic_registry.host, "-u", USER,
                 "--password-stdin", input=PASSWORD + "\n")
    _no_secret(p.stdout, p.stderr)
    st = authfile.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    cfg = json.loads(authfile.read_text())
    assert base64.b64decode(cfg["auths"][basic_registry.host]["auth"]).decode() == f"{USER}:{PASSWORD}"
    p = kiln.run("copy", "--authfile", authfile, f"oci:{lay}:v1", basic_registry.ref("app", "v1"))
    _no_secret(p.stdout, p.stderr)
    # REGISTRY_AUTH_FILE is read too
    out = tmp_path / "out"
    p = kiln.run("copy", basic_registry.ref("app", "v1"), f"oci:{out}:v1",
                 env={"REGISTRY_AUTH_FILE": str(authfile)})
    kiln.run("fsck", f"oci:{out}")
    kiln.run("logout", "--authfile", authfile, basic_registry.host)
    assert basic_registry.host not in json.loads(authfile.read_text()).get("auths", {})
    kiln.fails("logout", "--authfile", authfile, basic_registry.host, code=5)


def test_registry_login_keeps_unknown_keys_and_docker_config(kiln, basic_registry, tmp_path):
    cfgdir = tmp_path / "docker"
    cfgdir.mkdir()
    (cfgdir / "config.json").write_text(json.dumps({
        "auths": {"other.example:5000": {"auth": base64.b64encode(b"a:b").decode()}},
        "psFormat": "table {{.ID}}", "experimental": "enabled"}))
    env = {"DOCKER_CONFIG": str(cfgdir)}
    kiln.run("login", basic_registry.host, "-u", USER, "--password-stdin", input=PASSWORD, env=env)
    cfg = json.loads((cfgdir / "config.json").read_text())
    assert cfg["psFormat"] == "table {{.ID}}" and cfg["experimental"] == "enabled"
    assert "other.example:5000" in cfg["auths"] and basic_registry.host in cfg["auths"]
    lay = _image(tmp_path)
    kiln.run("copy", f"oci:{lay}:v1", basic_registry.ref("dc/app", "v1"), env=env)


def test_registry_credential_helper(kiln, basic_registry, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-kilntest"
    helper.write_text("#!/bin/sh\nread host\n"
                      f"echo '{{\"ServerURL\":\"'$host'\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n")
    helper.chmod(0o755)
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"credHelpers": {basic_registry.host: "kilntest"}}))
    env = {"PATH": f"{bindir}:{os.environ['PATH']}"}
    lay = _image(tmp_path)
    p = kiln.run("copy", "--authfile", authfile, f"oci:{lay}:v1", basic_registry.ref("h/app", "v1"),
                 env=env)
    _no_secret(p.stdout, p.stderr)
    # a helper name that could escape PATH lookups is refused
    authfile.write_text(json.dumps({"credHelpers": {basic_registry.host: "../x"}}))
    p, err = kiln.fails("copy", "--authfile", authfile, f"oci:{lay}:v1",
                        basic_registry.ref("h/app", "v2"), env=env)
    assert "credential helper" in err or "kiln login" in err


@pytest.fixture
def token_setup(registry_factory, tmp_path):
    def acl(user, repo):
        if user == USER:
            return {"pull"} if repo.startswith("readonly/") else {"pull", "push"}
        return {"pull"} if repo.startswith("public/") else set()

    ts = TokenServer(tmp_path / "token", {USER: PASSWORD}, acl=acl)
    reg = registry_factory(auth=ts.registry_auth())
    yield ts, reg
    ts.stop()


def test_registry_bearer_push_pull_and_scopes(kiln, token_setup, tmp_path):
    ts, reg = token_setup
    authfile = tmp_path / "auth.json"
    kiln.run("login", "--authfile", authfile, reg.host, "-u", USER, "--password-stdin",
             input=PASSWORD)
    lay = _image(tmp_path)
    p = kiln.run("copy", "--authfile", authfile, f"oci:{lay}:v1", reg.ref("team/app", "v1"))
    _no_secret(p.stdout, p.stderr)
    scopes = [s for r in ts.requests for s in r["query"].get("scope", [])]
    assert "repository:team/app:pull,push" in scopes
    assert all(r["user"] == USER for r in ts.requests if r["query"].get("scope"))
    out = tmp_path / "out"
    kiln.run("copy", "--authfile", authfile, reg.ref("team/app", "v1"), f"oci:{out}:v1")
    assert "repository:team/app:pull" in [s for r in ts.requests for s in r["query"].get("scope", [])]
    kiln.run("fsck", f"oci:{out}")
    # tokens are cached: one token request per scope, not one per blob
    n_push = sum(1 for r in ts.requests if "repository:team/app:pull,push" in r["query"].get("scope", []))
    assert n_push == 1, ts.requests


def test_registry_bearer_mount_asks_pull_on_source(kiln, token_setup, tmp_path):
    ts, reg = token_setup
    authfile = tmp_path / "auth.json"
    kiln.run("login", "--authfile", authfile, reg.host, "-u", USER, "--password-stdin",
             input=PASSWORD)
    lay = _image(tmp_path)
    kiln.run("copy", "--authfile", authfile, f"oci:{lay}:v1", reg.ref("src/app", "v1"))
    kiln.run("copy", "--authfile", authfile, reg.ref("src/app", "v1"), reg.ref("dst/app", "v1"))
    reqs = [r["query"].get("scope", []) for r in ts.requests]
    assert any("repository:dst/app:pull,push" in s and "repository:src/app:pull" in s for s in reqs), reqs


def test_registry_bearer_denied_push_is_an_auth_error(kiln, token_setup, tmp_path):
    ts, reg = token_setup
    authfile = tmp_path / "auth.json"
    kiln.run("login", "--authfile", authfile, reg.host, "-u", USER, "--password-stdin",
             input=PASSWORD)
    lay = _image(tmp_path)
    p, err = kiln.fails("copy", "--authfile", authfile, f"oci:{lay}:v1",
                        reg.ref("readonly/app", "v1"), code=7)
    assert "401" in err or "denied" in err.lower() or "unauthorized" in err.lower()
    _no_secret(p.stdout, p.stderr)
    # anonymous pull of a private repository: refused, clearly
    kiln.fails("copy", reg.ref("team/none", "v1"), f"oci:{tmp_path}/x:v1",
               env={"REGISTRY_AUTH_FILE": str(tmp_path / "empty.json")})


def test_registry_bearer_oauth_post_falls_back_to_get(kiln, token_setup, tmp_path):
    ts, reg = token_setup
    # an identity token makes kiln try the OAuth2 POST first; this server answers 404 to POST
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {reg.host: {
        "auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        "identitytoken": "refresh-123"}}}))
    lay = _image(tmp_path)
    kiln.run("copy", "--authfile", authfile, f"oci:{lay}:v1", reg.ref("oauth/app", "v1"))
    methods = [r["method"] for r in ts.requests]
    assert "POST" in methods and "GET" in methods


def test_registry_no_credentials_to_plain_http_realm_elsewhere(kiln, registry_factory, tmp_path):
    ts = TokenServer(tmp_path / "tok2", {USER: PASSWORD})
    try:
        auth = ts.registry_auth()
        # the realm names a host that is neither loopback nor --insecure-registry
        auth[1]["realm"] = "http://kiln-realm.invalid:1/token"
        reg = registry_factory(auth=auth)
        authfile = tmp_path / "auth.json"
        authfile.write_text(json.dumps({"auths": {reg.host: {
            "auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}))
        lay = _image(tmp_path)
        p, err = kiln.fails("copy", "--authfile", authfile, f"oci:{lay}:v1", reg.ref("r/app", "v1"),
                            code=7)
        assert "refusing token realm" in err and "plain http" in err
        _no_secret(p.stdout, p.stderr)
    finally:
        ts.stop()


def test_registry_credentials_in_a_reference_are_never_echoed(kiln, registry, tmp_path):
    for ref in (f"https://{USER}:{PASSWORD}@{registry.host}/x:v1",
                f"{USER}:{PASSWORD}@{registry.host}/x",
                f"{USER}:{PASSWORD}@{registry.host}"):
        p, err = kiln.fails("copy", ref, f"oci:{tmp_path}/o:v1")
        assert p.returncode in (3, 9)
        _no_secret(p.stdout, p.stderr)
        p, err = kiln.fails("copy", f"oci:{tmp_path}/none:v1", ref)
        _no_secret(p.stdout, p.stderr)


def test_registry_login_uses_oauth_password_grant(kiln, registry_factory, tmp_path):
    ts = TokenServer(tmp_path / "tok3", {USER: PASSWORD}, oauth=True)
    try:
        reg = registry_factory(auth=ts.registry_auth())
        authfile = tmp_path / "auth.json"
        p = kiln.run("login", "--authfile", authfile, reg.host, "-u", USER, "--password-stdin",
                     input=PASSWORD)
        _no_secret(p.stdout, p.stderr)
        grants = [r.get("grant") for r in ts.requests if r["method"] == "POST"]
        assert grants == ["password"]
        assert not [r for r in ts.requests if r["method"] == "GET"]
        kiln.fails("login", "--authfile", tmp_path / "bad.json", reg.host, "-u", USER,
                   "--password-stdin", input="wrong", code=7)
    finally:
        ts.stop()


# ---- a registry that echoes the request's Authorization in an error body ----

ECHO_BODIES = [
    '{"errors":[{"code":"DENIED","message":"refused header Authorization: {auth}"}]}',
    '<html>bad request, Authorization was {auth} ({cred})</html>',
]
B64 = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def _echo_run(kiln, proxy, authfile, repo, tmp_path, status, body):
    from registry_util import FaultProxy  # noqa: F401 (the proxy's actions)
    proxy.add(match=f"GET /v2/{repo}/manifests/v1", action="echo_auth", status=status, body=body,
              times=100)
    env = {"KILN_RETRY_BASE_MS": "50", "KILN_VERBOSE": "1"}
    p, err = kiln.fails("copy", "--retry-times", "1", "--authfile", authfile,
                        f"{proxy.host}/{repo}:v1", f"oci:{tmp_path}/out:v1", env=env)
    echoed = [h["Authorization"] for m, path, h in proxy.headers_seen
              if m == "GET" and "/manifests/v1" in path and "Authorization" in h]
    assert echoed, "the proxy echoed no Authorization"
    assert f"answered {status}" in err and "***" in err, err  # the echo reached the message, cut
    for a in echoed:
        cred = a.split(" ", 1)[1]
        assert cred not in p.stderr and cred.rstrip("=") not in p.stderr, p.stderr
    _no_secret(p.stdout, p.stderr)
    return echoed


@pytest.mark.parametrize("status", [400, 503])
@pytest.mark.parametrize("body", ECHO_BODIES, ids=["json", "html"])
def test_registry_echoed_basic_credentials_are_redacted(kiln, basic_registry, tmp_path, status, body):
    from registry_util import FaultProxy
    proxy = FaultProxy(basic_registry.host)
    try:
        authfile = tmp_path / "auth.json"
        authfile.write_text(json.dumps({"auths": {h: {"auth": B64}
                                                  for h in (basic_registry.host, proxy.host)}}))
        kiln.run("copy", "--authfile", authfile, f"oci:{_image(tmp_path)}:v1",
                 basic_registry.ref("echo/basic", "v1"))
        echoed = _echo_run(kiln, proxy, authfile, "echo/basic", tmp_path, status, body)
        assert all(a == "Basic " + B64 for a in echoed)
    finally:
        proxy.stop()


@pytest.mark.parametrize("status", [403, 500])
@pytest.mark.parametrize("body", ECHO_BODIES, ids=["json", "html"])
def test_registry_echoed_bearer_token_is_redacted(kiln, token_setup, tmp_path, status, body):
    from registry_util import FaultProxy
    ts, reg = token_setup
    proxy = FaultProxy(reg.host)
    try:
        authfile = tmp_path / "auth.json"
        authfile.write_text(json.dumps({"auths": {h: {"auth": B64} for h in (reg.host, proxy.host)}}))
        kiln.run("copy", "--authfile", authfile, f"oci:{_image(tmp_path)}:v1",
                 reg.ref("echo/bearer", "v1"))
        echoed = _echo_run(kiln, proxy, authfile, "echo/bearer", tmp_path, status, body)
        assert all(a.startswith("Bearer ") and len(a) > 40 for a in echoed)
    finally:
        proxy.stop()
