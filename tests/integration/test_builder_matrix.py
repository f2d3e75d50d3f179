"""Same recipe and lock, same digest, whoever builds it (docs/layers.md,
"What the digest depends on").

One recipe uses every layer kind that runs offline (debs by path and from an
apt mirror, wheels, a git and a local source, a tree, files, two build
steps); a reference builder and five others that each differ from it in
several ways at once: the user (root or nobody), the umask of the checkout
and of the build, TZ, LC_ALL, --jobs, the cache (cold, warm, from a cache
repository), the checkout's directory and TMPDIR (tmpfs or disk).  Every
builder must give the reference's image and SBOM digests; when one does not,
the failure shows what `kiln diff` says."""
import json
import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile

import pytest

from imagegen import make_image
from recipes_helpers import make_apt_repo, make_deb, make_git_repo, make_wheel, sha256

NOBODY = 65534
ROOT_USER = os.geteuid() == 0

# the step's output: its time zone, locale and umask as it sees them, and
# a .pyc of a file copied now (its mtime is the build's own)
STEP = ('cp "$1" m.py && mkdir -p "$KILN_OUT/d" && '
        'echo "$TZ $LC_ALL $(date +%Z) $(umask)" > "$KILN_OUT/d/o" && '
        '/usr/bin/python3 -c "import py_compile, sys; '
        "py_compile.compile('m.py', cfile=sys.argv[1], dfile='m.py', doraise=True)\" "
        '"$KILN_OUT/d/m.cpython-311.pyc"')
# a step whose output keeps its exact modes: made under umask 022
EXACT = ('mkdir "$KILN_OUT/x" && echo hi > "$KILN_OUT/x/f" && cp /bin/true "$KILN_OUT/x/tool" && '
         'chmod 4755 "$KILN_OUT/x/tool"')


def make_inputs(src, registry):
    """The checkout every builder copies: inputs by relative path only."""
    base = src.parent / "base"
    make_image(base, "b", [{"etc/": ("dir",), "etc/os-release": b"ID=standin\n"}])
    subprocess.run([os.environ.get("KILN") or "kiln", "copy", "-q", f"oci:{base}:b",
                    f"{registry.host}/standin/base:1"], check=True, capture_output=True)
    wheel = make_wheel(src / "wheels", "tiny", "1.0", py="py3", abi="none", plat="any",
                       data={"scripts/tiny": b"#!python\nprint('tiny')\n"})
    hello = make_deb(src / "debs", "hello", {"usr/bin/hello": b"#!/bin/sh\n",
                                             "usr/share/doc/hello/x": b"hello"})
    libfoo = make_deb(src / "debs", "libfoo1", {"usr/lib/libfoo.so.1": b"foo"})
    shutil.rmtree(src / "debs" / "hello-tree")
    shutil.rmtree(src / "debs" / "libfoo1-tree")
    make_apt_repo(src / "mirror", [libfoo])
    make_git_repo(src / "repo", {"feature": {"linnaeus/run.sh": "#!/bin/sh\n"}})
    (src / "local" / "pkg").mkdir(parents=True)
    (src / "local" / "pkg" / "mod.py").write_text("X = 1\n")
    (src / "local" / ".gitignore").write_text("*.log\n")
    (src / "tree" / "bin").mkdir(parents=True)
    (src / "tree" / "bin" / "run").write_text("#!/bin/sh\necho run\n")
    (src / "tree" / "bin" / "run").chmod(0o755)
    (src / "tree" / "t.txt").write_text("text\n")
    os.symlink("t.txt", src / "tree" / "link")
    (src / "t.sh").write_text("#!/bin/sh\necho t\n")
    (src / "t.sh").chmod(0o755)
    (src / "secret.conf").write_text("k=v\n")
    (src / "m.py").write_text("print('m')\n")
    doc = {"recipe": 1, "name": "matrix", "base": f"{registry.host}/standin/base:1",
           "variables": {"repo": {"default": f"{registry.host}/matrix/app"}},
           "layers": [
               {"name": "system", "kind": "debs",
                "debs": [{"path": f"debs/{hello.name}", "sha256": sha256(hello)}],
                "apt": [{"mirror": "mirror", "index": "dists/jammy/main/binary-amd64/Packages.gz",
                         "packages": ["libfoo1"]}]},
               {"name": "python", "kind": "wheels",
                "wheels": [{"path": f"wheels/{wheel.name}", "sha256": sha256(wheel)}]},
               {"name": "app", "kind": "source", "from": "git", "repository": "repo",
                "ref": "feature", "path": "/app/git"},
               {"name": "tree", "kind": "tree", "src": "tree", "dest": "/opt/tree",
                "modes": {"bin/*": "0750"}},
               {"name": "files", "kind": "files",
                "files": [{"src": "t.sh", "dest": "/usr/local/bin/t"},
                          {"src": "secret.conf", "dest": "/etc/s.conf", "mode": "0600"}]},
               {"name": "step", "kind": "build", "command": ["sh", "-c", STEP, "sh",
                                                             "${recipe.dir}/m.py"],
                "inputs": ["m.py"], "path": "/opt/s"},
               {"name": "exact", "kind": "build", "keep_modes": True,
                "command": ["sh", "-c", EXACT], "path": "/opt/e"}],
           "config": {"env": ["APP=/app"], "cmd": ["/usr/local/bin/t"]},
           "tag": {"repository": "${repo}", "tag": "v1"}}
    (src / "matrix.json").write_text(json.dumps(doc, indent=2))
    # a local source gets a recipe of its own: one source layer a recipe
    local = dict(doc, name="matrix-local",
                 layers=[{"name": "app", "kind": "source", "from": "local", "local": "local",
                          "path": "/app/local"}],
                 tag={"repository": "${repo}", "tag": "local"})
    (src / "local.json").write_text(json.dumps(local, indent=2))


