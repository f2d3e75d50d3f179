"""A debs layer on a Debian base carries a real dpkg database (issue #15):
dpkg's own tools, run on the unpacked image, must agree with what kiln
wrote.  The base is the dpkg database of a real Debian root filesystem
(mmdebstrap --variant=minbase bookworm, cached by scripts/setup.sh under
/var/cache/kiln-test/), the packages are real .debs from Debian (fetched
there by setup.sh with apt-get download), served from a local mirror made
with dpkg-scanpackages and signed with the tests' key."""
import glob
import hashlib
import io
import os
import pathlib
import subprocess
import tarfile

import pytest

from imagegen import make_image
from recipes_helpers import (apt_simulate, dpkg_status_versions, gpg_key, kiln, make_deb, mirror_of,
                             write_recipe)

CACHE = pathlib.Path(os.environ.get("KILN_TEST_ROOTFS_DIR", "/var/cache/kiln-test"))
DEBS = pathlib.Path(os.environ.get("KILN_TEST_DEBS_DIR", CACHE / "debs"))


def real_inputs():
    tars = sorted(glob.glob(str(CACHE / "bookworm*.tar")))
    debs = sorted(DEBS.glob("*.deb"))
    if not tars or not all(any(d.name.startswith(p) for d in debs) for p in ("jq_", "curl_")):
        pytest.fail(f"no Debian root filesystem tarball or .debs under {CACHE}: run scripts/setup.sh")
    return pathlib.Path(tars[0]), debs


@pytest.fixture(scope="module")
def debian_base(tmp_path_factory):
    """An image whose one layer is the real rootfs's /var/lib/dpkg."""
    tar, _ = real_inputs()
    lay = tmp_path_factory.mktemp("debian") / "base"
    files = {"var/": ("dir",), "var/lib/": ("dir",)}
    with tarfile.open(tar) as t:
        for m in t:
            name = m.name.lstrip("./")
            if not name.startswith("var/lib/dpkg"):
                continue
            if m.isdir():
                files[name + "/"] = ("dir",)
            elif m.isfile():
                files[name] = t.extractfile(m).read()
    assert "var/lib/dpkg/status" in files
    make_image(lay, "b", [files])
    return f"oci:{lay}:b"


def build_and_unpack(tmp_path, base, layers):
    r = write_recipe(tmp_path / "r.json", {"base": base, "tag": {"repository": "kiln/dpkg", "tag": "t"},
                                           "layers": layers})
    kiln("build", r, "--output", f"oci:{tmp_path}/out:t", "--cache", tmp_path / "cache", "--quiet")
    root = tmp_path / "root"
    kiln("unpack", f"oci:{tmp_path}/out:t", root, "--rootless")
    return root


def dpkg(root, *args, check=True):
    p = subprocess.run(["dpkg", f"--root={root}", *args], capture_output=True, text=True)
    if check:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


def apt_layer(name, packages, mirror, configure=False):
    """The base here is a dpkg database and no programs: nothing can run
    there, so the layers keep their scripts ("configure": false) unless a
    test says otherwise (test_recipes_configure.py runs them)."""
    layer = {"name": name, "kind": "debs", "apt": [
        {"mirror": str(mirror), "suite": "bookworm", "components": ["main"],
         "keyring": str(gpg_key().keyring), "packages": packages}]}
    if configure is not None:
        layer["configure"] = configure
    return layer


def test_dpkg_knows_what_a_debs_layer_installed(tmp_path, debian_base):
    _, debs = real_inputs()
    mirror = mirror_of(tmp_path, debs)
    root = build_and_unpack(tmp_path, debian_base,
                            [apt_layer("jq", ["jq", "libjq1", "libonig5"], mirror)])
    jq = next(d for d in debs if d.name.startswith("jq_"))
    version = jq.name.split("_")[1]
    s = dpkg(root, "-s", "jq").stdout
    assert "Status: install ok installed\n" in s and f"Version: {version}\n" in s
    # the base's packages are still known
    assert "Status: install ok installed" in dpkg(root, "-s", "libc6").stdout
    # dpkg -L: the package's own paths, as dpkg-deb lists them
    listed = set(dpkg(root, "-L", "jq").stdout.split())
    raw = subprocess.run(["dpkg-deb", "--fsys-tarfile", jq], capture_output=True,
                         check=True).stdout
    shipped = set()
    for n in tarfile.open(fileobj=io.BytesIO(raw)).getnames():
        n = (n[2:] if n.startswith("./") else n).rstrip("/")
        shipped.add("/." if n in ("", ".") else "/" + n)
    assert listed == shipped
    assert dpkg(root, "-S", "/usr/bin/jq").stdout == "jq: /usr/bin/jq\n"
    # Multi-Arch: same packages are PKG:ARCH to dpkg
    assert dpkg(root, "-S", "libjq.so.1").stdout.startswith("libjq1:amd64: ")
    assert (root / "var/lib/dpkg/info/libjq1:amd64.list").exists()
    assert (root / "var/lib/dpkg/info/libjq1:amd64.triggers").exists()
    assert (root / "var/lib/dpkg/info/jq.md5sums").exists()
    # nothing half-installed, every file as its md5sums say; libjq1's
    # ldconfig trigger waits in Unincorp for a dpkg --configure -a (this
    # layer keeps its scripts), and dpkg --audit says so
    assert (root / "var/lib/dpkg/triggers/Unincorp").read_text() == "ldconfig -\n"
    audit = dpkg(root, "--audit").stdout
    assert "triggered, but the trigger processing\nhas not yet been done" in audit
    assert [l.split()[0] for l in audit.splitlines() if l.startswith(" ")] == ["libc-bin"]
    assert dpkg(root, "--verify", "jq", "libjq1", "libonig5").stdout == ""
    assert not (root / "var/lib/dpkg/status.d").exists()


