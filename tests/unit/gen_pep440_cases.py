#!/usr/bin/python3
"""Writes tests/unit/pep440_cases.h: the answers of Python's `packaging`
(Debian's python3-packaging) for the cases test_recipes_pep440.c checks
recipes/pep440.c and recipes/pep508.c against.  Run it with the system
Python after changing the inputs below; the output is checked in:
    /usr/bin/python3 tests/unit/gen_pep440_cases.py > tests/unit/pep440_cases.h"""
import itertools

import packaging
from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

VERSIONS = [
    "1.0", "1.0.0", "v1.0", "V1.0", " 1.0 ", "1!2.0", "0!1.0", "1.0a1", "1.0alpha1", "1.0.a.1",
    "1.0-a-1", "1.0b2", "1.0beta", "1.0c1", "1.0rc1", "1.0pre1", "1.0preview2", "1.0.post1",
    "1.0-1", "1.0post", "1.0.rev3", "1.0r4", "1.0.dev0", "1.0dev", "1.0-dev-7", "1.0a1.dev2",
    "1.0.post1.dev3", "1.0rc1.post2.dev3", "1.0+local", "1.0+Ubuntu-1_2.3", "1.0+abc.5",
    "1.0+5", "2.7.1+cu126", "0.22.1+cu126", "00.01.002", "1.0.0.0.0", "1.2.3.4.5.6",
    "2024.1", "1.0a", "1.0.post", "1.0-", "1..0", "", "a1", "1.0+", "1.0+a..b", "1.0_a1",
    "1.0 a1", "1.0a1b2", "1!", "1.0.dev1+local.7", "0.0", "0", "1.0.0rc0", "3.11.0",
    "4.66.4", "1.26.4", "2.0.0.post0", "20240101.0+gitabc",
]
PAIRS = [
    ("1.0", "1.0.0"), ("1.0.dev0", "1.0a0"), ("1.0a1", "1.0b1"), ("1.0b1", "1.0rc1"),
    ("1.0rc1", "1.0"), ("1.0", "1.0.post0"), ("1.0.post1.dev1", "1.0.post1"),
    ("1.0+local", "1.0"), ("1.0+abc", "1.0+5"), ("1.0+1.abc", "1.0+1"), ("1.0+abc", "1.0+abd"),
    ("1!0.1", "2.0"), ("1.0a1.dev1", "1.0a1"), ("1.0.dev1", "1.0.dev2"), ("1.10", "1.9"),
    ("2.0", "10.0"), ("1.0.post1", "1.0.1"), ("1.0a1", "1.0.dev5"), ("1.0rc1.post1", "1.0rc2"),
    ("1.0+5", "1.0+10"), ("1.0+a.1", "1.0+a.b"), ("1.0.0.0", "1"), ("0.9.post1", "1.0.dev0"),
]
SPECS = ["==1.0", "==1.0.*", "==1.*", "!=1.0", "!=1.0.*", ">=1.0", "<=1.0", "<1.0", ">1.0",
         "~=1.0", "~=1.4.5", "~=1.4.5a4", "~=2.2.post3", ">=1.0,<2", ">1.0.post1", "<1.0rc1",
         ">=1.0a1", "==1.0+local", "===1.0", "==2.7.1+cu126", ">1.0,!=1.5.*", "~=1!1.0",
         "", ">=0.9.dev0", "<2.0.dev0", "==1.0.0", ">=1.0.0,<=1.0", ">1.0.post0", "== 1.0", "==1.0,,"]
SPEC_VERSIONS = ["0.9", "1.0", "1.0.0", "1.0a1", "1.0rc1", "1.0.post1", "1.0.post2", "1.0+local",
                 "1.0.1", "1.1", "1.4.5", "1.4.6", "1.4.5a4", "1.4.5a5", "1.5.2", "1.9.dev1",
                 "2.0", "2.2.post3", "2.3", "2!1.0", "1!1.5", "2.7.1+cu126", "2.7.1",
                 "1.0.post1.dev1", "1.0rc1.post1", "1.0.0+x", "3.0a1"]
BAD_SPECS = ["=1.0", "==", ">=1.0.*", "~=1", "~=1.0.*", "<1.0+local", "==1.0.dev1.*",
             ">= 1.0 extra", "1.0", "==1.0rc1.*", "==1.0.post1.*", "==1.0+l.*"]
