"""kiln build: the linnaeus images from local stand-ins, pushed to a real registry."""
import json
import socket
import re
import os
import pathlib
import subprocess

import pytest

from conftest import run
from linnaeus_standins import LINNAEUS, PYPROJECT, build_args, make_inputs, push_base


@pytest.fixture
def world(kiln, registry_factory, tmp_path):
    reg = registry_factory()
    push_base(kiln, reg, tmp_path)
    return reg


VARIANT = {"hopper": "nightly-cu128", "ampere": "stable-cu126", "pre-ampere": "stable-cu126"}


@pytest.mark.parametrize("arch", ["hopper", "ampere", "pre-ampere"])
def test_build_and_push_each_profile(kiln, world, tmp_path, arch):
    sets = make_inputs(tmp_path, arch)
    p = kiln.run(*build_args(sets, world, "--arch", arch, "--branch", "feat/new-model", "--push",
                             "--cache", tmp_path / "cache", "--json"))
    res = json.loads(p.stdout)
    want_tag = f"{world.host}/frontierkodiak/linnaeus-dev:{arch}-{VARIANT[arch]}-feat-new-model"
    assert res["tags"][0] == want_tag
    # an independent client sees the same image
    insp = json.loads(run("skopeo", "inspect", "--tls-verify=false", f"docker://{want_tag}").stdout)
    assert insp["Digest"] == res["digest"]
    # pulled back, it is whole and verifies
    out = tmp_path / "pulled"
    assert kiln.run("copy", "-q", want_tag, f"oci:{out}:x").stdout.strip() == res["digest"]
    assert kiln.run("fsck", "--deep", f"oci:{out}").returncode == 0
    cfg = json.loads(kiln.run("inspect", "--config", "--raw", f"oci:{out}:x").stdout)
    env = dict(e.split("=", 1) for e in cfg["config"]["Env"])
    assert env["CUDA_VERSION"] == "12.8.0"           # the base's env is kept
    # upstream's Dockerfile ENV lines, with the base's PATH under uv's directory
    assert env["PYTHONPATH"] == "/app/linnaeus:"
    assert env["PATH"] == ("/root/.local/bin:/usr/local/nvidia/bin:/usr/local/cuda/bin:"
                           "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    assert env["DEBIAN_FRONTEND"] == "noninteractive" and env["TZ"] == "Etc/UTC"
    assert cfg["config"].get("WorkingDir") == "/app/linnaeus"
    assert cfg["config"]["Cmd"] == ["/bin/bash"]
    man = json.loads(kiln.run("inspect", "--raw", f"oci:{out}:x").stdout)
    ann = man["annotations"]
    assert ann["org.opencontainers.image.revision"] == res["revision"]
    assert ann["org.opencontainers.image.base.name"].endswith(
        "nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04")
    files = set()
    unpacked = tmp_path / "rootfs"
    kiln.run("unpack", f"oci:{out}:x", unpacked)
    site = unpacked / "usr/local/lib/python3.11/dist-packages"
    assert (site / "torch" / "__init__.py").exists()
    assert (unpacked / "app/linnaeus/linnaeus/model.py").read_text() == "M = 1\n"
    assert (site / "flash_attn").exists() == (arch != "pre-ampere")
    # the static validation (the stand-in base does not run) passes for its
    # own arch, in the registry and in the layout; the arch is the one the
    # image records
    v = kiln.run("validate", want_tag, "--static")
    assert f"arch={arch}, from its files" in v.stdout, v.stdout
    assert v.stdout.count("\nok ") == 10, v.stdout
    assert kiln.run("validate", f"oci:{out}:x", "--arch", arch, "--static").returncode == 0
    # and fails for another one
    other = {"hopper": "ampere", "ampere": "hopper", "pre-ampere": "ampere"}[arch]
    bad = kiln.run("validate", f"oci:{out}:x", "--arch", other, "--static", check=False)
    assert bad.returncode == 1, bad.stdout
    assert "FAIL flash-attn" in bad.stdout or "FAIL torch" in bad.stdout


def test_local_source_has_no_branch_part_and_main_has_none(kiln, world, tmp_path):
    sets = make_inputs(tmp_path, "ampere")
    p = kiln.run(*build_args(sets, world, "--arch", "ampere", "--push", "--tag-suffix", "task123",
                             "--cache", tmp_path / "cache", "--json"))
    assert json.loads(p.stdout)["tags"][0].endswith(":ampere-stable-cu126-task123")
    src = tmp_path / "checkout"
    (src / "linnaeus").mkdir(parents=True)
    (src / "linnaeus" / "__init__.py").write_text("LOCAL = True\n")
    (src / "pyproject.toml").write_text(PYPROJECT)
    p = kiln.run(*build_args(sets, world, "--arch", "ampere", "--source", "local",
                             "--set", f"linnaeus_local={src}", "--branch", "feat/x", "--push",
                             "--cache", tmp_path / "cache", "--json"))
    assert json.loads(p.stdout)["tags"][0].endswith(":ampere-stable-cu126")


def test_same_inputs_same_digest_in_two_directories(kiln, world, tmp_path):
    sets = make_inputs(tmp_path, "pre-ampere")
    digests = []
    for n in ("one", "two"):
        d = tmp_path / n
        d.mkdir()
        p = subprocess.run([kiln.path, *build_args(sets, world, "--arch", "pre-ampere",
                                                   "--cache", d / "cache", "--output",
                                                   f"oci:{d}/out", "--json")],
                           capture_output=True, text=True, cwd=d,
                           env=dict(os.environ, TZ="Pacific/Kiritimati" if n == "two" else "UTC"))
        assert p.returncode == 0, p.stderr
        digests.append(json.loads(p.stdout)["digest"])
    assert digests[0] == digests[1]
    assert kiln.run("diff", f"oci:{tmp_path}/one/out:pre-ampere-stable-cu126",
                    f"oci:{tmp_path}/two/out:pre-ampere-stable-cu126").stdout == "identical\n"


def test_new_commit_rebuilds_and_pushes_only_the_top_layer(kiln, world, tmp_path):
    sets = make_inputs(tmp_path, "pre-ampere")
    args = build_args(sets, world, "--arch", "pre-ampere", "--push", "--cache",
                      tmp_path / "cache", "--json")
    first = json.loads(kiln.run(*args).stdout)
    assert first["layersBuilt"] >= 4
    repo = pathlib.Path(sets["linnaeus_git"])
    (repo / "linnaeus" / "__init__.py").write_text("BRANCH = 'main'\nVERSION = 2\n")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    run("git", "-C", repo, "commit", "-qam", "change", env=env)
    second = json.loads(kiln.run(*args).stdout)
    assert second["digest"] != first["digest"]
    assert second["layersBuilt"] == 1 and second["layersCached"] == first["layersBuilt"] - 1
    # the new source layer and the new config: nothing else goes up
    assert second["blobsCopied"] == 2
    diff = kiln.run("diff", first["tags"][0].rsplit(":", 1)[0] + "@" + first["digest"],
                    second["tags"][0], check=False).stdout
    assert "/app/linnaeus/linnaeus/__init__.py" in diff or "revision" in diff


def test_bad_inputs_leave_no_tag(kiln, world, tmp_path):
    sets = make_inputs(tmp_path, "pre-ampere")
    repo_tags = lambda: world.api("/v2/frontierkodiak/linnaeus-dev/tags/list")
    # a wheel whose content does not match the sha256 the index lists
    files = pathlib.Path(sets["pypi_index"][len("file://"):]).parent / "files"
    tqdm = next(files.glob("tqdm-*.whl"))
    good = tqdm.read_bytes()
    tqdm.write_bytes(good + b"tampered")
    p, line = kiln.fails(*build_args(sets, world, "--arch", "pre-ampere", "--push", "--cache",
                                     tmp_path / "cache"))
    assert "sha256" in line and "tqdm" in line
    tqdm.write_bytes(good)
    # an unreachable base
    p, line = kiln.fails(*build_args(sets, world, "--arch", "pre-ampere", "--push", "--cache",
                                     tmp_path / "cache", "--set", "base_image=nvidia/cuda:nope"))
    assert "nvidia/cuda:nope" in line
    # a failing build step
    failing = tmp_path / "failing-python"
    failing.write_text("#!/bin/sh\necho compile failed >&2\nexit 3\n")
    failing.chmod(0o755)
    p, line = kiln.fails(*build_args(dict(sets, build_python=str(failing)), world, "--arch",
                                     "ampere", "--push", "--cache", tmp_path / "cache"))
    status, _, body = repo_tags()
    assert status == 404 or json.loads(body).get("tags") in (None, [])


def test_validate_names_each_failed_check(kiln, tmp_path):
    from imagegen import make_image
    lay = tmp_path / "img"
    site = "usr/local/lib/python3.11/dist-packages"
    make_image(lay, "x", [{"usr/bin/python3.11": b"x",
                           f"{site}/torch/__init__.py": b"__version__ = '2.7.1+cu126'\n",
                           f"{site}/torch-2.7.1+cu126.dist-info/METADATA": b"Name: torch\n",
                           "app/linnaeus/README": b"x"},
                          {"usr/bin/.wh.python3.11": b""}],
               env=("CUDA_VERSION=12.6.0", "PYTHONPATH=/elsewhere"))
    p = kiln.run("validate", f"oci:{lay}:x", "--arch", "pre-ampere", "--static", check=False)
    assert p.returncode == 1
    lines = {l.split()[1]: l.split()[0] for l in p.stdout.splitlines() if l.startswith(("ok", "FAIL"))}
    assert lines["cuda_version"] == "FAIL" and lines["python"] == "FAIL"   # whited out in layer 1
    assert lines["torch"] == "ok" and lines["torchvision"] == "FAIL"
    assert lines["flash-attn"] == "ok" and lines["source"] == "ok"
    assert lines["linnaeus"] == "FAIL"                                     # not on PYTHONPATH
    assert lines["pythonpath"] == "FAIL" and lines["workdir"] == "FAIL"
    assert p.stdout.rstrip().endswith("7 checks failed")
    kiln.fails("validate", f"oci:{lay}:x", "--arch", "volta", "--static", code=3)


def test_verify_against_the_pushed_image(kiln, world, tmp_path):
    sets = make_inputs(tmp_path, "pre-ampere")
    res = json.loads(kiln.run(*build_args(sets, world, "--arch", "pre-ampere", "--push", "--cache",
                                          tmp_path / "cache-a", "--json")).stdout)
    tag = res["tags"][0]
    man = json.loads(kiln.run("inspect", "--raw", tag).stdout)
    given = json.loads(man["annotations"]["dev.kiln.recipe.variables"])
    assert given["arch"] == "pre-ampere" and given["linnaeus_git"] == sets["linnaeus_git"]
    assert man["annotations"]["dev.kiln.recipe.digest"].startswith("sha256:")
    # another runner, another cache: the variables come from the image itself
    from linnaeus_standins import LINNAEUS
    p = kiln.run("verify", LINNAEUS, "--against", tag, "--from-annotations",
                 "--mirror", f"docker.io={world.host}", "--cache", tmp_path / "cache-b")
    assert p.stdout == f"identical {res['digest']}\n"
    # the source moved on: verify says where
    repo = pathlib.Path(sets["linnaeus_git"])
    (repo / "linnaeus" / "__init__.py").write_text("BRANCH = 'main'\nX = 1\n")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    run("git", "-C", repo, "commit", "-qam", "moved", env=env)
    p = kiln.run("verify", LINNAEUS, "--against", tag, "--from-annotations",
                 "--mirror", f"docker.io={world.host}", "--cache", tmp_path / "cache-b",
                 check=False)
    assert p.returncode == 1
    assert "org.opencontainers.image.revision" in p.stdout


def test_second_runner_builds_nothing_with_a_cache_repo(kiln, world, tmp_path):
    sets = make_inputs(tmp_path, "ampere")
    cache_repo = f"{world.host}/ci/kiln-cache"
    common = ["--arch", "ampere", "--push", "--json", "--cache-repo", cache_repo]
    a = json.loads(kiln.run(*build_args(sets, world, *common, "--cache", tmp_path / "runner-a")).stdout)
    assert a["layersBuilt"] >= 5 and a["layersFromCacheRepo"] == 0
    tags = json.loads(world.api("/v2/ci/kiln-cache/tags/list")[2])["tags"]
    assert len([t for t in tags if t.startswith("kc-")]) == a["layersBuilt"]
    # runner B: an empty local cache, and the build step's program now fails if it runs
    pathlib.Path(sets["build_python"]).write_text("#!/bin/sh\necho ran >&2\nexit 9\n")
    b = json.loads(kiln.run(*build_args(sets, world, *common,
                                        "--cache", tmp_path / "runner-b")).stdout)
    assert b["layersBuilt"] == 0 and b["layersFromCacheRepo"] == a["layersBuilt"]
    assert b["digest"] == a["digest"]


def test_broken_cache_entries_are_ignored_with_a_warning(kiln, world, tmp_path):
    sets = make_inputs(tmp_path, "pre-ampere")
    cache_repo = f"{world.host}/ci/cache2"
    common = ["--arch", "pre-ampere", "--output", f"oci:{tmp_path}/out", "--json",
              "--cache-repo", cache_repo]
    a = json.loads(kiln.run(*build_args(sets, world, *common, "--cache", tmp_path / "a")).stdout)
    tags = sorted(t for t in json.loads(world.api("/v2/ci/cache2/tags/list")[2])["tags"]
                  if t.startswith("kc-"))
    # one entry replaced by garbage, one entry's blob deleted from the registry
    garbage = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}'
    import urllib.request
    req = urllib.request.Request(f"http://{world.host}/v2/ci/cache2/manifests/{tags[0]}",
                                 data=garbage, method="PUT",
                                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req).close()
    entry = json.loads(world.api(f"/v2/ci/cache2/manifests/{tags[1]}",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})[2])
    st, _, _ = world.api(f"/v2/ci/cache2/blobs/{entry['layers'][0]['digest']}", method="DELETE")
    assert st == 202
    p = kiln.run(*build_args(sets, world, *common, "--cache", tmp_path / "b"), check=False)
    assert p.returncode == 0, p.stderr
    b = json.loads(p.stdout)
    assert b["digest"] == a["digest"]
    assert b["layersBuilt"] == 2 and b["layersFromCacheRepo"] == a["layersBuilt"] - 2
    assert p.stderr.count("ignoring cache entry") == 2 and "is missing" in p.stderr
    assert kiln.run("fsck", "--deep", f"oci:{tmp_path}/out").returncode == 0


