"""The command line of the real binary: kiln help from the option table,
global options before the verb, numbers checked, the bash completion run
under bash, the man page against the environment kiln reads, and meson
install putting the man page and the completion in place."""
import os
import pathlib
import re
import shlex
import subprocess

import pytest

import imagegen
from conftest import ROOT
from registry_util import make_ca, make_server_cert


def _verbs(kiln):
    """The verbs kiln help lists."""
    out = kiln.run("help").stdout
    block = out.split("Verbs:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in block.splitlines()]


def _help_options(text):
    """The long options a help text lists, in order."""
    return re.findall(r"^  (?:-\w, |    )--([a-z0-9-]+)", text, re.M)


def _complete(kiln, words, cwd):
    """COMPREPLY of kiln's completion for words (the last one is completed)."""
    script = kiln.run("completion", "bash").stdout
    prog = (script + "\nCOMP_WORDS=(" + " ".join(shlex.quote(w) for w in words) + ")\n"
            f"COMP_CWORD={len(words) - 1}\n_kiln\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], capture_output=True,
                       text=True, cwd=cwd, timeout=60)
    assert p.returncode == 0, p.stderr
    return sorted(w for w in p.stdout.splitlines() if w)


# ---- help ----

def test_help_lists_every_verb_and_each_verb_every_option(kiln, tmp_path):
    verbs = _verbs(kiln)
    assert {"copy", "build", "append", "completion", "validate"} <= set(verbs)
    for verb in verbs:
        h = kiln.run("help", verb)
        assert h.stdout.splitlines()[0].startswith(f"usage: kiln {verb} [OPTIONS]")
        # kiln VERB --help is the same text
        assert kiln.run(verb, "--help").stdout == h.stdout
        opts = _help_options(h.stdout)
        assert len(opts) == len(set(opts)), f"{verb}: an option twice: {opts}"
        # every option bash completes for the verb (the table's) is in its help
        offered = [w[2:] for w in _complete(kiln, ["kiln", verb, "--"], tmp_path)]
        assert sorted(opts) == offered, verb
        # each with a description on its line or the next
        for line in h.stdout.splitlines():
            if re.match(r"^  (?:-\w, |    )--", line):
                assert len(line.split()) >= 2, line
        # the global groups go with every verb
        for o in ("insecure-registry", "authfile", "retry-times", "verbose", "quiet", "help"):
            assert o in opts, (verb, o)


def test_help_of_copy_names_the_registry_options(kiln):
    out = kiln.run("help", "copy").stdout
    assert "See kiln(1) for every option" not in out
    assert re.search(r"^      --insecure-registry HOST +\S", out, re.M)
    assert re.search(r"^      --jobs N +\S", out, re.M)
    assert re.search(r"^      --progress auto\|plain\|tty\|none$", out, re.M)


def test_help_of_an_unknown_verb_is_a_usage_error(kiln):
    p = kiln.run("help", "frobnicate", check=False)
    assert p.returncode == 2 and p.stdout == ""
    assert "kiln help: unknown verb 'frobnicate'" in p.stderr
    p = kiln.run("frobnicate", "--help", check=False)
    assert p.returncode == 2 and "unknown verb 'frobnicate'" in p.stderr
    # kiln alone: the verbs on stderr, exit 2; --help: on stdout, exit 0
    p = kiln.run(check=False)
    assert p.returncode == 2 and "Verbs:" in p.stderr and p.stdout == ""
    assert "Verbs:" in kiln.run("--help").stdout
    assert kiln.run("--version").stdout.startswith("kiln ")


# ---- global options before the verb ----

@pytest.fixture
def tls_registry(registry_factory, tmp_path):
    ca_crt, ca_key = make_ca(tmp_path / "ca")
    crt, key = make_server_cert(tmp_path / "ca", ca_crt, ca_key)
    return registry_factory(tls=(crt, key))


def test_insecure_registry_before_the_verb(kiln, tls_registry, tmp_path):
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"a": b"global options"}])
    ref = tls_registry.ref("glob/app", "v1")
    # without it the test CA is unknown: refused
    kiln.fails("copy", f"oci:{lay}:v1", ref, code=6)
    d = kiln.run("--insecure-registry", tls_registry.host, "copy", f"oci:{lay}:v1",
                 ref).stdout.strip()
    assert d.startswith("sha256:")
    # after the verb, between the operands, and with = : the same
    assert kiln.run("digest", ref, f"--insecure-registry={tls_registry.host}").stdout.strip() == d
    assert kiln.run("--retry-times", "0", "-q", "--insecure-registry", tls_registry.host,
                    "digest", ref).stdout.strip() == d