ENV = {
    "python_version": "3.11", "python_full_version": "3.11.4", "os_name": "posix",
    "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
    "platform_release": "6.1.0", "platform_version": "#1 SMP",
    "implementation_name": "cpython", "implementation_version": "3.11.4",
    "platform_python_implementation": "CPython",
}
MARKERS = [
    'python_version >= "3.8"', 'python_version < "3.8"', "python_version == '3.11'",
    'python_version == "3.11.*"', 'python_full_version >= "3.11.1"',
    'python_full_version < "3.11.4"', 'sys_platform == "win32"', 'sys_platform == "linux"',
    'os_name == "nt" or platform_machine == "x86_64"',
    'platform_machine == "aarch64" and python_version >= "3.8"',
    '(os_name == "posix" or os_name == "nt") and python_version > "3.10"',
    'extra == "dev"', 'extra == "Dev_Tools"', 'extra != "dev"',
    'python_version >= "3.8" and extra == "test"', '"linux" in sys_platform',
    '"win" not in sys_platform', 'platform_system != "Windows"',
    'implementation_name == "cpython"', 'platform_python_implementation == "PyPy"',
    'python_version ~= "3.10"', 'python_version != "3.11"', '"3.8" <= python_version',
    'platform_release >= "6"', 'python_version in "3.10 3.11 3.12"',
]
EXTRAS = [None, "dev", "test", "dev-tools"]
BAD_MARKERS = ['python_version >= ', 'foo == "1"', '"a" == "b"', 'python_version >= "3.8" and',
               '(python_version >= "3.8"', 'python_version = "3.8"']
REQS = [
    "requests", "requests>=2", "requests >= 2, <3", "Foo_Bar.baz[Security, Socks]>=1.0",
    "foo[bar]; python_version >= '3.8'", "foo (>=1.0,<2.0)", "foo[]", "foo @ file:///tmp/foo.whl",
    "foo@https://example.com/foo-1.0-py3-none-any.whl ; os_name == 'posix'",
    "name==1.0.*", "torch==2.7.1+cu126", "a;extra=='x'", "zope.interface~=5.0",
    "opencv-python>=4.8", "pkg[b,a,A]", "A.B-C_D",
    "bad name", "-foo", "foo>=", "foo[bar", "foo (>=1", "foo==1.0 bar", "foo; bad == '1'",
    "foo>=1.0;", "foo=1.0",
]


def c(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' if s is not None else "NULL"


def version_rows():
    for v in VERSIONS:
        try:
            yield f"        {{{c(v)}, {c(str(Version(v)))}}},"
        except InvalidVersion:
            yield f"        {{{c(v)}, NULL}},"


def cmp_rows():
    for a, b in PAIRS:
        x, y = Version(a), Version(b)
        yield f"        {{{c(a)}, {c(b)}, {(x > y) - (x < y)}}},"


def spec_rows():
    for s, v in itertools.product(SPECS, SPEC_VERSIONS):
        yield f"        {{{c(s)}, {c(v)}, {str(SpecifierSet(s).contains(v)).lower()}}},"


def bad_spec_rows():
    for s in BAD_SPECS:
        try:
            SpecifierSet(s)
        except InvalidSpecifier:
            yield f"        {c(s)},"
            continue
        raise SystemExit(f"packaging accepts {s!r}")


def marker_rows():
    for m, e in itertools.product(MARKERS, EXTRAS):
        env = dict(ENV, extra=e or "")
        yield f"        {{{c(m)}, {c(e)}, {str(Marker(m).evaluate(env)).lower()}}},"


def bad_marker_rows():
    for m in BAD_MARKERS:
        try:
            Marker(m)
        except Exception:
            yield f"        {c(m)},"
            continue
        if m != '"a" == "b"':  # packaging takes it; kiln wants one variable
            raise SystemExit(f"packaging accepts {m!r}")
        yield f"        {c(m)},"


def req_rows():
    for r in REQS:
        try:
            q = Requirement(r)
        except InvalidRequirement:
            yield f"        {{{c(r)}, NULL, NULL, NULL, NULL, NULL}},"
            continue
        extras = ",".join(sorted({canonicalize_name(e) for e in q.extras}))
        spec = ",".join(str(s) for s in sorted(q.specifier, key=str))
        yield (f"        {{{c(r)}, {c(canonicalize_name(q.name))}, {c(extras)}, {c(spec)}, "
               f"{c(str(q.marker) if q.marker else None)}, {c(q.url)}}},")


def main():
    print(f"/* Generated by tests/unit/gen_pep440_cases.py from packaging {packaging.__version__};"
          " do not edit. */")
    print("static const struct { const char *in, *norm; } version_cases[] = {")
    print("\n".join(version_rows()))
    print("};\nstatic const struct { const char *a, *b; int cmp; } cmp_cases[] = {")
    print("\n".join(cmp_rows()))
    print("};\nstatic const struct { const char *spec, *version; bool in; } spec_cases[] = {")
    print("\n".join(spec_rows()))
    print("};\nstatic const char *const bad_spec_cases[] = {")
    print("\n".join(bad_spec_rows()))
    print("};\nstatic const struct { const char *marker, *extra; bool value; } marker_cases[] = {")
    print("\n".join(marker_rows()))
    print("};\nstatic const char *const bad_marker_cases[] = {")
    print("\n".join(bad_marker_rows()))
    print("};\nstatic const struct { const char *in, *name, *extras, *spec, *marker, *url; }"
          " req_cases[] = {")
    print("\n".join(req_rows()))
    print("};")


main()
