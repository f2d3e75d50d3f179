"""Maintainer scripts of debs layers run in the sandbox (issue #15): the
configure step above a debs layer runs the image's own dpkg --configure -a.

The base is a real Debian 12 root filesystem (mmdebstrap minbase with gcc,
scripts/setup.sh), the packages upstream linnaeus's exact apt list and its
real dependencies (real .debs from Debian with their control data, also
fetched by setup.sh) served from a local signed mirror.  One image is built
for the module and every check reads it."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import tarfile
import tempfile

import pytest

from conftest import run
from recipes_helpers import (apt_simulate, dpkg_status_versions, gpg_key, make_deb, mirror_of,
                             write_recipe)

CACHE = pathlib.Path(os.environ.get("KILN_TEST_ROOTFS_DIR", "/var/cache/kiln-test"))
ROOTFS = CACHE / "bookworm-gcc.tar"
LINNAEUS_DEBS = pathlib.Path(os.environ.get("KILN_TEST_LINNAEUS_DEBS_DIR",
                                            CACHE / "linnaeus-debs"))
# upstream linnaeus's Dockerfile, apt-get install --no-install-recommends
UPSTREAM = ["build-essential", "git", "python3.11", "python3.11-dev", "python3.11-venv",
            "python3-pip", "curl", "unzip", "libglib2.0-0", "libsm6", "libxext6",
            "libfontconfig1", "libxrender1", "libgl1-mesa-glx"]
EXIT_INVALID, EXIT_UNSUPPORTED, EXIT_STEP = 3, 9, 11


def inputs():
    debs = sorted(LINNAEUS_DEBS.glob("*.deb"))
    if not ROOTFS.is_file() or len(debs) < 50:
        pytest.fail(f"{ROOTFS} or the .debs under {LINNAEUS_DEBS} are missing: run scripts/setup.sh")
    return debs


@pytest.fixture(scope="module")
def shared():
    """A directory every user can enter, with a short path (podman's runroot)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="kcfg-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def base(kiln, shared):
    """oci:DIR:deb, the Debian root filesystem as one layer."""
    inputs()
    lay = shared / "base"
    kiln.run("append", "scratch", "--layer", f"{ROOTFS}:/", "-t", f"oci:{lay}:deb",
             "--cache", shared / "import-cache", env={"SOURCE_DATE_EPOCH": "0"})
    return f"oci:{lay}:deb"


@pytest.fixture(scope="module")
def mirror(shared):
    return mirror_of(shared / "linnaeus", inputs())


def debs_layer(name, packages, mirror_dir, **extra):
    return {"name": name, "kind": "debs", **extra, "apt": [
        {"mirror": str(mirror_dir), "suite": "bookworm", "components": ["main"],
         "keyring": str(gpg_key().keyring), "packages": packages}]}


def recipe(d, base_ref, layers, cmd=None):
    d.mkdir(parents=True, exist_ok=True)
    doc = {"recipe": 1, "name": "configure", "base": base_ref, "layers": layers,
           "tag": {"repository": "example.invalid/configure", "tag": "v1"}}
    if cmd:
        doc["config"] = {"cmd": cmd}
    return write_recipe(d / "r.json", doc)


def build(kiln, r, out, cache, check=True, env=None):
    p = kiln.run("build", r, "--output", f"oci:{out}", "--cache", cache, "--json", check=False,
                 env={"SOURCE_DATE_EPOCH": "0", **(env or {})}, timeout=900)
    if check:
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout), p.stderr
    return p


def manifest(layout):
    idx = json.loads((layout / "index.json").read_text())
    m = idx["manifests"][0]
    return m["digest"], json.loads((layout / "blobs/sha256" / m["digest"][7:]).read_text())


def blob(layout, digest):
    return layout / "blobs/sha256" / digest[7:]


def in_image(kiln, image, script, cache):
    """sh -c script in the image (kiln run, no network): (status, output)."""
    p = kiln.run("run", image, "--cache", cache, "--", "sh", "-c", script, check=False,
                 timeout=600)
    return p.returncode, p.stdout + p.stderr


