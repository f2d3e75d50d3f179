#!/usr/bin/env python3
"""Writes the fuzzers' seed inputs from the test cases, so that fuzzing starts
where the tests stop.

  fuzz_layer_unpack, fuzz_layer_read: every hostile, clamped and
      legitimate-but-scary tar of tests/integration/unpack_cases.py, each
      layer plain, gzip'd and zstd'd, plus a small gzip bomb, a zstd frame
      with a 2^31 window, a truncated tar, garbage after the gzip stream, two
      gzip members and zstd bytes declared as gzip.  The first byte is the
      targets' selector: modulo 4 the declared media type (plain, gzip, zstd,
      none), and for the unpacker bit 2 the resolver (openat2 or the walk).
  fuzz_registry_headers: WWW-Authenticate, Link, Location, Retry-After, Range
      and Content-Range values, from registries and from the hostile list of
      threats.md.  The first byte modulo 5 picks the parser.
  fuzz_path_clean: the names of the hostile tars and the paths of
      tests/unit/test_layers_path.c, each under three sets of flags (the
      first byte).
  fuzz_registries_conf: registries.conf files (the cases of
      tests/unit/test_registry_hosts.c, a drop-in of [aliases] as Debian
      ships them, mirrors, wildcards, blocked and insecure registries) and
      RateLimit values.

Files are named seed-*; a run replaces them and keeps whatever else is in the
directories (inputs libFuzzer found, named by their SHA-1).

    python3 tests/fuzz/seed_corpora.py
"""
import gzip
import pathlib
import subprocess
import sys
import tarfile
import io

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

from layers_helpers import tar_bytes  # noqa: E402
from unpack_cases import CLAMPED, HOSTILE, SCARY, gzip_bomb  # noqa: E402

PLAIN, GZIP, ZSTD, NONE, WALK = 0, 1, 2, 3, 4


def trimmed(raw):
    """The tar up to its end-of-archive blocks, without the record padding."""
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        t.getmembers()
        end = t.offset
    return raw[:end + 1024]


def zstd(raw, *args):
    return subprocess.run(["zstd", "-19", "-c", "-q", *args], input=raw, capture_output=True,
                          check=True).stdout


def layer_seeds():
    """name -> bytes, the selector byte first."""
    out = {}
    cases = [(f"hostile-{n}", [e]) for n, (e, _) in HOSTILE.items()]
    cases += [(f"clamped-{n}", [e]) for n, (e, _) in CLAMPED.items()]
    cases += [(f"scary-{n}", layers) for n, (layers, _) in SCARY.items()]
    for i, (name, layers) in enumerate(cases):
        walk = WALK if i % 2 else 0
        for j, entries in enumerate(layers):
            raw = trimmed(tar_bytes(entries))
            stem = name if len(layers) == 1 else f"{name}-{j + 1}"
            out[f"{stem}.tar"] = bytes([PLAIN | walk]) + raw
            out[f"{stem}.tar.gz"] = bytes([GZIP | (walk ^ WALK)]) + gzip.compress(raw, mtime=0)
            out[f"{stem}.tar.zst"] = bytes([ZSTD | walk]) + zstd(raw)
    small = trimmed(tar_bytes([{"name": "f", "data": b"y" * 5000}]))
    out["bomb-4m.tar.gz"] = bytes([GZIP]) + gzip_bomb(4 << 20)
    window = bytearray(zstd(small, "--no-check"))
    window[5] = (31 - 10) << 3  # frame header: windowLog 31
    out["zstd-window-31.tar.zst"] = bytes([ZSTD]) + bytes(window)
    out["truncated.tar"] = bytes([PLAIN]) + small[:512 + 2000]
    out["garbage-after-gzip.tar.gz"] = bytes([GZIP]) + gzip.compress(small, mtime=0) + b"garbage!"
    out["two-members.tar.gz"] = bytes([GZIP | WALK]) + gzip.compress(small[:1024], mtime=0) + \
        gzip.compress(small[1024:], mtime=0)
    out["zstd-declared-gzip.tar.zst"] = bytes([GZIP]) + zstd(small)
    out["undeclared.tar.gz"] = bytes([NONE]) + gzip.compress(small, mtime=0)
    return out


AUTH, LINK, LOCATION, RETRY_AFTER, RANGE = range(5)