class Builder:
    def __init__(self, name, *, nobody, umask, tz, lc, jobs, tmp_shm, cache, cache_from=None,
                 cache_to=None, checkout=None):
        self.name, self.nobody, self.umask = name, nobody and ROOT_USER, umask
        self.tz, self.lc, self.jobs, self.tmp_shm = tz, lc, jobs, tmp_shm
        self.cache, self.cache_from, self.cache_to = cache, cache_from, cache_to
        self.checkout = checkout

    def prefix(self):
        if not self.nobody:
            return []
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

    def sh(self, script, env):
        """script under this builder's user and umask, with only env."""
        p = subprocess.run(self.prefix() + ["sh", "-c", f"umask {self.umask:03o} && {script}"],
                           capture_output=True, text=True, env=env, timeout=300)
        return p


def own(path, b):
    if b.nobody:
        os.chown(path, NOBODY, NOBODY)


@pytest.fixture
def world(registry_factory):
    """A directory every builder can read (pytest's tmp dirs are 0700)."""
    top = pathlib.Path(tempfile.mkdtemp(prefix="kiln-matrix-", dir="/var/tmp"))
    shm = pathlib.Path(tempfile.mkdtemp(prefix="kiln-matrix-", dir="/dev/shm"))
    for d in (top, shm):
        d.chmod(0o755)
    kiln = top / "kiln"
    shutil.copy(os.environ.get("KILN") or "build/cli/kiln", kiln)
    reg = registry_factory()
    make_inputs(top / "src", reg)
    for dirpath, dirs, files in os.walk(top / "src"):
        os.chmod(dirpath, 0o755)
    yield top, shm, kiln, reg
    shutil.rmtree(top, ignore_errors=True)
    shutil.rmtree(shm, ignore_errors=True)


def build(top, shm, kiln, b, recipe):
    """Copies the checkout under b's user and umask, then builds recipe."""
    home = top / b.name
    home.mkdir(exist_ok=True)
    own(home, b)
    tmp = (shm if b.tmp_shm else top) / f"tmp-{b.name}"
    tmp.mkdir(exist_ok=True)
    own(tmp, b)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(tmp),
           "TZ": b.tz, "LC_ALL": b.lc, "ASAN_OPTIONS": "detect_leaks=0",
           "UBSAN_OPTIONS": os.environ.get("UBSAN_OPTIONS", "")}
    checkout = top / (b.checkout or b.name) / "checkout"
    if not checkout.exists():
        p = b.sh(f"cp -r {top}/src {checkout}", env)
        assert p.returncode == 0, p.stderr
    out = home / f"out-{recipe}"
    args = [str(kiln), "build", str(checkout / recipe), "--sbom", "--json",
            "--output", f"oci:{out}", "--cache", str(top / b.cache)]
    if b.jobs:
        args += ["--jobs", str(b.jobs)]
    if b.cache_from:
        args += ["--cache-from", b.cache_from]
    if b.cache_to:
        args += ["--cache-to", b.cache_to]
    if not (top / b.cache).exists():
        (top / b.cache).mkdir()
        own(top / b.cache, b)
    p = b.sh(" ".join(f"'{a}'" for a in args), env)
    assert p.returncode == 0, f"builder {b.name}: {p.stderr}"
    return json.loads(p.stdout), out