@pytest.fixture(scope="module")
def linnaeus(kiln, shared, base, mirror):
    """Upstream's apt set as one debs layer on the real base, built with a
    cold cache: (dir, recipe, --json result, stderr)."""
    d = shared / "linnaeus-build"
    r = recipe(d, base, [debs_layer("sys", UPSTREAM, mirror)])
    res, err = build(kiln, r, d / "out", d / "cache")
    return d, r, res, err


# ---- the plan ----

def test_dry_run_shows_the_configure_step(kiln, tmp_path, mirror):
    r = recipe(tmp_path, "oci:/nowhere:x", [debs_layer("sys", ["jq"], mirror),
                                           debs_layer("off", ["jq"], mirror, configure=False),
                                           debs_layer("on", ["jq"], mirror, configure=True)])
    plan = json.loads(kiln.run("build", r, "--dry-run", "--json").stdout)
    layers = [(l["name"], l["kind"], l.get("configures"), l.get("when")) for l in plan["layers"]]
    when = "the base has a dpkg database and the sandbox works"
    assert layers == [("sys", "debs", None, None), ("sys/configure", "run", "sys", when),
                      ("off", "debs", None, None), ("on", "debs", None, None),
                      ("on/configure", "run", "on", None)]
    assert plan["layers"][1]["params"]["command"] == ["dpkg", "--configure", "-a"]
    assert plan["layers"][1]["params"]["network"] is False
    text = kiln.run("build", r, "--dry-run").stdout
    assert "sys/configure: run" in text and f"dpkg --configure -a in the image (when {when})" in text


def test_a_layer_named_like_a_configure_step_is_refused(kiln, tmp_path, mirror):
    r = recipe(tmp_path, "oci:/nowhere:x", [
        debs_layer("sys", ["jq"], mirror),
        {"name": "sys/configure", "kind": "files", "files": []}])
    _, err = kiln.fails("build", r, "--dry-run", code=EXIT_INVALID)
    assert "'sys/configure'" in err and "configure step" in err


# ---- upstream's apt set, configured ----

def test_the_resolved_set_is_what_apt_get_installs(kiln, linnaeus, mirror, shared, tmp_path):
    d, _, res, _ = linnaeus
    image = f"oci:{d / 'out'}:v1"
    status, out = in_image(kiln, image, "cat /var/lib/dpkg/status", shared / "run-cache")
    assert status == 0, out
    base_status = tmp_path / "base-status"
    with tarfile.open(ROOTFS) as t:
        base_status.write_bytes(t.extractfile("./var/lib/dpkg/status").read())
    before = dpkg_status_versions(base_status.read_text())
    now = dpkg_status_versions(out)
    added = {k: v for k, v in now.items() if before.get(k) != v}
    want = apt_simulate(tmp_path, mirror, base_status, UPSTREAM)
    assert len(want) > 50 and added == want


CHECKS = r"""
set -e
echo "audit:[$(dpkg --audit)]"
dpkg -s python3.11 | grep '^Status:'
apt-get check >/dev/null && echo apt-check-ok
ldconfig -p | grep -q 'libGL.so.1 ' && echo ldconfig-has-libGL
python3.11 -c 'import ssl, sqlite3, venv, ensurepip; print("python-ok", ssl.OPENSSL_VERSION_INFO[0])'
pip3 --version | cut -d' ' -f1
git --version | cut -d' ' -f1,2
printf '#include <iostream>\nint main() { std::cout << "cxx-ok" << std::endl; }\n' > /tmp/t.cc
g++ -O1 -o /tmp/t /tmp/t.cc && /tmp/t
"""

WANT = ["audit:[]", "Status: install ok installed", "apt-check-ok", "ldconfig-has-libGL",
        "python-ok 3", "pip", "git version", "cxx-ok"]


def test_dpkg_apt_and_the_programs_agree_in_the_image(kiln, linnaeus, shared):
    d, _, res, _ = linnaeus
    assert [(l["name"], l["state"]) for l in res["layers"]] == [("sys", "built"),
                                                               ("sys/configure", "built")]
    status, out = in_image(kiln, f"oci:{d / 'out'}:v1", CHECKS, shared / "run-cache")
    assert status == 0, out
    assert [l for l in out.splitlines() if l] == WANT, out


