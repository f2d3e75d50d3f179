"""The rootless sandbox: kiln run, run layers in recipes, and what a step
cannot reach.  The image is a real Debian root filesystem (gcc, libc6-dev)
that scripts/setup.sh makes once per machine with mmdebstrap."""
import hashlib
import json
import os
import re
import pathlib
import select
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile

import pytest

from conftest import run

ROOTFS = pathlib.Path(os.environ.get("KILN_TEST_ROOTFS_DIR", "/var/cache/kiln-test")) / "bookworm-gcc.tar"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
HELLO = '#include <stdio.h>\nint main(void) { puts("hello from kiln"); return 0; }\n'
STEP = ("echo compiling; gcc -o /usr/local/bin/hello /kiln/inputs/0/hello.c"
        " && rm /etc/issue.net && echo added > /etc/added"
        " && mkdir -p /root/.cache/kiln && echo kept > /root/.cache/kiln/f")


@pytest.fixture(scope="session")
def shared_dir():
    """A directory every user can enter (pytest's own are 0700 root)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="kiln-sandbox-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def debian(kiln, shared_dir):
    """oci:DIR:deb, the Debian rootfs imported as one layer."""
    assert ROOTFS.is_file(), f"{ROOTFS} is missing: run scripts/setup.sh (it makes it with mmdebstrap)"
    lay = shared_dir / "deb"
    kiln.run("append", "scratch", "--layer", f"{ROOTFS}:/", "-t", f"oci:{lay}:deb",
             "--cache", shared_dir / "import-cache", env={"SOURCE_DATE_EPOCH": "0"})
    run("chmod", "-R", "a+rX", lay)
    return f"oci:{lay}:deb"


def world(d, base):
    """A recipe whose run layer compiles a C program with the image's gcc,
    deletes a base file and adds one; a files layer below it."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "src").mkdir(exist_ok=True)
    (d / "src" / "hello.c").write_text(HELLO)
    doc = {"recipe": 1, "name": "runapp", "base": base,
           "layers": [
               {"name": "notes", "kind": "files",
                "files": [{"src": "src/hello.c", "dest": "/opt/notes/hello.c"}]},
               {"name": "compile", "kind": "run", "command": ["sh", "-c", STEP],
                "env": {"GREETING": "hi"}, "inputs": ["src"], "cache": ["/root/.cache/kiln"]}],
           "config": {"cmd": ["/usr/local/bin/hello"]},
           "tag": {"repository": "example.invalid/runapp", "tag": "v1"}}
    (d / "r.json").write_text(json.dumps(doc))
    run("chmod", "-R", "a+rwX", d)
    return d / "r.json"


def build(kiln, recipe, out, cache, user=None, check=True):
    cmd = [kiln.path, "build", str(recipe), "--output", f"oci:{out}", "--cache", str(cache), "--json"]
    env = dict(os.environ, SOURCE_DATE_EPOCH="0", HOME=str(cache.parent))
    p = subprocess.run((user or []) + cmd, capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)
    return p


def layer_entries(layout, index=-1):
    """The names and types of a layer of the image in layout (tag v1)."""
    idx = json.loads((layout / "index.json").read_text())
    man = [m for m in idx["manifests"]
           if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "v1"][0]
    m = json.loads((layout / "blobs/sha256" / man["digest"].split(":")[1]).read_text())
    blob = layout / "blobs/sha256" / m["layers"][index]["digest"].split(":")[1]
    with tarfile.open(blob) as t:
        return {(e.name.rstrip("/"), "d" if e.isdir() else "f") for e in t.getmembers()}, man["digest"]


EXPECTED = {("etc", "d"), ("etc/.wh.issue.net", "f"), ("etc/added", "f"), ("usr", "d"),
            ("usr/local", "d"), ("usr/local/bin", "d"), ("usr/local/bin/hello", "f")}


