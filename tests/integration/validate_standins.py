"""Small linnaeus-shaped images that really run, for kiln validate: a real
Debian 12 root filesystem (scripts/setup.sh's bookworm-gcc.tar), Python 3.11
installed by a debs layer from a local mirror of the real .debs
(linnaeus-debs/), and stand-in torch, torchvision, torchaudio, flash_attn
and linnaeus packages whose flash_attn carries a real C extension that
checks, when it is imported, the torch it was built against."""
import os
import pathlib

from recipes_helpers import apt_layer, kiln, make_wheel, mirror_of, run, sha256, write_recipe

CACHE = pathlib.Path(os.environ.get("KILN_TEST_ROOTFS_DIR", "/var/cache/kiln-test"))
ROOTFS = CACHE / "bookworm-gcc.tar"
LINNAEUS_DEBS = pathlib.Path(os.environ.get("KILN_TEST_LINNAEUS_DEBS_DIR",
                                            CACHE / "linnaeus-debs"))
SITE = "/usr/local/lib/python3.11/dist-packages"
PYTHON = "/usr/bin/python3.11"
EXT_SUFFIX = ".cpython-311-x86_64-linux-gnu.so"

# what each profile's image holds: torch, torchvision, torchaudio, torch's
# CUDA, FlashAttention (None: none) and its extension module
PROFILES = {
    "hopper": ("2.8.0rc0+cu128", "0.23.0.dev20250601+cu128", "2.8.0.dev20250601+cu128", "12.8",
               "3.0.0b3", "flash_attn_3_cuda"),
    "ampere": ("2.7.1+cu126", "0.22.1+cu126", "2.7.1+cu126", "12.6", "2.7.4.post1",
               "flash_attn_2_cuda"),
    "turing": ("2.7.1+cu126", "0.22.1+cu126", "2.7.1+cu126", "12.6", None, None),
}
PROFILES["pre-ampere"] = PROFILES["turing"]

# The extension: a real CPython module that, like FlashAttention's, only
# loads against the torch it was compiled for.
EXT_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "NAME", "stand-in kernels", -1,
                                 NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_NAME(void)
{
        PyObject *torch = PyImport_ImportModule("torch"), *v;
        const char *have;

        if (!torch)
                return NULL;
        v = PyObject_GetAttrString(torch, "__version__");
        Py_DECREF(torch);
        if (!v)
                return NULL;
        have = PyUnicode_AsUTF8(v);
        if (!have || strcmp(have, BUILT_FOR) != 0) {
                PyErr_Format(PyExc_ImportError,
                             "NAME" EXT_SUFFIX ": undefined symbol: _ZN3c1017standin_torch_abiEv "
                             "(built against torch %s, the image has %s)", BUILT_FOR,
                             have ? have : "?");
                Py_DECREF(v);
                return NULL;
        }
        Py_DECREF(v);
        return PyModule_Create(&def);
}
"""


def python_headers(work):
    """Python 3.11's headers from the real libpython3.11-dev .deb."""
    root = pathlib.Path(work) / "py-headers"
    if not (root / "usr/include/python3.11/Python.h").exists():
        deb = sorted(LINNAEUS_DEBS.glob("libpython3.11-dev_*.deb"))
        assert deb, f"no libpython3.11-dev .deb under {LINNAEUS_DEBS}: run scripts/setup.sh"
        root.mkdir(parents=True, exist_ok=True)
        run("dpkg-deb", "-x", deb[0], root)
    return root


def compile_extension(work, name, built_for):
    """NAME.cpython-311-x86_64-linux-gnu.so, built with gcc."""
    work = pathlib.Path(work)
    inc = python_headers(work)
    src = work / f"{name}-{built_for}.c"
    src.write_text(EXT_C.replace("NAME", name))
    out = work / f"{name}-{built_for}{EXT_SUFFIX}"
    run("gcc", "-shared", "-fPIC", "-O1", f"-I{inc}/usr/include/python3.11",
        f"-I{inc}/usr/include", f'-DBUILT_FOR="{built_for}"', f'-DEXT_SUFFIX="{EXT_SUFFIX}"',
        "-o", out, src)
    return out.read_bytes()


def torch_wheels(work, torch, vision, audio, cuda):
    d = pathlib.Path(work) / "wheels" / torch
    return [
        make_wheel(d, "torch", torch, files={
            "torch/__init__.py": f"__version__ = {torch!r}\nfrom . import cuda, version\n".encode(),
            "torch/version.py": f"__version__ = {torch!r}\ncuda = {cuda!r}\n".encode(),
            "torch/cuda/__init__.py": (
                b"def is_available():\n    return False\n\n"
                b"def device_count():\n    return 0\n\n"
                b"def get_device_capability(device=None):\n"
                b"    raise RuntimeError('Found no NVIDIA driver on your system')\n")}),
        make_wheel(d, "torchvision", vision),
        make_wheel(d, "torchaudio", audio),
    ]