def test_podman_with_runc_runs_the_image(linnaeus):
    d = linnaeus[0]
    if not shutil.which("podman"):
        pytest.skip("podman is not installed (scripts/setup.sh installs it)")
    # a short runroot, and a layout path podman accepts as an image name
    while True:
        short = pathlib.Path(tempfile.mkdtemp(prefix="kp-"))
        if re.fullmatch(r"kp-[a-z0-9]+", short.name):
            break
        short.rmdir()
    try:
        image = short / "image"
        shutil.copytree(d / "out", image)
        # overlay as root (a third of vfs's time on this image), vfs otherwise
        driver = "overlay" if os.geteuid() == 0 else "vfs"
        p = run("podman", "--root", short / "s", "--runroot", short / "r", "--storage-driver",
                driver, "--runtime", "runc", "run", "--rm", "--network", "none",
                "--ulimit", "nofile=1024:4096", "--ulimit", "nproc=4096:4096",
                f"oci:{image}:v1", "sh", "-c", CHECKS, check=False)
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert [l for l in p.stdout.splitlines() if l] == WANT, p.stdout


def test_the_configure_layer_holds_what_the_scripts_did(linnaeus):
    d = linnaeus[0]
    _, m = manifest(d / "out")
    config = json.loads(blob(d / "out", m["config"]["digest"]).read_text())
    assert config["history"][-1]["created_by"] == "kiln build: dpkg --configure -a (debs layer 'sys')"
    with tarfile.open(blob(d / "out", m["layers"][-1]["digest"])) as t:
        members = {e.name.rstrip("/"): e for e in t.getmembers()}
    # what postinst scripts and triggers made
    for path in ("etc/ld.so.cache", "etc/alternatives/c++", "usr/bin/c++", "var/lib/dpkg/status",
                 "etc/ssl/certs/ca-certificates.crt", "var/cache/debconf/passwords.dat"):
        assert path in members, path
    # modes as the scripts set them; owners as every layer has them
    assert members["var/cache/debconf/passwords.dat"].mode == 0o600
    assert {(e.uid, e.gid) for e in members.values()} == {(0, 0)}
    # nothing that depends on when or where it ran
    for path in ("var/log/dpkg.log", "var/log/alternatives.log", "var/cache/ldconfig/aux-cache",
                 "var/lib/dpkg/status-old", "var/lib/dpkg/lock", "var/lib/dpkg/lock-frontend",
                 "var/lib/dpkg/triggers/Lock", "var/cache/debconf/config.dat-old", "proc", "dev"):
        assert path not in members, path
    assert {e.mtime for e in members.values()} == {0}


def test_a_rebuild_is_a_cache_hit_with_the_same_digest(kiln, linnaeus):
    d, r, res, _ = linnaeus
    again, _ = build(kiln, r, d / "out2", d / "cache")
    assert [l["state"] for l in again["layers"]] == ["cached", "cached"]
    assert again["digest"] == res["digest"]


def test_a_cold_rebuild_gives_the_same_digest(kiln, linnaeus):
    """Determinism: the same recipe on another cache (another unpack of
    the base, other inode numbers, another clock) gives the same image."""
    d, r, res, _ = linnaeus
    cold, _ = build(kiln, r, d / "out-cold", d / "cache-cold")
    assert [l["state"] for l in cold["layers"]] == ["built", "built"]
    assert [l["digest"] for l in cold["layers"]] == [l["digest"] for l in res["layers"]]
    assert cold["digest"] == res["digest"]


# ---- small packages: scripts, triggers, failures ----

@pytest.fixture(scope="module")
def hooks(shared):
    """Packages whose scripts leave marks: kiln-watch is interested in a
    directory (a file trigger) and counts its postinst runs; kiln-drop
    ships a file there; kiln-bad's postinst fails."""
    d = shared / "hooks"
    watch = make_deb(d, "kiln-watch", {"usr/share/kiln-watch/README": b"watched\n"},
                     postinst='#!/bin/sh\necho "$1 $2" >> /var/lib/kiln-watch.log\n',
                     triggers="interest-noawait /usr/share/kiln-watch/drop\n")
    drop = make_deb(d, "kiln-drop", {"usr/share/kiln-watch/drop/x": b"x\n"})
    bad = make_deb(d, "kiln-bad", {"usr/share/kiln-bad/f": b"f\n"},
                   postinst="#!/bin/sh\necho 'kiln-bad: cannot set up the frobnicator' >&2\nexit 1\n")
    return mirror_of(d, [watch, drop, bad])