@pytest.fixture(scope="session")
def root_build(kiln, debian, shared_dir):
    """The world built as root with a cold cache: (dir, recipe, --json result)."""
    d = shared_dir / "root-build"
    r = world(d, debian)
    return d, r, build(kiln, r, d / "out", d / "cache")


def test_run_layer_is_what_the_step_changed(kiln, root_build, tmp_path):
    d, r, res = root_build
    assert [l["state"] for l in res["layers"]] == ["built", "built"]
    entries, digest = layer_entries(d / "out")
    # exactly the changes: no /tmp copy-up, no mount points, no cache directory
    assert entries == EXPECTED, entries
    assert res["digest"] == digest
    # the cache directory persisted outside the image
    kept = list((d / "cache" / "run-cache").glob("*/f"))
    assert [p.read_text() for p in kept] == ["kept\n"]
    log = list((d / "cache" / "logs").glob("compile-*.log"))
    assert log and "compiling" in log[0].read_text()
    # umoci sees the same: the program runs, the deleted file is gone
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--rootless", "--image", f"{d / 'out'}:v1", bundle)
    rootfs = bundle / "rootfs"
    assert run(rootfs / "usr/local/bin/hello").stdout == "hello from kiln\n"
    assert not (rootfs / "etc/issue.net").exists() and (rootfs / "etc/issue").exists()
    assert (rootfs / "etc/added").read_text() == "added\n"
    assert not (rootfs / "root/.cache/kiln").exists()
    # skopeo copies it bit for bit; its last layer holds the whiteout
    run("skopeo", "copy", f"oci:{d / 'out'}:v1", f"oci:{tmp_path / 'sk'}:v1")
    assert layer_entries(tmp_path / "sk") == (EXPECTED, digest)
    # kiln run on the result: the image's Cmd
    p = kiln.run("run", f"oci:{d / 'out'}:v1", "--cache", d / "cache")
    assert p.stdout == "hello from kiln\n"
    # unchanged: a cache hit with the same digest, no blob of the base read
    shutil.rmtree(d / "cache" / "rootfs")
    again = build(kiln, r, d / "out", d / "cache")
    assert [l["state"] for l in again["layers"]] == ["cached", "cached"]
    assert again["digest"] == res["digest"]
    assert not (d / "cache" / "rootfs").exists()
    # an input changed: the step runs again
    (d / "src" / "hello.c").write_text(HELLO + "/* changed */\n")
    third = build(kiln, r, d / "out", d / "cache")
    assert [l["state"] for l in third["layers"]] == ["built", "built"]


def test_run_layer_as_unprivileged_user_cold_cache(kiln, debian, shared_dir, root_build):
    first = root_build[2]
    d = shared_dir / "nobody"
    r = world(d, debian)
    res = build(kiln, r, d / "out", d / "cache", user=NOBODY)
    assert [l["state"] for l in res["layers"]] == ["built", "built"]
    assert layer_entries(d / "out")[0] == EXPECTED
    # the same bytes as root's build: owners 0:0, times from SOURCE_DATE_EPOCH
    assert res["digest"] == first["digest"]


def test_run_layer_failure_exits_11_with_its_log(kiln, debian, shared_dir):
    d = shared_dir / "fail"
    d.mkdir()
    doc = {"recipe": 1, "name": "f", "base": debian,
           "layers": [{"name": "boom", "kind": "run",
                       "command": ["sh", "-c", "echo about to fail; exit 3"]}],
           "tag": {"repository": "example.invalid/f", "tag": "v1"}}
    (d / "r.json").write_text(json.dumps(doc))
    cache = shared_dir / "run-cache"
    p = build(kiln, d / "r.json", d / "out", cache, check=False)
    assert p.returncode == 11, p.stderr
    assert "boom | about to fail" in p.stderr
    errs = [l for l in p.stderr.splitlines() if l.startswith("kiln: error:")]
    assert len(errs) == 1 and "exited with status 3: about to fail" in errs[0], p.stderr
    assert not (d / "out").exists()
    assert list((cache / "run").iterdir()) == []