def explain(kiln, ref_out, out, tag):
    p = subprocess.run([str(kiln), "diff", f"oci:{ref_out}:{tag}", f"oci:{out}:{tag}"],
                       capture_output=True, text=True, env=dict(os.environ,
                                                                ASAN_OPTIONS="detect_leaks=0"))
    return p.stdout + p.stderr


def layer_modes(layout, digest):
    """path -> mode of every entry of the image's layers (later layers win)."""
    blobs = pathlib.Path(layout) / "blobs" / "sha256"
    m = json.loads((blobs / digest.split(":")[1]).read_bytes())
    modes = {}
    for l in m["layers"]:
        with tarfile.open(blobs / l["digest"].split(":")[1]) as t:
            for e in t.getmembers():
                modes[e.name] = e.mode
    return modes


def test_every_builder_gives_the_same_digest(world):
    top, shm, kiln, reg = world
    cache_repo = f"{reg.host}/matrix/cache"
    ref = Builder("ref", nobody=False, umask=0o022, tz="UTC", lc="C", jobs=None, tmp_shm=False,
                  cache="cache-ref", cache_to=cache_repo)
    others = [
        # another user, umask, zone, locale, one job, tmpfs, its own cold cache
        Builder("nobody077", nobody=True, umask=0o077, tz="Pacific/Kiritimati", lc="C.UTF-8",
                jobs=1, tmp_shm=True, cache="cache-nobody"),
        # root again with umask 077 and the reference's warm cache, another checkout
        Builder("root077warm", nobody=False, umask=0o077, tz="America/St_Johns", lc="C.UTF-8",
                jobs=1, tmp_shm=True, cache="cache-ref"),
        # nobody's warm cache, from the same checkout as its cold build
        Builder("nobodywarm", nobody=True, umask=0o022, tz="Asia/Kathmandu", lc="C",
                jobs=None, tmp_shm=False, cache="cache-nobody", checkout="nobody077"),
        # a cold local cache filled from the cache repository
        Builder("fromrepo", nobody=True, umask=0o077, tz="Europe/Berlin", lc="C.UTF-8",
                jobs=3, tmp_shm=True, cache="cache-fromrepo", cache_from=cache_repo),
        # root with umask 077, cold, on disk
        Builder("root077cold", nobody=False, umask=0o077, tz="Australia/Eucla", lc="C",
                jobs=None, tmp_shm=False, cache="cache-root077"),
    ]
    for recipe, tag in (("matrix.json", "v1"), ("local.json", "local")):
        want, ref_out = build(top, shm, kiln, ref, recipe)
        failures = []
        for b in others:
            got, out = build(top, shm, kiln, b, recipe)
            if (got["digest"], got["sbom"]) != (want["digest"], want["sbom"]):
                failures.append(f"builder {b.name} ({recipe}): {got['digest']} sbom "
                                f"{got['sbom']}, want {want['digest']} sbom {want['sbom']}\n"
                                + explain(kiln, ref_out, out, tag))
        assert not failures, "\n".join(failures)
        if recipe == "local.json":
            continue
        # the mode policy, as the reference wrote it
        modes = layer_modes(ref_out, want["digest"])
        assert modes["opt/tree"] == 0o755 and modes["opt/tree/t.txt"] == 0o644
        assert modes["opt/tree/bin/run"] == 0o750               # the tree's "modes"
        assert modes["usr/local/bin/t"] == 0o755 and modes["etc/s.conf"] == 0o600
        assert modes["opt/s/d/o"] == 0o644 and modes["opt/s/d"] == 0o755
        assert modes["opt/e/x/tool"] == 0o4755                  # keep_modes: exact
        assert modes["opt/e/x/f"] == 0o644 and modes["opt/e/x"] == 0o755   # umask 022
        assert modes["usr/bin/hello"] == 0o755                  # the package's modes