def test_a_file_trigger_of_a_layer_below_runs_once_per_activation(kiln, shared, base, hooks):
    d = shared / "triggers"
    r = recipe(d, base, [debs_layer("watch", ["kiln-watch"], hooks),
                         debs_layer("drop", ["kiln-drop"], hooks)],
               cmd=["cat", "/var/lib/kiln-watch.log"])
    res, _ = build(kiln, r, d / "out", d / "cache")
    assert [l["name"] for l in res["layers"]] == ["watch", "watch/configure", "drop",
                                                  "drop/configure"]
    status, out = in_image(kiln, f"oci:{d / 'out'}:v1",
                           "cat /var/lib/kiln-watch.log; dpkg --audit; "
                           "dpkg -s kiln-watch kiln-drop | grep ^Status",
                           shared / "run-cache")
    assert status == 0, out
    # configured once by its own step; triggered by the layer above
    assert out.splitlines() == ["configure ", "triggered /usr/share/kiln-watch/drop",
                                "Status: install ok installed", "Status: install ok installed"]


def test_configure_false_keeps_the_scripts_for_later(kiln, shared, base, hooks):
    d = shared / "kept"
    r = recipe(d, base, [debs_layer("watch", ["kiln-watch"], hooks, configure=False)])
    res, _ = build(kiln, r, d / "out", d / "cache")
    assert [l["name"] for l in res["layers"]] == ["watch"]
    status, out = in_image(kiln, f"oci:{d / 'out'}:v1",
                           "dpkg -s kiln-watch | grep ^Status; test -e /var/lib/kiln-watch.log "
                           "|| echo no-log; dpkg --configure -a >/dev/null && cat /var/lib/kiln-watch.log",
                           shared / "run-cache")
    assert status == 0, out
    assert out.splitlines() == ["Status: install ok unpacked", "no-log", "configure "]


def test_a_failing_postinst_fails_the_build_naming_the_package(kiln, shared, base, hooks):
    d = shared / "bad"
    r = recipe(d, base, [debs_layer("sys", ["kiln-bad"], hooks)])
    p = build(kiln, r, d / "out", d / "cache", check=False)
    assert p.returncode == EXIT_STEP, p.stderr
    errs = [l for l in p.stderr.splitlines() if l.startswith("kiln: error:")]
    assert len(errs) == 1, p.stderr
    assert "layer 'sys/configure'" in errs[0] and "package 'kiln-bad'" in errs[0]
    assert "post-installation script subprocess returned error exit status 1" in errs[0]
    assert "kiln-bad: cannot set up the frobnicator" in errs[0]
    # nothing half-written: no image, no layer of the failed step in the cache
    assert not (d / "out").exists()
    assert not list((d / "cache").glob("run/.tmp-*"))


def userns_off(kiln, *args):
    """kiln in a user namespace of the test's own whose limit for new ones is 0."""
    return run("unshare", "-Ur", "sh", "-c",
               'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh",
               kiln.path, *map(str, args), check=False)


def test_without_user_namespaces_the_default_keeps_the_scripts(kiln, shared, base, hooks):
    d = shared / "nouserns"
    r = recipe(d, base, [debs_layer("watch", ["kiln-watch"], hooks)])
    p = userns_off(kiln, "build", r, "--output", f"oci:{d / 'out'}:v1", "--cache", d / "cache",
                   "--json")
    assert p.returncode == 0, p.stderr
    assert [l["name"] for l in json.loads(p.stdout)["layers"]] == ["watch"]
    notes = [l for l in p.stderr.splitlines() if "maintainer scripts not run" in l]
    assert len(notes) == 1 and "user.max_user_namespaces is 0" in notes[0], p.stderr
    assert "watch" in notes[0]