def test_verbose_and_quiet_before_the_verb(kiln, registry, tmp_path):
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"a": b"verbose"}])
    ref = registry.ref("glob/verbose", "v1")
    kiln.run("copy", f"oci:{lay}:v1", ref)
    p = kiln.run("-v", "digest", ref)
    assert "kiln: debug: " in p.stderr and " -> 200" in p.stderr
    assert "kiln: debug: " not in kiln.run("digest", ref).stderr
    # fsck prints its count unless -q, before or after the verb
    assert "blobs checked" in kiln.run("fsck", f"oci:{lay}").stdout
    assert kiln.run("-q", "fsck", f"oci:{lay}").stdout == ""
    assert kiln.run("fsck", f"oci:{lay}", "--quiet").stdout == ""


def test_a_verb_option_before_the_verb_is_refused(kiln, tmp_path):
    p = kiln.run("--platform", "linux/amd64", "copy", "oci:a", f"oci:{tmp_path}/b", check=False)
    assert p.returncode == 2
    assert "--platform is not a global option: put it after the verb" in p.stderr
    assert not (tmp_path / "b").exists()


def test_a_plan_refuses_what_only_a_build_uses(kiln, tmp_path):
    recipe = ROOT / "recipes" / "linnaeus" / "linnaeus.json"
    for opt in (["--push"], ["--output", f"oci:{tmp_path}/o"], ["--level", "3"]):
        p = kiln.run("build", recipe, "--dry-run", *opt, check=False)
        assert p.returncode == 2, p.stderr
        assert p.stderr.splitlines()[0] == f"kiln build: {opt[0]} does not go with --dry-run or --stage"
    assert not (tmp_path / "o").exists()
    # what a plan takes: variables, --json, and global options anywhere
    plan = kiln.run("-q", "build", recipe, "--dry-run", "--json", "--arch", "hopper",
                    "--insecure-registry", "127.0.0.1:1").stdout
    assert '"hopper-nightly-cu128"' in plan or "hopper-nightly-cu128" in plan


# ---- numbers ----

@pytest.mark.parametrize("args,msg", [
    (["--level", "abc"], "--level takes a number from 0 to 22, not 'abc'"),
    (["--level", "99"], "--level takes a number from 0 to 22, not '99'"),
    (["--level=-1"], "--level takes a number from 0 to 22, not '-1'"),
    (["--level", "3 "], "--level takes a number from 0 to 22, not '3 '"),
    (["-c", "lz4"], "--compression takes gzip, zstd or none, not 'lz4'"),
])
def test_bad_levels_are_usage_errors_that_write_nothing(kiln, tmp_path, args, msg):
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"a": b"levels"}])
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    for cmd in (["flatten", f"oci:{lay}:v1", "-t", f"oci:{tmp_path}/out:v1"],
                ["append", f"oci:{lay}:v1", "--layer", src, "-t", f"oci:{tmp_path}/out:v1"],
                ["build", tmp_path / "recipe.json", "--output", f"oci:{tmp_path}/out"]):
        p = kiln.run(*cmd, *args, check=False)
        assert p.returncode == 2, (cmd, p.stderr)
        assert p.stderr.splitlines()[0] == f"kiln {cmd[0]}: {msg}", p.stderr
        assert p.stderr.splitlines()[1].startswith(f"usage: kiln {cmd[0]} ")
        assert not (tmp_path / "out").exists()


def test_a_good_level_is_used(kiln, tmp_path):
    lay = tmp_path / "lay"
    imagegen.make_image(lay, "v1", [{"a": b"level nine " * 100}])
    kiln.run("flatten", f"oci:{lay}:v1", "-t", f"oci:{tmp_path}/out:v1", "--level=9")
    man = kiln.run("inspect", "--raw", f"oci:{tmp_path}/out:v1").stdout
    assert re.search(r"gzip-libdeflate-[0-9.]+-9\"", man), man


@pytest.mark.parametrize("args,msg", [
    (["--jobs", "0"], "--jobs takes a number from 1 to 32, not '0'"),
    (["--jobs", "many"], "--jobs takes a number from 1 to 32, not 'many'"),
    (["--retry-times", "101"], "--retry-times takes a number from 0 to 100, not '101'"),
    (["--chunk-size", "12"], "--chunk-size takes a size from 1k to 1T (N, Nk, NM or NG), not '12'"),
    (["--progress", "loud"], "--progress takes auto, plain, tty or none, not 'loud'"),
    (["--json=yes"], "--json takes no value"),
    (["--jobs"], "--jobs needs an argument (N)"),
])
def test_bad_values_of_copy(kiln, tmp_path, args, msg):
    p = kiln.run("copy", "oci:a", f"oci:{tmp_path}/b", *args, check=False)
    assert p.returncode == 2 and p.stderr.splitlines()[0] == f"kiln copy: {msg}"
    assert not (tmp_path / "b").exists()


# ---- bash completion ----

