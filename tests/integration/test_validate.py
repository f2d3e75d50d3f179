"""kiln validate: a linnaeus-shaped image checked against the expectations
its recipe carries, by running them inside the image (the default) and
from its files (--static).  The images are real: Debian 12 with Python 3.11
from real .debs, stand-in torch and flash_attn wheels, a real C extension
(validate_standins.py)."""
import json
import os
import pathlib
import shutil

import pytest

from recipes_helpers import kiln, kiln_fails, write_recipe
from validate_standins import (PROFILES, linnaeus_image, profile_wheels, python_base)

GPU_HOST = os.path.exists("/dev/nvidiactl")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(work dir, base place, cache dir): the Python base, built once."""
    work = tmp_path_factory.mktemp("validate")
    base, cache = python_base(work)
    return work, base, cache


def image(world, tag, arch, **kw):
    work, base, _ = world
    init = kw.pop("linnaeus_init", "BRANCH = 'main'\n")
    return linnaeus_image(work, base, tag, profile_wheels(work, arch, **kw), linnaeus_init=init)


def validate(world, place, *args, code=None):
    p = kiln("validate", place, "--cache", world[2], *args, check=False)
    if code is not None:
        assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    return p


def checks(out):
    """{name: (state, detail)} of the check lines (the last line of a name wins)."""
    got = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0] in ("ok", "FAIL", "skip"):
            got[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "")
    return got


@pytest.mark.parametrize("arch", ["hopper", "ampere", "turing", "pre-ampere"])
def test_each_profile_passes_in_the_image_and_from_its_files(world, arch):
    place = image(world, f"ok-{arch}", arch)
    p = validate(world, place, "--arch", arch, code=0)
    c = checks(p.stdout)
    torch, vision, audio, cuda, fa, ext = PROFILES[arch]
    assert p.stdout.splitlines()[0].endswith(f"arch={arch}, in the image"), p.stdout
    assert c["python"] == ("ok", "/usr/bin/python3.11 3.11.2")
    assert c["torch"] == ("ok", f"torch {torch}; torch.version.cuda {cuda}"), p.stdout
    assert c["torchvision"][0] == c["torchaudio"][0] == "ok"
    assert c["linnaeus"][0] == "ok" and "/app/linnaeus/linnaeus/__init__.py" in c["linnaeus"][1]
    assert c["source"][0] == c["workdir"][0] == c["pythonpath"][0] == c["cuda_version"][0] == "ok"
    if fa:
        names = "flash_attn_func, flash_attn_varlen_func"
        assert c["flash-attn"] == ("ok", f"flash_attn {fa}; imports {names}"), p.stdout
        assert c["flash-attn-ext"] == ("ok", f"{ext} loads")
    else:
        assert c["flash-attn"][0] == "ok", p.stdout
        assert "import flash_attn fails, as expected (ModuleNotFoundError" in c["flash-attn"][1]
        assert "flash-attn-ext" not in c
    # no GPU asked for: its checks are skipped, and the report says why
    assert c["cuda"] == ("skip", "a GPU check: needs --gpu (a host with NVIDIA devices)")
    assert c["capability"][0] == "skip"
    assert "GPU checks skipped" in p.stdout and p.stdout.rstrip().endswith("skipped)")
    # the same from the files alone
    s = validate(world, place, "--arch", arch, "--static", code=0)
    sc = checks(s.stdout)
    assert sc["torch"][0] == "ok" and torch in sc["torch"][1], s.stdout
    assert sc["flash-attn"][0] == "ok" and sc["python"] == ("ok", "/usr/bin/python3.11 present")


def test_wrong_torch_fails_naming_expected_and_found(world):
    place = image(world, "wrong-torch", "ampere", torch="2.8.0+cu128")
    p = validate(world, place, "--arch", "ampere", code=1)
    c = checks(p.stdout)
    assert c["torch"] == ("FAIL", "torch 2.8.0+cu128, expected 2.7.1 with +cu126"), p.stdout
    # the extension was built against this torch: it loads
    assert c["flash-attn-ext"][0] == "ok"
    s = validate(world, place, "--arch", "ampere", "--static", code=1)
    assert checks(s.stdout)["torch"][0] == "FAIL" and "expected 2.7.1 with +cu126" in s.stdout
    assert p.stdout.rstrip().endswith("1 check failed")


def test_extension_built_for_another_torch_does_not_load(world):
    work, base, _ = world
    from validate_standins import flash_attn_wheel, torch_wheels
    wheels = torch_wheels(work, "2.7.1+cu126", "0.22.1+cu126", "2.7.1+cu126", "12.6")
    wheels.append(flash_attn_wheel(work, "2.7.4.post1", "flash_attn_2_cuda", "2.6.0+cu124"))
    place = linnaeus_image(work, base, "stale-ext", wheels)
    c = checks(validate(world, place, "--arch", "ampere", code=1).stdout)
    # importing flash_attn imports the extension: both name the symbol
    assert c["flash-attn"][0] == "FAIL" and "undefined symbol" in c["flash-attn"][1]
    assert c["flash-attn-ext"][0] == "FAIL"
    assert "built against torch 2.6.0+cu124, the image has 2.7.1+cu126" in c["flash-attn-ext"][1]


def test_flash_attn_missing_on_ampere_fails(world):
    place = image(world, "ampere-no-fa", "ampere", flash_attn=None)
    c = checks(validate(world, place, "--arch", "ampere", code=1).stdout)
    assert c["flash-attn"] == ("FAIL", "import flash_attn: ModuleNotFoundError: "
                                       "No module named 'flash_attn'")


def test_flash_attn_present_on_turing_fails(world):
    place = image(world, "turing-fa", "turing", flash_attn="v2")
    for arch in ("turing", "pre-ampere"):
        c = checks(validate(world, place, "--arch", arch, code=1).stdout)
        assert c["flash-attn"][0] == "FAIL"
        assert c["flash-attn"][1].startswith("flash_attn imports (/usr/local/lib/python3.11/"
                                             "dist-packages/flash_attn/__init__.py), but must not")
    s = validate(world, place, "--arch", "turing", "--static", code=1)
    assert checks(s.stdout)["flash-attn"][0] == "FAIL" and "must not be" in s.stdout


def test_hopper_with_only_flash_attn_3_fails_both_ways(world):
    place = image(world, "hopper-fa3", "hopper", flash_attn="fa3-only")
    c = checks(validate(world, place, "--arch", "hopper", code=1).stdout)
    assert c["flash-attn"] == ("FAIL", "import flash_attn: ModuleNotFoundError: "
                                       "No module named 'flash_attn'")
    s = validate(world, place, "--arch", "hopper", "--static", code=1)
    sc = checks(s.stdout)
    assert sc["flash-attn"] == ("FAIL", "no module flash_attn on the image's Python path "
                                        "(the image has flash_attn_3 3.0.0b1)"), s.stdout


def test_linnaeus_that_raises_fails_with_its_last_traceback_line(world):
    place = image(world, "bad-linnaeus", "turing",
                  linnaeus_init="import os\nraise RuntimeError('config.yaml not found in ' + os.getcwd())\n")
    p = validate(world, place, "--arch", "turing", code=1)
    c = checks(p.stdout)
    assert c["linnaeus"] == ("FAIL", "import linnaeus: RuntimeError: config.yaml not found in "
                                     "/app/linnaeus")
    assert c["torch"][0] == "ok"


def test_python_dying_in_a_check_names_that_check(world):
    place = image(world, "segv", "turing",
                  linnaeus_init="import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    p = validate(world, place, "--arch", "turing", code=1)
    c = checks(p.stdout)
    assert c["linnaeus"][0] == "FAIL"
    assert c["linnaeus"][1].startswith("python died during this check: exit status 139 (signal 11)")
    assert c["source"] == ("skip", "not checked: python did not get this far")
    assert c["torch"][0] == "ok"


def test_image_without_the_interpreter(world):
    work, _, _ = world
    deb = f"oci:{work}/deb:deb"  # the rootfs without Python
    p = validate(world, deb, "--arch", "turing", code=1)
    c = checks(p.stdout)
    assert c["python"][0] == "FAIL" and "cannot run '/usr/bin/python3.11' in the image" in c["python"][1]
    assert c["torch"] == ("skip", "not checked: python did not get this far")


@pytest.mark.skipif(GPU_HOST, reason="this host has NVIDIA devices: scripts/gpu-check.sh covers --gpu")
def test_gpu_without_nvidia_devices_fails_that_check(world):
    place = image(world, "gpu-ampere", "ampere")
    p = validate(world, place, "--arch", "ampere", "--gpu", code=1)
    c = checks(p.stdout)
    assert c["gpu"][0] == "FAIL" and "no NVIDIA device" in c["gpu"][1], p.stdout
    assert c["cuda"] == ("skip", "no NVIDIA device to run on")
    assert c["flash-attn-run"] == ("skip", "no NVIDIA device to run on")
    # the checks that need no GPU still ran
    assert c["torch"][0] == c["flash-attn-ext"][0] == "ok"
    assert p.stdout.rstrip().endswith("1 check failed")
    # a smoke run needs the GPU it was asked with
    p = validate(world, place, "--arch", "ampere", "--gpu", "--smoke", "true", code=1)
    assert checks(p.stdout)["smoke"][0] == "skip"


def test_smoke_reports_the_exit_status(world):
    place = image(world, "smoke", "turing")
    p = validate(world, place, "--arch", "turing", "--smoke", "pwd; echo $PYTHONPATH; exit 3",
                 code=1)
    c = checks(p.stdout)
    assert c["smoke"] == ("FAIL", "exit status 3: pwd; echo $PYTHONPATH; exit 3")
    # in the image: its workdir and env, the command's output shown
    assert "/app/linnaeus\n/app/linnaeus:\n" in p.stdout
    assert p.stdout.rstrip().endswith("1 check failed")
    # --run is the older name; a passing command passes
    p = validate(world, place, "--arch", "turing", "--run",
                 "python3.11 -c 'import linnaeus, torch; print(torch.__version__)'", code=0)
    assert checks(p.stdout)["smoke"][0] == "ok" and "2.7.1+cu126\n" in p.stdout


def test_no_network_in_the_image(world):
    """A port the host listens on, on 127.0.0.1, is not there inside."""
    import socket
    place = image(world, "net", "turing")
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), 1).close()  # reachable here
        p = validate(world, place, "--arch", "turing", "--smoke",
                     f"python3.11 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 1)'",
                     code=1)
    assert checks(p.stdout)["smoke"][0] == "FAIL"
    assert "ConnectionRefusedError" in p.stderr, p.stderr


def test_static_reads_an_image_whose_blobs_are_only_in_a_layout(world, tmp_path):
    place = image(world, "copied", "ampere")
    lay = tmp_path / "copy"
    kiln("copy", place, f"oci:{lay}:x")
    p = kiln("validate", f"oci:{lay}:x", "--arch", "ampere", "--static", check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert checks(p.stdout)["flash-attn-ext"][0] == "skip"
    # and in the image, with a cold cache of its own
    p = kiln("validate", f"oci:{lay}:x", "--arch", "ampere", "--cache", tmp_path / "cold",
             check=False)
    assert p.returncode == 0, p.stdout + p.stderr


def test_in_the_image_from_a_registry(world, registry_factory, tmp_path):
    """The layers are pulled into the cache and unpacked there: a registry
    reference runs like a layout."""
    place = image(world, "pushed", "hopper")
    reg = registry_factory()
    ref = f"{reg.host}/linnaeus/dev:hopper"
    kiln("copy", place, ref)
    p = kiln("validate", ref, "--arch", "hopper", "--cache", tmp_path / "fresh", check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert checks(p.stdout)["flash-attn-ext"] == ("ok", "flash_attn_3_cuda loads")


def test_the_image_records_its_variables(world):
    """An image built from a recipe named linnaeus.json: validate takes the
    arch it was built with from its annotations; --arch still wins."""
    work, base, _ = world
    place = linnaeus_image(work, base, "recorded", profile_wheels(work, "hopper"),
                           recipe_name="linnaeus.json",
                           variables={"arch": {"default": "ampere"}}, sets=["arch=hopper"])
    p = validate(world, place, code=0)
    assert "arch=hopper, in the image" in p.stdout.splitlines()[0]
    p = validate(world, place, "--arch", "ampere", code=1)
    assert checks(p.stdout)["torch"][0] == "FAIL"


def test_without_an_arch_it_asks_for_one(world):
    work, base, _ = world
    place = image(world, "no-arch", "turing")
    p = validate(world, place, code=2)
    assert "give --set arch=VALUE" in p.stderr and "usage: kiln validate" in p.stderr
    # an image of another recipe: the shipped one is not silently used
    place = linnaeus_image(work, base, "other-recipe", profile_wheels(work, "turing"),
                           recipe_name="image.json")
    p = validate(world, place, "--arch", "turing", code=2)
    assert "was built from recipe 'image.json': give it with --recipe FILE" in p.stderr


def test_a_recipe_of_ones_own(world, tmp_path):
    """The checks come from the recipe: a recipe with its own "validate"."""
    place = image(world, "own", "ampere")
    r = write_recipe(tmp_path / "mine.json", {
        "recipe": 1, "base": "scratch", "layers": [],
        "variables": {"want_torch": "2.7"},
        "validate": {"python": "python3.11", "env": {"PYTHONPATH": "/app"},
                     "checks": [
                         {"name": "torch", "module": "torch", "version": "${want_torch}"},
                         {"name": "numpy", "module": "numpy", "absent": True},
                         {"name": "sum", "code": "assert sum([1, 2]) == 3"},
                         {"name": "later", "when": "", "module": "nothing"}]}})
    p = validate(world, place, "--recipe", r, code=0)
    c = checks(p.stdout)
    assert c["torch"] == ("ok", "torch 2.7.1+cu126") and c["sum"] == ("ok", "its code ran")
    assert c["numpy"][0] == "ok" and "later" not in c and "workdir" not in c
    assert c["python"][0] == "ok" and "source" not in c
    p = validate(world, place, "--recipe", r, "--set", "want_torch=2.8", code=1)
    assert checks(p.stdout)["torch"] == ("FAIL", "torch 2.7.1+cu126, expected 2.8")
    # a bad "validate" object is named with its place in the file
    bad = write_recipe(tmp_path / "bad.json", {
        "recipe": 1, "base": "scratch", "layers": [],
        "validate": {"checks": [{"name": "x", "module": "x", "absent": True, "version": "1"}]}})
    line = kiln_fails("validate", place, "--recipe", bad, code=3)
    assert "bad.json' at line" in line and "'version' in check 'x' contradicts 'absent'" in line
    none = write_recipe(tmp_path / "none.json", {"recipe": 1, "base": "scratch", "layers": []})
    line = kiln_fails("validate", place, "--recipe", none, code=5)
    assert "has no 'validate' object" in line


def test_usage_errors(world):
    place = image(world, "usage", "turing")
    for args, msg in ((["--static", "--gpu"], "--gpu runs the image: not with --static"),
                      (["--static", "--smoke", "true"], "--smoke runs the image"),
                      (["--recipe", "nonesuch"], None)):
        p = kiln("validate", place, "--arch", "turing", *args, check=False)
        if msg:
            assert p.returncode == 2 and msg in p.stderr, p.stderr
        else:
            assert p.returncode == 5 and "no recipe 'nonesuch' is shipped with kiln" in p.stderr
    line = kiln_fails("validate", place, "--arch", "volta", code=3)
    assert "invalid value 'volta' for variable 'arch'" in line