def test_build_step_in_the_image(kiln, debian, shared_dir):
    # the same command as a host build step, run with the image's gcc: only
    # $KILN_OUT becomes the layer, the inputs are at their own paths
    d = shared_dir / "inimage"
    d.mkdir()
    (d / "src").mkdir()
    (d / "src" / "hello.c").write_text(HELLO)
    doc = {"recipe": 1, "name": "b", "base": debian,
           "layers": [{"name": "hello", "kind": "build", "in": "image",
                       "command": ["sh", "-c", 'echo in $(pwd); touch /etc/dropped;'
                                   ' gcc -o "$KILN_OUT/hello" "$1/hello.c"', "sh", str(d / "src")],
                       "inputs": ["src"], "path": "/opt/hello"}],
           "tag": {"repository": "example.invalid/b", "tag": "v1"}}
    (d / "r.json").write_text(json.dumps(doc))
    cache = shared_dir / "run-cache"
    res = build(kiln, d / "r.json", d / "out", cache)
    assert [l["state"] for l in res["layers"]] == ["built"]
    entries, _ = layer_entries(d / "out")
    assert entries == {("opt", "d"), ("opt/hello", "d"), ("opt/hello/hello", "f")}, entries
    p = kiln.run("run", f"oci:{d / 'out'}:v1", "--cache", cache, "--", "/opt/hello/hello")
    assert p.stdout == "hello from kiln\n"
    log = [l for l in (cache / "logs").glob("hello-*.log")]
    assert any("in /kiln/scratch" in l.read_text() for l in log)
    plan = json.loads(kiln.run("build", d / "r.json", "--dry-run", "--json").stdout)
    assert '"in": "image"' in json.dumps(plan)
    again = build(kiln, d / "r.json", d / "out", cache)
    assert [l["state"] for l in again["layers"]] == ["cached"] and again["digest"] == res["digest"]
    _, err = kiln.fails("build", d / "r.json", "--stage", shared_dir / "inimage-stage")
    assert "only in kiln build" in err


def test_dry_run_json_shows_kind_run(kiln, debian, shared_dir):
    r = world(shared_dir / "dry", debian)
    plan = json.loads(kiln.run("build", r, "--dry-run", "--json").stdout)
    kinds = [l["kind"] for l in plan["layers"]]
    assert kinds == ["files", "run"]


def test_recipe_run_layer_schema_errors(kiln, tmp_path):
    doc = ('{"recipe": 1, "name": "x", "base": "scratch",\n'
           ' "layers": [{"name": "r", "kind": "run", "command": ["true"],\n'
           '             "cache": ["relative/dir"]}],\n'
           ' "tag": {"repository": "example.invalid/x", "tag": "v1"}}\n')
    (tmp_path / "r.json").write_text(doc)
    _, err = kiln.fails("build", tmp_path / "r.json", "--dry-run", code=3)
    assert "at line 3 column" in err and "cache directory 'relative/dir'" in err, err
    (tmp_path / "r.json").write_text(doc.replace('"cache": ["relative/dir"]', '"network": "yes"'))
    _, err = kiln.fails("build", tmp_path / "r.json", "--dry-run", code=3)
    assert "at line 3 column" in err and "'network'" in err, err