HEADERS = {
    AUTH: [
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"',
        'Basic realm="Registry Realm"',
        'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/r:pull",'
        'error="insufficient_scope"',
        'Bearer realm="https://r.example/t",error="invalid_token",'
        'error_description="The access token expired"',
        'Bearer realm="http://169.254.169.254/latest",service="x"',
        'bearer realm="https://a/t", Basic realm="b"',
        'Bearer realm="https://a/t",slashed="he\\"\\l\\lo",other=fun, BASIC realm=x',
        'Bearer realm=""', 'Negotiate', 'Bearer', 'Bearer realm="unterminated', ', , ,',
        ", ".join(f'Bearer realm="https://a/{i}"' for i in range(10)),
    ],
    LINK: [
        '</v2/r/tags/list?n=2&last=b>; rel="next"',
        '<https://registry.example/v2/r/tags/list?last=b&n=100>; rel=next',
        '<a>; rel="prev", </v2/r/tags/list?last=z>; rel="next"',
        '</v2/r/tags/list?n=2&last=b>; rel="next"; title="page 2"',
        '<>; rel="next"', '<//other.example/v2/x>; rel="next"', '<http://10.0.0.1/x>; rel="next"',
        '<../../x>; rel="next"', '<<<>>>;;rel==', '</v2/r/tags/list>; rel="nexts"',
    ],
    LOCATION: [
        "/v2/r/blobs/uploads/u?_state=abc",
        "https://other.example/upload/u?X-Amz-Signature=deadbeef&X-Amz-Expires=300",
        "http://10.0.0.1/v2/x", "../uploads/u", "?_state=only-query", "//host.example/path",
        "https://[::1]:5000/v2/r/blobs/uploads/u", "", "ftp://example/x", "https://user:pass@host/x",
        "/v2/r/blobs/uploads/u#frag", "/v2/" + "a/" * 2000,
    ],
    RETRY_AFTER: [
        "2", "0", "86400", "99999999999999999999", "Tue, 14 Nov 2023 22:13:25 GMT",
        "Wed, 15 Nov 2023 22:00:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
        "-5", "5s", " ",
    ],
    RANGE: [
        "0-99", "bytes 0-1048575/268435456", "bytes 5-9/*", "bytes=0-", "0-0", "bytes */100",
        "9223372036854775807-9223372036854775807", "18446744073709551616-1", "5-3", "bytes 1-2/2",
    ],
}
HEADER_NAMES = {AUTH: "www-authenticate", LINK: "link", LOCATION: "location",
                RETRY_AFTER: "retry-after", RANGE: "range"}


def header_seeds():
    return {f"{HEADER_NAMES[k]}-{i}": bytes([k]) + v.encode()
            for k, values in HEADERS.items() for i, v in enumerate(values)}


CONF_SEEDS = {
    "empty": "",
    "hub-mirrors": """unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "mirror-a.local:5000/hub"
insecure = true
[[registry.mirror]]
location = "mirror-b.local"
""",
    "library-location": '[[registry]]\nprefix = "docker.io/library"\nlocation = "internal.example/lib"\n',
    "insecure-location": '[[registry]]\nlocation = "old.example:5000"\ninsecure = true\n',
    "wildcard-blocked": '[[registry]]\nprefix = "*.blocked.example"\nblocked = true\n',
    "aliases": """[aliases]
  # docker
  "alpine" = "docker.io/library/alpine"
  "opensuse/leap" = "registry.opensuse.org/opensuse/leap"
""",
    "toml-values": "a = 'lit\\eral'\nb = \"tab\\t\\u00e9\"\nn = -1_000\nt = true\n"
                   "arr = [ # c\n  \"x\",\n  'y',\n]\n[t.u]\nv.w = 1\n[\"q.t\"]\n",
    "bad-duplicate": 'a = "x"\na = "y"\n',
    "bad-multiline": 'a = """x"""\n',
    "bad-inline-table": "a = {x = 1}\n",
    "ratelimit": "100;w=21600",
    "ratelimit-bare": "76",
}


def conf_seeds():
    return {f"conf-{k}": v.encode() for k, v in CONF_SEEDS.items()}


PATHS = ["", "/", "./", ".", "/app/", "./a//b/.", "a/./b", "..a/b..", ".../x", "a\\b",
         "/a/../b", "../x", "a/..", "..", "/..", "a/../c", "a/b/../../c/./d/", "a/../..",
         "./../x", "/../x", "/etc/passwd", "a\\..\\b", "pkg/mod.py", "usr/lib/x/../../y",
         "a" + "/.." * 40, "/".join(["d"] * 200)]


def path_seeds():
    """The names of every hostile tar entry and the unit tests' paths, each
    with no flag, RELATIVE|FOLD_DOTDOT (unpack's) and every flag as the first
    byte (the fuzzer mutates it from there)."""
    names = set(PATHS)
    for entries, _ in list(HOSTILE.values()) + list(CLAMPED.values()):
        for e in entries:
            names.update(v for k, v in e.items() if k in ("name", "link") and isinstance(v, str))
    out = {}
    for i, n in enumerate(sorted(names)):
        for flags in (0, 3, 7):
            out[f"path-{i}-{flags}"] = bytes([flags]) + n.encode()
    return out


def write(target, seeds):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("seed-*"):
        old.unlink()
    for name, data in seeds.items():
        (d / f"seed-{name}").write_bytes(data)
    return sum(len(v) for v in seeds.values())


def main():
    layers = layer_seeds()
    total = write("fuzz_layer_unpack", layers) + write("fuzz_layer_read", layers)
    total += write("fuzz_registry_headers", header_seeds())
    total += write("fuzz_registries_conf", conf_seeds())
    total += write("fuzz_path_clean", path_seeds())
    print(f"{2 * len(layers) + len(header_seeds()) + len(conf_seeds()) + len(path_seeds())} "
          f"seeds, {total} bytes")


if __name__ == "__main__":
    main()
