"""Shared fixtures: the kiln binary, per-test temp dirs, image-spec schemas."""
import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(os.environ.get("KILN_SOURCE_ROOT", pathlib.Path(__file__).resolve().parents[2]))
SCHEMA_DIR = pathlib.Path("/usr/share/gocode/src/github.com/opencontainers/image-spec/schema")


class Kiln:
    def __init__(self, path):
        self.path = path

    def run(self, *args, check=True, input=None, env=None, timeout=300):
        e = dict(os.environ)
        if env:
            e.update(env)
        p = subprocess.run([self.path, *map(str, args)], capture_output=True, text=True,
                           input=input, env=e, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(
                f"kiln {' '.join(map(str, args))} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def fails(self, *args, code=None, **kw):
        """Runs kiln expecting failure: a non-zero exit (not a signal), one error line."""
        p = self.run(*args, check=False, **kw)
        assert p.returncode > 0, f"expected failure, got {p.returncode}: {p.stdout} {p.stderr}"
        if code is not None:
            assert p.returncode == code, (p.returncode, p.stderr)
        errs = [l for l in p.stderr.splitlines() if l.startswith("kiln: error:")]
        assert len(errs) == 1, f"expected one error line, got: {p.stderr!r}"
        return p, errs[0]


@pytest.fixture(scope="session")
def kiln():
    path = os.environ.get("KILN") or str(ROOT / "build" / "cli" / "kiln")
    assert os.access(path, os.X_OK), f"kiln binary not found at {path}; build first"
    return Kiln(path)


def run(*cmd, cwd=None, check=True, env=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, cwd=cwd, env=e)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}: {p.stdout} {p.stderr}")
    return p


def _strip_ids(node, top=True):
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "id" and isinstance(v, str) and not top:
                continue
            out[k] = _strip_ids(v, False)
        return out
    if isinstance(node, list):
        return [_strip_ids(v, False) for v in node]
    return node


@pytest.fixture(scope="session")
def oci_schema():
    """validate(kind, obj): checks obj against the image-spec JSON schema of kind
    ('manifest', 'index', 'config', 'layout')."""
    import jsonschema

    files = {p.name: p for p in SCHEMA_DIR.glob("*.json")}
    assert "image-manifest-schema.json" in files, "image-spec schemas missing"
    store = {}
    for name, path in files.items():
        doc = _strip_ids(json.loads(path.read_text()))
        uri = path.resolve().as_uri()
        doc["id"] = uri
        store[uri] = doc
    names = {"manifest": "image-manifest-schema.json", "index": "image-index-schema.json",
             "config": "config-schema.json", "layout": "image-layout-schema.json"}

    def validate(kind, obj):
        uri = files[names[kind]].resolve().as_uri()
        schema = store[uri]
        resolver = jsonschema.RefResolver(base_uri=uri, referrer=schema, store=store)
        jsonschema.Draft4Validator(schema, resolver=resolver).validate(obj)

    return validate


def blob_path(layout, digest):
    alg, hexd = digest.split(":")
    return pathlib.Path(layout) / "blobs" / alg / hexd


def read_index(layout):
    return json.loads((pathlib.Path(layout) / "index.json").read_text())


def wait_for_state(proc, pred):
    """Waits until pred() holds (a file a running kiln writes has appeared),
    or proc has exited; True when pred() held.  A test that kills kiln in the
    middle of its work waits for that work to be under way, not for a time."""
    import time
    while not pred():
        if proc.poll() is not None:
            return pred()
        time.sleep(0.005)
    return True


@pytest.fixture
def umoci_image(tmp_path):
    """A small layout made by umoci: tag 'base', one layer with /etc/hello and a symlink."""
    lay = tmp_path / "umoci"
    run("umoci", "init", "--layout", lay)
    run("umoci", "new", "--image", f"{lay}:base")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hello").write_text("hello from umoci\n")
    run("umoci", "insert", "--rootless", "--image", f"{lay}:base", root / "etc", "/etc")
    run("umoci", "config", "--image", f"{lay}:base", "--config.env", "A=1",
        "--config.cmd", "/bin/sh")
    return lay


# ---- figures: numbers the hardening tests measure, printed at the end of the run ----

class Figures:
    """figures.count(name, n) adds to a plain figure; figures.zero(name, n) to one
    that must stay 0 (the run fails otherwise)."""

    def __init__(self):
        self.values = {}
        self.must_be_zero = set()

    def count(self, name, n=1):
        self.values[name] = self.values.get(name, 0) + n

    def zero(self, name, n=0):
        self.must_be_zero.add(name)
        self.count(name, n)


_FIGURES = Figures()


@pytest.fixture(scope="session")
def figures():
    return _FIGURES


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _FIGURES.values:
        return
    terminalreporter.write_sep("-", "figures")
    for name in sorted(_FIGURES.values):
        mark = " (must be 0)" if name in _FIGURES.must_be_zero else ""
        terminalreporter.write_line(f"{name}: {_FIGURES.values[name]}{mark}")


def pytest_sessionfinish(session, exitstatus):
    # per-file runs (tests/meson.build): scripts/test.sh adds the files up
    out = os.environ.get("KILN_FIGURES_DIR")
    if out and _FIGURES.values:
        os.makedirs(out, exist_ok=True)
        name = "-".join(pathlib.Path(a).stem for a in session.config.args) or "all"
        with open(os.path.join(out, f"{name}.json"), "w") as f:
            json.dump({"values": _FIGURES.values, "must_be_zero": sorted(_FIGURES.must_be_zero)}, f)
    bad = [n for n in _FIGURES.must_be_zero if _FIGURES.values.get(n, 0) != 0]
    if bad:
        session.exitstatus = 1


# ---- registry fixtures (tests/integration/registry_util.py) ----

@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """An open docker-registry on 127.0.0.1 (plain http; loopback)."""
    from registry_util import Registry

    r = Registry(tmp_path_factory.mktemp("registry"))
    yield r
    r.stop()


@pytest.fixture
def registry_factory(tmp_path):
    """registry_factory(auth=..., tls=...) starts a private registry for one test."""
    from registry_util import Registry

    started = []

    def make(**kw):
        r = Registry(tmp_path / f"reg{len(started)}", **kw)
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()


# Tests whose every run is one case of a hardening figure; a failed run
# counts against the must-be-0 figure of its group.
_FIGURE_GROUPS = [
    ("test_layers_unpack.py::test_hostile_", "unpack: hostile cases tried",
     "unpack: hostile cases / escapes or unclear refusals"),
    ("test_layers_unpack.py::test_escaping_links_", "unpack: hostile cases tried",
     "unpack: hostile cases / escapes or unclear refusals"),
    ("test_layers_unpack.py::test_gzip_bomb", "unpack: hostile cases tried",
     "unpack: hostile cases / escapes or unclear refusals"),
    ("test_layers_unpack.py::test_zstd_window", "unpack: hostile cases tried",
     "unpack: hostile cases / escapes or unclear refusals"),
    ("test_layers_unpack.py::test_truncated_tar", "unpack: hostile cases tried",
     "unpack: hostile cases / escapes or unclear refusals"),
    ("test_layers_unpack.py::test_legitimate_", "unpack: legitimate-but-scary runs",
     "unpack: legitimate-but-scary runs / false refusals"),
    ("test_layers_unpack.py::test_sparse_", "unpack: sparse cases tried",
     "unpack: sparse cases / holes filled or limits missed"),
    ("test_layers_unpack.py::test_deep_tree_", "unpack: deep and wide trees tried",
     "unpack: deep and wide trees / failures (fd limit, modes)"),
    ("test_layers_unpack.py::test_wide_tree_", "unpack: deep and wide trees tried",
     "unpack: deep and wide trees / failures (fd limit, modes)"),
    ("test_layout_safety.py::test_fifo_", "layouts: FIFO cases tried (files x verbs)",
     "layouts: FIFO cases / hangs or unclear errors"),
    ("test_registry_fault_matrix.py::", "registry: fault matrix runs (kinds x seeds x pull, push)",
     "registry: fault matrix runs / failures that were not clean"),
    ("test_registry_faults.py::", "registry: faulted runs",
     "registry: faulted runs / failures that were not clean"),
    ("test_registry_http.py::", "registry: faulted runs",
     "registry: faulted runs / failures that were not clean"),
    ("test_registry_auth.py::test_registry_echoed_", "registry: error bodies echoing credentials",
     "registry: error bodies echoing credentials / secrets printed"),
    ("test_registry_auth.py::", "registry: auth runs with secrets grepped",
     "registry: auth runs / secrets found"),
    ("test_foundation.py::test_hostile_oci_archive", "archives: hostile archives tried",
     "archives: hostile archives / escapes"),
    ("test_archive_reading.py::test_hostile_", "archives: hostile archives tried",
     "archives: hostile archives / escapes"),
]


def pytest_runtest_logreport(report):
    if report.when != "call":
        return
    for pattern, total, bad in _FIGURE_GROUPS:
        if pattern in report.nodeid:
            _FIGURES.count(total)
            _FIGURES.zero(bad, 1 if report.failed else 0)