def test_kiln_run_exit_status_env_and_workdir(kiln, debian, shared_dir):
    cache = shared_dir / "run-cache"
    assert kiln.run("run", debian, "--cache", cache, "--", "sh", "-c", "exit 7",
                    check=False).returncode == 7
    assert kiln.run("run", debian, "--cache", cache, "--", "sh", "-c", "kill -9 $$",
                    check=False).returncode == 128 + 9
    p = kiln.run("run", debian, "--cache", cache, "--env", "A=b c", "--workdir", "/usr/share",
                 "--", "sh", "-c", 'echo "$A"; pwd; id -u; echo $$')
    # PID 2 of a PID namespace of its own (PID 1 is the sandbox's init)
    assert p.stdout.splitlines() == ["b c", "/usr/share", "0", "2"], p.stdout
    _, err = kiln.fails("run", debian, "--cache", cache, code=3)
    assert "has no entrypoint or cmd" in err
    _, err = kiln.fails("run", debian, "--cache", cache, "--", "no-such-program", code=5)
    assert "cannot run 'no-such-program' in the image" in err
    p = kiln.run("run", debian, "--user", "app", "--", "true", check=False)
    assert p.returncode == 2 and "--user takes root or UID[:GID] numbers, not 'app'" in p.stderr
    assert kiln.run("run", debian, "--cache", cache, "--user", "root", "--", "id", "-u").stdout == "0\n"
    # without subordinate ids (root has none here) only uid 0 exists
    p = kiln.run("run", debian, "--cache", cache, "--user", "1000", "--", "true", check=False,
                 env={"KILN_SANDBOX_IDMAP": "single"})
    assert p.returncode != 0 and "uid 1000 and gid 1000 do not exist in the sandbox" in p.stderr


def test_kiln_run_binds(kiln, debian, shared_dir, tmp_path):
    host = shared_dir / "binds"
    host.mkdir()
    (host / "in.txt").write_text("from the host\n")
    p = kiln.run("run", debian, "--cache", shared_dir / "run-cache", "--bind", f"{host}:/mnt/h:ro",
                 "--", "sh", "-c", "cat /mnt/h/in.txt; touch /mnt/h/x 2>/dev/null && echo wrote",
                 check=False)
    assert p.returncode == 1 and p.stdout == "from the host\n"
    assert sorted(os.listdir(host)) == ["in.txt"]
    kiln.run("run", debian, "--cache", shared_dir / "run-cache", "--bind", f"{host}:/mnt/h",
             "--", "sh", "-c", "echo rw > /mnt/h/out.txt")
    assert (host / "out.txt").read_text() == "rw\n"


def test_kiln_run_gpu_without_nvidia_devices(kiln, debian, shared_dir):
    if os.path.exists("/dev/nvidiactl"):
        pytest.skip("this host has NVIDIA devices: scripts/gpu-check.sh covers --gpu there")
    _, err = kiln.fails("run", debian, "--cache", shared_dir / "run-cache", "--gpu", "--", "true",
                        code=5)
    assert "no NVIDIA device" in err


def test_userns_off_names_the_setting(kiln, debian, shared_dir):
    # a user namespace of the test's own whose limit for new ones is 0
    p = run("unshare", "-Ur", "sh", "-c",
            f'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh",
            kiln.path, "run", debian, "--cache", shared_dir / "run-cache", "--", "true",
            check=False)
    assert p.returncode == 9, p.stderr
    errs = [l for l in p.stderr.splitlines() if l.startswith("kiln: error:")]
    assert len(errs) == 1 and "user.max_user_namespaces is 0" in errs[0], p.stderr


def test_podman_runs_the_built_image(root_build, tmp_path):
    d = root_build[0]
    if not shutil.which("podman"):
        pytest.skip("podman is not installed (scripts/setup.sh installs it)")
    # podman wants a short runroot, and names the image after the layout's
    # path, which must then be a valid reference: no component may end in
    # '_' as a random temp name can
    while True:
        short = pathlib.Path(tempfile.mkdtemp(prefix="kp-"))
        if re.fullmatch(r"kp-[a-z0-9]+", short.name):
            break
        short.rmdir()
    try:
        image = short / "image"
        shutil.copytree(d / "out", image)
        p = run("podman", "--root", short / "s", "--runroot", short / "r", "--storage-driver", "vfs",
                "--runtime", "runc", "run", "--rm", "--ulimit", "nofile=1024:4096",
                "--ulimit", "nproc=4096:4096", f"oci:{image}:v1", check=False)
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello from kiln\n"