def test_without_user_namespaces_configure_true_names_the_setting(kiln, shared, base, hooks):
    d = shared / "nouserns-on"
    r = recipe(d, base, [debs_layer("watch", ["kiln-watch"], hooks, configure=True)])
    p = userns_off(kiln, "build", r, "--output", f"oci:{d / 'out'}:v1", "--cache", d / "cache")
    assert p.returncode == EXIT_UNSUPPORTED, p.stderr
    errs = [l for l in p.stderr.splitlines() if l.startswith("kiln: error:")]
    assert len(errs) == 1, p.stderr
    assert "'watch'" in errs[0] and '"configure": true' in errs[0]
    assert "user.max_user_namespaces is 0" in errs[0]


def test_configure_true_needs_a_base_with_dpkg(kiln, tmp_path, hooks):
    r = recipe(tmp_path, "scratch", [debs_layer("watch", ["kiln-watch"], hooks, configure=True)])
    p = build(kiln, r, tmp_path / "out", tmp_path / "cache", check=False)
    assert p.returncode == EXIT_INVALID, p.stderr
    assert "no dpkg database" in p.stderr and "'watch'" in p.stderr
    # the default on such a base: no step, the distroless status.d
    r = recipe(tmp_path / "d", "scratch", [debs_layer("watch", ["kiln-watch"], hooks)])
    res, _ = build(kiln, r, tmp_path / "out2", tmp_path / "cache")
    assert [l["name"] for l in res["layers"]] == ["watch"]


def test_an_unchanged_build_with_a_configure_step_is_skipped(kiln, shared, base, hooks, registry):
    """--skip-if-built: the configure step's key is its command, so the
    input tag is known before anything is built."""
    d = shared / "skip"
    d.mkdir()
    r = write_recipe(d / "r.json", {
        "recipe": 1, "name": "skip", "base": base,
        "layers": [debs_layer("watch", ["kiln-watch"], hooks)],
        "tag": {"repository": f"{registry.host}/configure/skip", "tag": "v1"}})
    args = ["build", r, "--push", "--skip-if-built", "--json"]
    env = {"SOURCE_DATE_EPOCH": "0"}
    first = json.loads(kiln.run(*args, "--cache", d / "cache", env=env, timeout=900).stdout)
    assert first["skipped"] is False
    assert [l["name"] for l in first["layers"]] == ["watch", "watch/configure"]
    second = json.loads(kiln.run(*args, "--cache", d / "other", env=env, timeout=900).stdout)
    assert second["skipped"] is True and second["layersBuilt"] == 0
    assert second["digest"] == first["digest"]


def test_a_builder_with_subordinate_ids_gives_the_same_digest(kiln, linnaeus, shared):
    """The maintainer scripts' chown calls are real under a /etc/subuid
    range (no seccomp filter) and a no-op under the single mapping; the
    layers record owners as 0:0 either way, so the digest is the same."""
    import pwd
    user = os.environ.get("KILN_TEST_SUBID_USER", "kiln-subid")
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        pytest.fail(f"no user {user}: run scripts/setup.sh (it makes one with subordinate ids)")
    d, r, res, _ = linnaeus
    own = shared / "subid-build"
    own.mkdir()
    # the test keyring's directory is root's own
    kr = pathlib.Path(gpg_key().keyring)
    kr.parent.chmod(0o755)
    kr.chmod(0o644)
    os.chown(own, pw.pw_uid, pw.pw_gid)
    p = subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups",
                        kiln.path, "build", str(r), "--output", f"oci:{own / 'out'}",
                        "--cache", str(own / "cache"), "--json"],
                       capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, SOURCE_DATE_EPOCH="0", HOME=str(own),
                                KILN_SANDBOX_IDMAP="subid"))
    assert p.returncode == 0, p.stderr
    sub = json.loads(p.stdout)
    assert [l["state"] for l in sub["layers"]] == ["built", "built"]
    assert [l["digest"] for l in sub["layers"]] == [l["digest"] for l in res["layers"]]
    assert sub["digest"] == res["digest"]