def test_eight_concurrent_builds_share_one_cache_repo(kiln, world, tmp_path):
    sets = make_inputs(tmp_path, "pre-ampere")
    cache_repo = f"{world.host}/ci/shared"
    procs = []
    for n in range(8):
        args = build_args(sets, world, "--arch", "pre-ampere", "--json", "--cache-repo", cache_repo,
                          "--cache", tmp_path / f"runner-{n}",
                          *(["--push"] if n % 2 == 0 else ["--output", f"oci:{tmp_path}/out-{n}"]))
        procs.append(subprocess.Popen([kiln.path, *args], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    digests = set()
    for p in procs:
        out, errs = p.communicate(timeout=600)
        assert p.returncode == 0, errs
        digests.add(json.loads(out)["digest"])
    assert len(digests) == 1
    for n in range(1, 8, 2):
        assert kiln.run("fsck", "--deep", f"oci:{tmp_path}/out-{n}").returncode == 0


def test_skip_if_built_costs_one_lookup(kiln, world, tmp_path):
    sets = make_inputs(tmp_path, "pre-ampere")
    args = build_args(sets, world, "--arch", "pre-ampere", "--push", "--json", "--skip-if-built",
                      "--cache", tmp_path / "cache")
    first = json.loads(kiln.run(*args).stdout)
    assert first["skipped"] is False and first["layersBuilt"] >= 4
    # another runner with an empty cache re-runs the same build: nothing is built,
    # the tags are put on the existing manifest
    second = json.loads(kiln.run(*build_args(sets, world, "--arch", "pre-ampere", "--push", "--json",
                                             "--skip-if-built", "--cache", tmp_path / "other")).stdout)
    assert second["skipped"] is True and second["layersBuilt"] == 0
    assert second["digest"] == first["digest"]
    assert kiln.run("digest", second["tags"][0]).stdout.strip() == first["digest"]
    # a new commit is a new input: built again
    repo = pathlib.Path(sets["linnaeus_git"])
    (repo / "linnaeus" / "__init__.py").write_text("Y = 1\n")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    run("git", "-C", repo, "commit", "-qam", "y", env=env)
    third = json.loads(kiln.run(*args).stdout)
    assert third["skipped"] is False and third["digest"] != first["digest"]


def test_cache_ls_show_prune(kiln, world, tmp_path):
    sets = make_inputs(tmp_path, "pre-ampere")
    repo = f"{world.host}/ci/cache3"
    a = json.loads(kiln.run(*build_args(sets, world, "--arch", "pre-ampere", "--json", "--output",
                                        f"oci:{tmp_path}/out", "--cache-repo", repo,
                                        "--cache", tmp_path / "c")).stdout)
    ls = kiln.run("cache", "ls", "--cache-repo", repo).stdout.splitlines()
    assert len(ls) == a["layersBuilt"]
    names = {l.split()[1] for l in ls}
    assert {"torch", "linnaeus", "system", "python-deps"} <= names
    tag = ls[0].split()[0]
    show = kiln.run("cache", "show", tag, "--cache-repo", repo).stdout
    assert f"tag      {tag}" in show and "key      sha256:" in show
    assert "inputs   {" in show and '"kind"' in show   # what the key is made of
    kiln.fails("cache", "show", "kc-nope", "--cache-repo", repo, code=5)
    out = kiln.run("cache", "prune", "--keep", "2", "--cache-repo", repo).stdout
    assert out.strip().endswith(f"{len(ls) - 2} of {len(ls)} entries removed")
    assert len(kiln.run("cache", "ls", "--cache-repo", repo).stdout.splitlines()) == 2
    out = kiln.run("cache", "prune", "--older-than", "0s", "--cache-repo", repo).stdout
    assert kiln.run("cache", "ls", "--cache-repo", repo).stdout == ""
    # a pruned cache only means a rebuild
    b = json.loads(kiln.run(*build_args(sets, world, "--arch", "pre-ampere", "--json", "--output",
                                        f"oci:{tmp_path}/out2", "--cache-repo", repo,
                                        "--cache", tmp_path / "d")).stdout)
    assert b["digest"] == a["digest"] and b["layersFromCacheRepo"] == 0


def test_wheels_fetched_over_http(kiln, world, tmp_path):
    import functools
    import http.server
    import threading
    sets = make_inputs(tmp_path, "pre-ampere")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        web = dict(sets)
        for k in ("torch_index", "pypi_index"):
            web[k] = sets[k].replace(f"file://{tmp_path}", base)
        res = json.loads(kiln.run(*build_args(web, world, "--arch", "pre-ampere", "--output",
                                              f"oci:{tmp_path}/out", "--cache", tmp_path / "c",
                                              "--json")).stdout)
        assert kiln.run("validate", f"oci:{tmp_path}/out:pre-ampere-stable-cu126", "--arch",
                        "pre-ampere", "--static").returncode == 0
        # same wheels, same image, whether read from disk or fetched
        local = json.loads(kiln.run(*build_args(sets, world, "--arch", "pre-ampere", "--output",
                                                f"oci:{tmp_path}/out2", "--cache", tmp_path / "c2",
                                                "--json")).stdout)
        assert res["layersBuilt"] >= 4
        d = kiln.run("diff", "--all", f"oci:{tmp_path}/out:pre-ampere-stable-cu126",
                     f"oci:{tmp_path}/out2:pre-ampere-stable-cu126", check=False).stdout
        # only the recorded variables differ: every layer is the same
        assert d.splitlines() and all(l.startswith("manifest annotation dev.kiln.recipe.variables")
                                      for l in d.splitlines()), d
        bad = dict(web, pypi_index=f"{base}/nowhere/simple")
        p, line = kiln.fails(*build_args(bad, world, "--arch", "pre-ampere", "--output",
                                         f"oci:{tmp_path}/out3", "--cache", tmp_path / "c3"))
        assert "nowhere" in line and ("404" in line or "no project page" in line)
    finally:
        srv.shutdown()


def _flaky_index(root, fail):
    """Serves root on 127.0.0.1; fail(path) returns (status, headers) to
    answer instead, or None.  .log: (path, status) of every GET."""
    import functools
    import http.server
    import threading

    log = []

    class H(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            ans = fail(self.path)
            if ans:
                status, headers = ans
                log.append((self.path, status))
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"busy")
                return
            log.append((self.path, 200))
            super().do_GET()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(H, directory=str(root)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.log = log
    return srv


def _web_sets(sets, tmp_path, srv):
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    return {k: v.replace(f"file://{tmp_path}", base) if k in ("torch_index", "pypi_index") else v
            for k, v in sets.items()}


FAST = {"KILN_RETRY_BASE_MS": "50"}


@pytest.mark.parametrize("retry_after", [None, "1"])
def test_fetch_503_once_then_ok_is_retried(kiln, world, tmp_path, retry_after):
    # None: the first GET of every index page and wheel answers 503; "1": the
    # first wheel GET answers 503 with Retry-After: 1.  Each is asked again
    # through the registry client's request path, into the same temp file.
    sets = make_inputs(tmp_path, "pre-ampere")
    asked = set()

    def fail(path):
        if retry_after and (asked or not path.endswith(".whl")):
            return None
        if path in asked:
            return None
        asked.add(path)
        return (503, [("Retry-After", retry_after)] if retry_after else [])

    srv = _flaky_index(tmp_path, fail)
    try:
        p = kiln.run(*build_args(_web_sets(sets, tmp_path, srv), world, "--arch", "pre-ampere",
                                 "--output", f"oci:{tmp_path}/out", "--cache", tmp_path / "c"), env=FAST)
        assert kiln.run("validate", f"oci:{tmp_path}/out:pre-ampere-stable-cu126", "--arch",
                        "pre-ampere", "--static").returncode == 0
        failed = [path for path, st in srv.log if st == 503]
        assert failed and all((path, 200) in srv.log for path in failed), srv.log
        assert any(path.endswith(".whl") for path in failed)
        if retry_after:
            assert len(failed) == 1 and ": 503, retry 1 in 1000 ms" in p.stderr, p.stderr
        assert "cannot create" not in p.stderr
    finally:
        srv.shutdown()


def test_fetch_always_503_is_one_error_naming_url_and_status(kiln, world, tmp_path):
    sets = make_inputs(tmp_path, "pre-ampere")
    srv = _flaky_index(tmp_path, lambda path: (503, []) if path.endswith(".whl") else None)
    try:
        web = _web_sets(sets, tmp_path, srv)
        p, line = kiln.fails(*build_args(web, world, "--arch", "pre-ampere", "--retry-times", "2",
                                         "--output", f"oci:{tmp_path}/out", "--cache", tmp_path / "c"),
                             env=FAST, code=6)
        # layers fetch in parallel: the wheel named is whichever failed first
        m = re.search(r"GET 'http://127\.0\.0\.1:" + str(srv.server_address[1]) +
                      r"(/[^']+\.whl)': HTTP 503 after 2 retries", line)
        assert m, line
        wheel = m.group(1)
        tries = [st for path, st in srv.log if path == wheel]
        # one fetch of it (the first and 2 retries) ended the build; a layer
        # running beside it may have begun another before the build stopped
        assert set(tries) == {503} and len(tries) >= 3, tries
        assert not (tmp_path / "out" / "index.json").exists()
        assert not list((tmp_path / "c").rglob("*.tmp-*"))
    finally:
        srv.shutdown()


def test_build_step_output_shared_through_the_cache_repo(kiln, world, tmp_path):
    sets = make_inputs(tmp_path, "ampere")
    repo = f"{world.host}/ci/outputs"
    a = json.loads(kiln.run(*build_args(sets, world, "--arch", "ampere", "--json", "--output",
                                        f"oci:{tmp_path}/a", "--cache-repo", repo,
                                        "--cache", tmp_path / "ra")).stdout)
    tags = json.loads(world.api("/v2/ci/outputs/tags/list")[2])["tags"]
    kbo = [t for t in tags if t.startswith("kbo-")]
    assert len(kbo) == 1
    entry = json.loads(world.api(f"/v2/ci/outputs/manifests/{kbo[0]}",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})[2])
    assert entry["artifactType"] == "application/vnd.dev.kiln.build-output.v1"
    assert entry["layers"][0]["mediaType"] == "application/vnd.dev.kiln.build-output.v1.tar+zstd"
    # runner B writes its layers otherwise (zstd): every layer key differs, but the
    # compile's output comes from the repository and the compiler never runs
    pathlib.Path(sets["build_python"]).write_text("#!/bin/sh\necho ran >&2\nexit 9\n")
    p = kiln.run(*build_args(sets, world, "--arch", "ampere", "--json", "--output",
                             f"oci:{tmp_path}/b", "--cache-repo", repo, "--compression", "zstd",
                             "--cache", tmp_path / "rb"))
    b = json.loads(p.stdout)
    assert b["layersFromCacheRepo"] == 0 and b["layersBuilt"] == a["layersBuilt"]
    # (the build succeeded although the compiler now fails: its output came from the repository)
    assert kiln.run("validate", f"oci:{tmp_path}/b:ampere-stable-cu126", "--arch",
                    "ampere", "--static").returncode == 0
    d = kiln.run("diff", f"oci:{tmp_path}/a:ampere-stable-cu126",
                 f"oci:{tmp_path}/b:ampere-stable-cu126", check=False).stdout
    assert "same content, different compression" in d


def test_lock_pins_the_build(kiln, world, tmp_path):
    from imagegen import make_image
    sets = make_inputs(tmp_path, "pre-ampere")
    lock = tmp_path / "linnaeus.lock.json"
    args = build_args(sets, world, "--arch", "pre-ampere", "--lock", lock)
    p = kiln.run("lock", *args[1:], "--cache", tmp_path / "c")
    doc = json.loads(lock.read_text())
    assert doc["base"]["digest"].startswith("sha256:")
    assert doc["layers"]["linnaeus"]["revision"] == run("git", "-C", sets["linnaeus_git"],
                                                        "rev-parse", "main").stdout.strip()
    out = lambda n: ["--output", f"oci:{tmp_path}/{n}", "--json", "--cache", tmp_path / n]
    first = json.loads(kiln.run(*args, "--locked", *out("one")).stdout)
    # the branch moves and the base tag is pushed again with other content
    repo = pathlib.Path(sets["linnaeus_git"])
    (repo / "linnaeus" / "__init__.py").write_text("MOVED = True\n")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    run("git", "-C", repo, "commit", "-qam", "moved", env=env)
    other = tmp_path / "other-base"
    make_image(other, "b", [{"etc/": ("dir",), "etc/changed": b"yes\n"}],
               env=("CUDA_VERSION=12.8.1",))
    kiln.run("copy", "-q", f"oci:{other}:b", f"{world.host}/nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04")
    second = json.loads(kiln.run(*args, "--locked", *out("two")).stdout)
    assert second["digest"] == first["digest"]
    # without the lock the build floats
    floating = json.loads(kiln.run(*build_args(sets, world, "--arch", "pre-ampere", "--lock",
                                               tmp_path / "none.json"), *out("three")).stdout)
    assert floating["digest"] != first["digest"]
    # an input missing from the lock: --locked refuses, naming it
    del doc["layers"]["torch"]
    lock.write_text(json.dumps(doc))
    p, line = kiln.fails(*args, "--locked", *out("four"), code=3)
    assert "layer 'torch' is not in the lock" in line
    p = kiln.run(*args, *out("five"))
    assert "torch is not in the lock" in p.stderr
    kiln.fails(*build_args(sets, world, "--arch", "pre-ampere", "--lock", tmp_path / "none.json"),
               "--locked", *out("six"), code=3)


def test_lock_with_an_unreachable_base_says_so(kiln, tmp_path):
    """The HEAD that looks for a cached manifest fails first: it must not
    crash kiln, and the error names the base and why."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = kiln.run("lock", LINNAEUS, "--mirror", f"docker.io=127.0.0.1:{port}", "--cache",
                 tmp_path / "c", "--lock", tmp_path / "l.json", check=False,
                 env={"KILN_RETRY_BASE_MS": "1"})
    assert p.returncode > 0, p.stderr   # an exit status, not a signal
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("kiln: error: base 'nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04'"), last
    assert not (tmp_path / "l.json").exists()