def test_scripts_are_kept_and_the_package_is_unpacked(tmp_path, debian_base):
    _, debs = real_inputs()
    hook = make_deb(tmp_path / "debs", "kiln-hook", {"etc/kiln-hook.conf": b"x=1\n",
                                                     "usr/share/kiln-hook/f": b"f"},
                    postinst="#!/bin/sh\necho configured > /tmp/kiln-hook\n",
                    conffiles=["etc/kiln-hook.conf"])
    plain = make_deb(tmp_path / "debs", "kiln-conf", {"etc/kiln-conf.conf": b"y=2\n"},
                     conffiles=["etc/kiln-conf.conf"])
    mirror = mirror_of(tmp_path, [*debs, hook, plain])
    layers = [apt_layer("jq", ["jq", "libjq1", "libonig5"], mirror),
              apt_layer("hook", ["kiln-hook", "kiln-conf"], mirror)]
    root = build_and_unpack(tmp_path, debian_base, layers)
    # the top layer's status lists the base, the layer below and its own
    assert "Status: install ok installed" in dpkg(root, "-s", "jq").stdout
    assert "Status: install ok unpacked" in dpkg(root, "-s", "kiln-hook").stdout
    # conffiles: dpkg --unpack's "newconffile" until configured, the md5 once installed
    assert "Conffiles:\n /etc/kiln-hook.conf newconffile\n" in dpkg(root, "-s", "kiln-hook").stdout
    md5 = hashlib.md5(b"y=2\n").hexdigest()
    assert f"Conffiles:\n /etc/kiln-conf.conf {md5}\n" in dpkg(root, "-s", "kiln-conf").stdout
    assert (root / "var/lib/dpkg/info/kiln-conf.conffiles").read_text() == "/etc/kiln-conf.conf\n"
    assert dpkg(root, "--verify", "kiln-conf").stdout == ""
    script = root / "var/lib/dpkg/info/kiln-hook.postinst"
    assert script.read_text().startswith("#!/bin/sh\n") and os.access(script, os.X_OK)
    audit = dpkg(root, "--audit", check=False)
    assert "kiln-hook" in audit.stdout and "not yet configured" in audit.stdout
    assert "jq" not in audit.stdout.replace("kiln-hook", "")


# ---- dependency resolution, compared with apt-get install --simulate ----

def added_packages(root, base_status):
    """{name: version} of the stanzas kiln's status has beyond the base's."""
    base = dpkg_status_versions(base_status)
    now = dpkg_status_versions((root / "var/lib/dpkg/status").read_text())
    return {k: v for k, v in now.items() if base.get(k) != v}


def base_status_file(tmp_path):
    tar, _ = real_inputs()
    with tarfile.open(tar) as t:
        data = t.extractfile("./var/lib/dpkg/status").read()
    f = tmp_path / "base-status"
    f.write_bytes(data)
    return f


def synthetic(tmp_path):
    """Packages whose relations have the shapes that need choices: an
    alternative whose first is virtual, a versioned dependency with an
    older and a newer version in the index, Pre-Depends, a dependency the
    base satisfies (libc6), an essential package the base has (dpkg)."""
    d = tmp_path / "synthetic"
    mk = lambda name, ver="1.0-1", **c: make_deb(d, name, {f"usr/share/doc/{name}/x": name.encode()},
                                                version=ver, control=c or None)
    return [mk("kt-app", **{"Depends": "kt-mta | kt-exim, kt-lib (>= 2), libc6 (>= 2.30), dpkg",
                            "Pre-Depends": "kt-pre"}),
            mk("kt-postfix", **{"Provides": "kt-mta"}), mk("kt-exim"),
            mk("kt-lib", "1.0-1"), mk("kt-lib", "2.5-1", **{"Depends": "jq"}), mk("kt-lib", "2.5~rc1-1"),
            mk("kt-pre")]


@pytest.mark.parametrize("request_", [["jq"], ["curl"], ["kt-app"], ["jq", "kt-exim"],
                                      ["curl", "kt-lib"]])
def test_resolution_matches_apt_get_simulate(tmp_path, debian_base, request_):
    _, debs = real_inputs()
    mirror = mirror_of(tmp_path, [*debs, *synthetic(tmp_path)])
    status = base_status_file(tmp_path)
    want = apt_simulate(tmp_path, mirror, status, request_)
    root = build_and_unpack(tmp_path, debian_base, [apt_layer("sys", request_, mirror)])
    assert added_packages(root, status.read_text()) == want
    assert want  # the case installs something


def test_resolve_false_keeps_the_list(tmp_path, debian_base):
    _, debs = real_inputs()
    mirror = mirror_of(tmp_path, debs)
    layer = apt_layer("sys", ["jq"], mirror)
    layer["resolve"] = False
    root = build_and_unpack(tmp_path, debian_base, [layer])
    assert set(added_packages(root, base_status_file(tmp_path).read_text())) == {"jq"}


def test_a_layer_skips_what_the_layer_below_installed(tmp_path, debian_base):
    _, debs = real_inputs()
    mirror = mirror_of(tmp_path, [*debs, *synthetic(tmp_path)])
    root = build_and_unpack(tmp_path, debian_base, [apt_layer("jq", ["jq"], mirror),
                                                    apt_layer("lib", ["kt-lib"], mirror)])
    info = sorted(p.name for p in (root / "var/lib/dpkg/info").glob("*.list"))
    # kt-lib 2.5 needs jq, which the layer below has: the top layer adds kt-lib only
    assert "Version: 2.5-1" in dpkg(root, "-s", "kt-lib").stdout
    assert "jq.list" in info