# ---- what a step cannot reach (docs/security.md) ----

def test_escape_host_files_are_not_visible(kiln, debian, shared_dir):
    secret = shared_dir / "secret.txt"
    secret.write_text("host secret\n")
    secret.chmod(0o644)
    host_shadow = hashlib.sha256(pathlib.Path("/etc/shadow").read_bytes()).hexdigest()
    p = kiln.run("run", debian, "--cache", shared_dir / "run-cache", "--", "sh", "-c",
                 f"cat {secret} 2>&1; sha256sum /etc/shadow", check=False)
    assert "host secret" not in p.stdout
    assert "No such file" in p.stdout
    assert host_shadow not in p.stdout  # the image's own shadow, not the host's


def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.setblocking(False)
    return s


def connections(s):
    n = 0
    while True:
        try:
            c, _ = s.accept()
            c.close()
            n += 1
        except BlockingIOError:
            return n


def test_escape_no_host_loopback_without_network(kiln, debian, shared_dir):
    s = listener()
    port = s.getsockname()[1]
    probe = f"echo x > /dev/tcp/127.0.0.1/{port} && echo connected || echo refused"
    p = kiln.run("run", debian, "--cache", shared_dir / "run-cache", "--", "bash", "-c", probe)
    assert p.stdout.strip() == "refused"
    assert connections(s) == 0
    # the same step with the network reaches it: the probe works
    p = kiln.run("run", debian, "--cache", shared_dir / "run-cache", "--network", "--",
                 "bash", "-c", probe)
    assert p.stdout.strip() == "connected"
    assert connections(s) == 1
    s.close()


def test_escape_nothing_outside_the_upper_directory(kiln, debian, shared_dir):
    cache = shared_dir / "run-cache"
    kiln.run("run", debian, "--cache", cache, "--", "true")
    lay = pathlib.Path(debian[len("oci:"):].rsplit(":", 1)[0])
    man = json.loads((lay / "index.json").read_text())["manifests"][0]["digest"].split(":")[1]
    cfg = json.loads((lay / "blobs/sha256" / man).read_text())["config"]["digest"].split(":")[1]
    diff_id = json.loads((lay / "blobs/sha256" / cfg).read_text())["rootfs"]["diff_ids"][0]
    lower = cache / "rootfs" / diff_id.split(":")[1]  # the base, unpacked once
    before = sorted(str(p.relative_to(lower)) for p in lower.rglob("*"))
    outside = shared_dir / "outside"
    outside.mkdir()
    (outside / "keep").write_text("k\n")
    outside.chmod(0o777)
    p = kiln.run("run", debian, "--cache", cache, "--bind", f"{outside}:/o:ro", "--", "sh", "-c",
                 "echo x > /etc/new; rm -f /etc/issue; mkdir /made; echo x > /o/new;"
                 f" echo x > {outside}/new; rm -f /o/keep; echo done", check=False)
    assert "done" in p.stdout
    assert sorted(os.listdir(outside)) == ["keep"]
    after = sorted(str(p.relative_to(lower)) for p in lower.rglob("*"))
    assert before == after and (lower / "etc/issue").exists()
    assert list((cache / "run").iterdir()) == []  # the scratch upper is gone