def flash_attn_wheel(work, version, ext, built_for):
    """flash_attn as flash-attention's setup.py installs it: the package
    importing its compiled extension, a top-level module."""
    d = pathlib.Path(work) / "wheels" / f"fa-{version}-{built_for}"
    so = compile_extension(pathlib.Path(work) / "ext", ext, built_for)
    return make_wheel(d, "flash_attn", version, files={
        "flash_attn/__init__.py": (
            f"__version__ = {version!r}\n"
            "from flash_attn.flash_attn_interface import flash_attn_func, flash_attn_varlen_func\n"
        ).encode(),
        "flash_attn/flash_attn_interface.py": (
            f"import torch\nimport {ext} as flash_attn_gpu\n\n"
            "def flash_attn_func(q, k, v, causal=False):\n    return q\n\n"
            "def flash_attn_varlen_func(q, k, v, *args, **kwargs):\n    return q\n").encode(),
        f"{ext}{EXT_SUFFIX}": so})


def flash_attn_3_wheel(work, built_for):
    """What flash-attention's hopper/ directory installs: flash_attn_3 and
    flash_attn_interface, no flash_attn."""
    d = pathlib.Path(work) / "wheels" / "fa3"
    so = compile_extension(pathlib.Path(work) / "ext", "flash_attn_3_cuda", built_for)
    return make_wheel(d, "flash_attn_3", "3.0.0b1", files={
        "flash_attn_3/__init__.py": b"",
        "flash_attn_interface.py": b"import flash_attn_3_cuda\n\n"
                                   b"def flash_attn_func(q, k, v, causal=False):\n    return q\n",
        f"flash_attn_3_cuda{EXT_SUFFIX}": so})


def profile_wheels(work, arch, torch=None, flash_attn="profile"):
    """The wheels of arch's image; torch: another torch version (its CUDA
    kept); flash_attn: "profile", None, "v2" (2.7.4.post1 on any arch) or
    "fa3-only"."""
    t, vision, audio, cuda, fa, ext = PROFILES[arch]
    torch = torch or t
    wheels = torch_wheels(work, torch, vision, audio, cuda)
    if flash_attn == "profile" and fa:
        wheels.append(flash_attn_wheel(work, fa, ext, torch))
    elif flash_attn == "v2":
        wheels.append(flash_attn_wheel(work, "2.7.4.post1", "flash_attn_2_cuda", torch))
    elif flash_attn == "fa3-only":
        wheels.append(flash_attn_3_wheel(work, torch))
    return wheels


def python_base(work):
    """oci:WORK/py:py, the Debian root filesystem and Python 3.11 (a debs
    layer resolved against the rootfs's dpkg database), and the cache
    directory it was built with."""
    work = pathlib.Path(work)
    assert ROOTFS.is_file(), f"{ROOTFS} is missing: run scripts/setup.sh"
    debs = sorted(LINNAEUS_DEBS.glob("*.deb"))
    assert any(d.name.startswith("python3.11_") for d in debs), \
        f"no python3.11 .deb under {LINNAEUS_DEBS}: run scripts/setup.sh"
    cache = work / "cache"
    kiln("append", "scratch", "--layer", f"{ROOTFS}:/", "-t", f"oci:{work}/deb:deb",
         "--cache", cache, env={"SOURCE_DATE_EPOCH": "0"})
    r = write_recipe(work / "python.json", {
        "recipe": 1, "base": f"oci:{work}/deb:deb",
        "layers": [apt_layer("python", ["python3.11"], mirror_of(work, debs))],
        "tag": {"repository": "kiln-test/python", "tag": "py"}})
    kiln("build", r, "--output", f"oci:{work}/py", "--cache", cache, "--quiet")
    return f"oci:{work}/py:py", cache


def linnaeus_image(work, base, tag, wheels, *, linnaeus_init="BRANCH = 'main'\n",
                   recipe_name="linnaeus.json", variables=None, sets=()):
    """oci:WORK/images:TAG: base, the wheels in dist-packages, the
    linnaeus source at /app/linnaeus, upstream's env and workdir; built
    from a recipe named recipe_name (linnaeus.json: kiln validate takes the
    shipped linnaeus recipe for it) with variables and --set sets."""
    work = pathlib.Path(work) / f"img-{tag}"
    src = work / "linnaeus" / "__init__.py"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(linnaeus_init)
    doc = {"recipe": 1, "base": base,
           "layers": [
               {"name": "wheels", "kind": "wheels",
                "wheels": [{"path": str(w), "sha256": sha256(w)} for w in wheels],
                "site_packages": SITE, "interpreter": PYTHON},
               {"name": "linnaeus", "kind": "files",
                "files": [{"src": str(src), "dest": "/app/linnaeus/linnaeus/__init__.py"}]}],
           "config": {"env": ["CUDA_VERSION=12.8.0", "PYTHONPATH=/app/linnaeus:"],
                      "workdir": "/app/linnaeus", "cmd": ["/bin/bash"]},
           "tag": {"repository": "kiln-test/linnaeus", "tag": tag}}
    if variables:
        doc["variables"] = variables
    r = write_recipe(work / recipe_name, doc)
    args = []
    for s in sets:
        args += ["--set", s]
    kiln("build", r, "--output", f"oci:{work.parent}/images", "--cache", work.parent / "cache",
         "--quiet", *args)
    return f"oci:{work.parent}/images:{tag}"