def test_completion_under_bash(kiln, tmp_path):
    (tmp_path / "auth.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    verbs = _verbs(kiln)
    assert _complete(kiln, ["kiln", ""], tmp_path) == sorted(verbs)
    assert _complete(kiln, ["kiln", "co"], tmp_path) == ["completion", "config", "copy"]
    assert _complete(kiln, ["kiln", "help", "fl"], tmp_path) == ["flatten"]
    assert _complete(kiln, ["kiln", "completion", ""], tmp_path) == ["bash"]
    assert _complete(kiln, ["kiln", "cache", ""], tmp_path) == ["ls", "prune", "show"]
    # options of the verb and the global ones, not another verb's
    opts = _complete(kiln, ["kiln", "copy", "--"], tmp_path)
    assert {"--platform", "--jobs", "--referrers", "--insecure-registry", "--help"} <= set(opts)
    assert "--layer" not in opts
    assert _complete(kiln, ["kiln", "append", "--k"], tmp_path) == [
        "--keep-caps", "--keep-modes", "--keep-owners"]
    # before the verb: the global options only
    assert "--platform" not in _complete(kiln, ["kiln", "--"], tmp_path)
    # a global option's argument is skipped when finding the verb
    assert _complete(kiln, ["kiln", "--insecure-registry", "h:5000", "-q", "build", "r.json",
                            "--ar"], tmp_path) == ["--arch"]
    # the choices of options that have them
    assert _complete(kiln, ["kiln", "append", "--compression", ""], tmp_path) == [
        "gzip", "none", "zstd"]
    assert _complete(kiln, ["kiln", "flatten", "-c", "z"], tmp_path) == ["zstd"]
    assert _complete(kiln, ["kiln", "validate", "oci:x", "--arch", ""], tmp_path) == [
        "ampere", "hopper", "pre-ampere", "turing"]
    assert _complete(kiln, ["kiln", "build", "--progress", "=", "p"], tmp_path) == ["plain"]
    # files for a file, directories for a directory
    assert _complete(kiln, ["kiln", "--authfile", ""], tmp_path) == ["auth.json", "sub"]
    assert _complete(kiln, ["kiln", "run", "--cache", ""], tmp_path) == ["sub"]
    # after "--": kiln run's command, no options
    assert _complete(kiln, ["kiln", "run", "oci:x", "--", "--net"], tmp_path) == []


# ---- the man page ----

SOURCES = ["oci", "layers", "registry", "sandbox", "recipes", "cli"]
# getenv() with a name held in a variable: sandbox/gpu.c's dir_list is
# called with these two names only
INDIRECT = {"sandbox/gpu.c": {"LD_LIBRARY_PATH", "PATH"}}


def _man_section(name):
    page = (ROOT / "docs" / "kiln.1").read_text()
    m = re.search(rf"^\.SH {name}\n(.*?)(?=^\.SH |\Z)", page, re.M | re.S)
    assert m, f"kiln.1 has no {name} section"
    return m.group(1)


def test_man_page_lists_every_environment_variable_kiln_reads():
    env = _man_section("ENVIRONMENT")
    listed = set()
    for line in env.splitlines():
        if line.startswith(".B "):
            listed.update(n.strip() for n in line[3:].split(","))
    read, indirect = set(), set()
    for d in SOURCES:
        for f in sorted((ROOT / d).rglob("*.c")):
            text = f.read_text()
            read.update(re.findall(r'\bgetenv\("([A-Za-z_0-9]+)"\)', text))
            if re.search(r"\bgetenv\((?!\")", text):
                indirect.add(str(f.relative_to(ROOT)))
    assert indirect == set(INDIRECT), "getenv() of a name in a variable: list it in INDIRECT"
    for names in INDIRECT.values():
        read |= names
    assert {"KILN_VERBOSE", "KILN_RETRY_BASE_MS", "REGISTRY_AUTH_FILE", "SOURCE_DATE_EPOCH",
            "TMPDIR"} <= read
    missing = sorted(read - listed)
    assert not missing, f"kiln.1 ENVIRONMENT lacks {missing}"
    stale = sorted(listed - read)
    assert not stale, f"kiln.1 ENVIRONMENT lists {stale}, which kiln does not read"


def _build_dir(kiln):
    for d in pathlib.Path(kiln.path).resolve().parents:
        if (d / "meson-private").is_dir():
            return d
    raise AssertionError(f"{kiln.path} is not in a meson build directory")


def test_meson_install_puts_the_man_page_and_the_completion(kiln, tmp_path):
    dest = tmp_path / "dest"
    p = subprocess.run(["meson", "install", "-C", str(_build_dir(kiln)), "--no-rebuild",
                        "--destdir", str(dest)], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    assert p.returncode == 0, p.stdout + p.stderr
    man = list(dest.rglob("man1/kiln.1"))
    assert len(man) == 1, list(dest.rglob("*"))
    assert man[0].read_bytes() == (ROOT / "docs" / "kiln.1").read_bytes()
    comp = list(dest.rglob("bash-completion/completions/kiln"))
    assert len(comp) == 1
    assert comp[0].read_text() == kiln.run("completion", "bash").stdout
    assert any(p.name == "kiln" and p.parent.name == "bin" for p in dest.rglob("kiln"))