def descendants(pid):
    """Every process below pid, from /proc."""
    parent = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                st = pathlib.Path(f"/proc/{e}/stat").read_text()
            except OSError:
                continue
            parent[int(e)] = int(st.rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def test_escape_sigkill_leaves_no_mount_and_no_half_layer(kiln, debian, shared_dir):
    d = shared_dir / "kill"
    d.mkdir()
    doc = {"recipe": 1, "name": "k", "base": debian,
           "layers": [{"name": "slow", "kind": "run",
                       "command": ["sh", "-c", "echo made > /made; echo ready; exec sleep 1000"]}],
           "tag": {"repository": "example.invalid/k", "tag": "v1"}}
    (d / "r.json").write_text(json.dumps(doc))
    cache = shared_dir / "run-cache"  # its base is unpacked already
    p = subprocess.Popen([kiln.path, "build", d / "r.json", "--output", f"oci:{d / 'out'}",
                          "--cache", cache, "--progress", "plain"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, SOURCE_DATE_EPOCH="0"))
    for line in p.stderr:
        if "slow | ready" in line:
            break
    else:
        raise AssertionError("the step never said ready")
    sandbox = descendants(p.pid)
    assert len(sandbox) >= 2, sandbox  # the namespace holder and the step
    fds = [os.pidfd_open(pid) for pid in sandbox]
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stderr.close()
    # every process of the sandbox dies with kiln (no sleeping: the kernel says when)
    for fd in fds:
        ready, _, _ = select.select([fd], [], [], 60)
        assert ready, "a sandbox process outlived kiln"
        os.close(fd)
    mounts = pathlib.Path("/proc/self/mountinfo").read_text()
    assert str(cache) not in mounts and "overlay" not in [l.split(" - ")[1].split()[0]
                                                         for l in mounts.splitlines()
                                                         if str(d) in l]
    assert not (d / "out").exists()
    rootfs = [x.name for x in (cache / "rootfs").iterdir()]
    assert all(len(n) == 64 and not n.startswith(".") for n in rootfs), rootfs
    # the next build is whole: the killed step's leftovers play no part
    doc["layers"][0]["command"] = ["sh", "-c", "echo made > /made"]
    (d / "r.json").write_text(json.dumps(doc))
    res = build(kiln, d / "r.json", d / "out", cache)
    assert layer_entries(d / "out")[0] == {("made", "f")}
    kiln.run("cache", "prune", "--local", "--cache", cache)
    assert not (cache / "rootfs").exists() and not (cache / "run").exists()
    assert res["digest"]


def test_escape_symlinked_mount_points_stay_in_the_image(kiln, debian, shared_dir):
    # an image whose mount points are absolute links to host paths: the
    # sandbox must make and mount them inside the image, never on the host
    outside = shared_dir / "linked-outside"
    outside.mkdir()
    evil = shared_dir / "evil-layer"
    (evil / "etc").mkdir(parents=True)
    os.symlink(outside, evil / "kiln")
    os.symlink(outside / "resolv", evil / "etc" / "resolv.conf")
    img = f"oci:{shared_dir / 'evil'}:v1"
    kiln.run("append", debian, "--layer", f"{evil}:/", "-t", img, "--cache", shared_dir / "run-cache")
    src = shared_dir / "evil-input"
    src.mkdir()
    (src / "f").write_text("input\n")
    p = kiln.run("run", img, "--cache", shared_dir / "run-cache", "--network",
                 "--bind", f"{src}:/kiln/inputs/0:ro", "--", "sh", "-c",
                 "cat /kiln/inputs/0/f; ls -d /kiln/inputs", check=False)
    assert os.listdir(outside) == [], os.listdir(outside)
    # the links lead nowhere inside the image: a clean refusal
    errs = [l for l in p.stderr.splitlines() if l.startswith("kiln: error:")]
    assert p.returncode == 10 and len(errs) == 1 and "cannot bind" in errs[0], p.stderr
    # a link that stays inside the image is followed there
    (evil / "kiln").unlink()
    os.symlink("/opt", evil / "kiln")
    (evil / "etc" / "resolv.conf").unlink()
    kiln.run("append", debian, "--layer", f"{evil}:/", "-t", img, "--cache", shared_dir / "run-cache")
    p = kiln.run("run", img, "--cache", shared_dir / "run-cache",
                 "--bind", f"{src}:/kiln/inputs/0:ro", "--", "cat", "/opt/inputs/0/f")
    assert p.stdout == "input\n" and os.listdir(outside) == []


# ---- subordinate ids (/etc/subuid, newuidmap) ----

SUBID_USER = os.environ.get("KILN_TEST_SUBID_USER", "kiln-subid")


def subid_user():
    """[setpriv ...] for the user scripts/setup.sh gave a range in
    /etc/subuid and /etc/subgid, and the range."""
    import pwd
    try:
        pw = pwd.getpwnam(SUBID_USER)
    except KeyError:
        pytest.fail(f"no user {SUBID_USER}: run scripts/setup.sh (it makes one with subordinate ids)")
    line = [l for l in pathlib.Path("/etc/subuid").read_text().splitlines()
            if l.split(":")[0] in (SUBID_USER, str(pw.pw_uid))]
    assert line, f"/etc/subuid has no range for {SUBID_USER}: run scripts/setup.sh"
    _, start, count = line[0].split(":")
    return (["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"],
            pw.pw_uid, int(start), int(count))


def user_dir(path, uid):
    path.mkdir(parents=True, exist_ok=True)
    for p in [path, *path.rglob("*")]:
        os.chown(p, uid, -1)
    return path


def layer_members(layout, index=-1):
    """{name: (uid, gid, mode, data or None)} of a layer of layout:v1."""
    idx = json.loads((layout / "index.json").read_text())
    man = [m for m in idx["manifests"]
           if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "v1"][0]
    blob = lambda d: layout / "blobs" / "sha256" / d.split(":")[1]
    layer = json.loads(blob(man["digest"]).read_text())["layers"][index]
    out = {}
    with tarfile.open(blob(layer["digest"])) as t:
        for m in t:
            data = t.extractfile(m).read() if m.isfile() else None
            out[m.name.rstrip("/")] = (m.uid, m.gid, m.mode, data)
    return out


def test_subordinate_ids_map_a_range_and_change_no_digest(kiln, debian, shared_dir, root_build):
    user, uid, start, count = subid_user()
    d = user_dir(shared_dir / "subid", uid)
    # kiln run: 0 is the caller, 1.. the range, as podman maps a rootless container
    p = subprocess.run(user + [kiln.path, "run", debian, "--cache", str(d / "cache"), "--",
                               "cat", "/proc/self/uid_map", "/proc/self/gid_map"],
                       capture_output=True, text=True, env=dict(os.environ, HOME=str(d)), timeout=300)
    assert p.returncode == 0, p.stderr
    rows = [l.split() for l in p.stdout.splitlines()]
    assert rows[0] == ["0", str(uid), "1"] and rows[1] == ["1", str(start), str(count)], rows
    # --user: another uid of the range runs the command
    p = subprocess.run(user + [kiln.path, "run", debian, "--cache", str(d / "cache"), "--user",
                               "1000:1001", "--", "sh", "-c", "id -u; id -g; id -G"],
                       capture_output=True, text=True, env=dict(os.environ, HOME=str(d)), timeout=300)
    assert p.returncode == 0 and p.stdout.split() == ["1000", "1001", "1001"], p.stderr
    p = subprocess.run(user + [kiln.path, "run", debian, "--cache", str(d / "cache"), "--user",
                               str(count + 1), "--", "true"],
                       capture_output=True, text=True, env=dict(os.environ, HOME=str(d)), timeout=300)
    assert p.returncode != 0 and "is past the sandbox's ids" in p.stderr, p.stderr
    # the world's layers: the same bytes as root's single mapping, and as
    # the same user forced onto the single mapping
    r = world(d / "w", debian)
    user_dir(d / "w", uid)
    res = build(kiln, r, d / "w" / "out", d / "w" / "cache", user=user)
    assert res["digest"] == root_build[2]["digest"]
    single = build(kiln, r, d / "w" / "out2", d / "w" / "cache2",
                   user=user + ["env", "KILN_SANDBOX_IDMAP=single"])
    assert single["digest"] == res["digest"]
    assert list((d / "w" / "cache" / "run").iterdir()) == []


SECOND_USER = ("mkdir /data && chown 1000:1000 /data && chmod 700 /data"
               " && setpriv --reuid=1000 --regid=1000 --clear-groups"
               " sh -c 'id -u > /data/who; chmod 600 /data/who; mkdir -m 700 /data/private'")


def test_a_step_that_runs_as_another_user(kiln, debian, shared_dir):
    user, uid, _, _ = subid_user()
    d = user_dir(shared_dir / "subid-second", uid)
    doc = {"recipe": 1, "name": "second", "base": debian,
           "layers": [{"name": "data", "kind": "run", "command": ["sh", "-c", SECOND_USER]}],
           "tag": {"repository": "example.invalid/second", "tag": "v1"}}
    (d / "r.json").write_text(json.dumps(doc))
    res = build(kiln, d / "r.json", d / "out", d / "cache", user=user)
    members = layer_members(d / "out")
    # what uid 1000 made, read back although it was 0600/0700 under a
    # subordinate id outside; owners recorded 0:0 as every layer's
    assert members["data/who"][3] == b"1000\n", members
    assert {n: m[:2] for n, m in members.items()} == {
        "data": (0, 0), "data/who": (0, 0), "data/private": (0, 0)}, members
    # and modes by the layer policy (directories 0755), as for any step
    assert members["data/private"][2] & 0o777 == 0o755
    # nothing of the step is left that the user could not remove
    assert list((d / "cache" / "run").iterdir()) == []
    subprocess.run(user + ["rm", "-rf", str(d / "cache")], check=True)
    assert not (d / "cache").exists()
    # the single mapping has no uid 1000: chown fails, and the step with it
    p = build(kiln, d / "r.json", d / "out1", d / "cache1", check=False,
              user=user + ["env", "KILN_SANDBOX_IDMAP=single"])
    assert p.returncode == 11 and "chown" in p.stderr, p.stderr
    assert res["digest"]
    # demanded where there is no range: one line naming the file
    n = user_dir(shared_dir / "nobody-subid", 65534)
    p = build(kiln, d / "r.json", n / "out", n / "cache", check=False,
              user=NOBODY + ["env", "KILN_SANDBOX_IDMAP=subid"])
    assert p.returncode != 0 and "/etc/subuid has no range for this user" in p.stderr, p.stderr
    assert not (n / "out").exists()


def test_leftovers_of_a_killed_run_under_subordinate_ids_are_pruned(kiln, debian, shared_dir):
    user, uid, start, _ = subid_user()
    d = user_dir(shared_dir / "subid-kill", uid)
    cache = d / "cache"
    p = subprocess.Popen(user + [kiln.path, "run", debian, "--cache", str(cache), "--", "sh", "-c",
                                 SECOND_USER + "; echo ready; exec sleep 1000"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=dict(os.environ, HOME=str(d)))
    assert p.stdout.readline() == "ready\n"
    sandbox = descendants(p.pid)
    fds = [os.pidfd_open(pid) for pid in sandbox]
    p.kill()
    p.wait()
    for fd in fds:
        assert select.select([fd], [], [], 60)[0], "a sandbox process outlived kiln"
        os.close(fd)
    # the killed step's files belong to the range: its user cannot remove them
    left = [x for x in (cache / "run").rglob("*") if x.lstat().st_uid == start + 999]  # uid 1 inside is start
    assert left, list((cache / "run").rglob("*"))
    assert subprocess.run(user + ["rm", "-rf", str(cache / "run")],
                          capture_output=True).returncode != 0
    # prune --local gives them back first, in a namespace with the same mapping
    q = subprocess.run(user + [kiln.path, "cache", "prune", "--local", "--cache", str(cache)],
                       capture_output=True, text=True, env=dict(os.environ, HOME=str(d)))
    assert q.returncode == 0, q.stderr
    assert not (cache / "run").exists()
