"""The tar cases of the unpack tests, shared with tests/fuzz/seed_corpora.py,
which writes them into the fuzzers' corpora.  Entries are dicts for
layers_helpers.tar_bytes()."""
import gzip
import os
import stat
import zlib

from layers_helpers import TGZ, tar_bytes

# Refused with the entry named, nothing changed outside DIR: (entries, message).
HOSTILE = {
    "dotdot": ([{"name": "../../outside/victim", "data": b"pwned"}], "climbs above the root"),
    "inner-dotdot": ([{"name": "a/../../outside/victim", "data": b"pwned"}], "climbs above the root"),
    "dot-dotdot": ([{"name": "./../outside/victim", "data": b"pwned"}], "climbs above the root"),
    "absolute": ([{"name": "/tmp/kiln-abs-test", "data": b"pwned"}], "absolute path"),
    "root-dotdot": ([{"name": "/../outside/victim", "data": b"pwned"}], "absolute path"),
    "hardlink-abs": ([{"name": "h", "type": "hard", "link": "/etc/passwd"}], "absolute path"),
    "hardlink-dotdot": ([{"name": "h", "type": "hard", "link": "../outside/etc/passwd"}],
                        "climbs above the root"),
    "hardlink-via-symlink": ([{"name": "d1", "type": "sym", "link": "../outside/etc"},
                              {"name": "h", "type": "hard", "link": "d1/passwd"}],
                             "is not in the layers so far"),
    "hardlink-later": ([{"name": "h", "type": "hard", "link": "later"},
                        {"name": "later", "data": b"x"}], "is not in the layers so far"),
    "hardlink-dir": ([{"name": "d", "type": "dir"}, {"name": "h", "type": "hard", "link": "d"}],
                     "is a directory"),
    "whiteout-dotdot": ([{"name": ".wh..."}], "refusing whiteout '.wh...'"),
    "whiteout-dot": ([{"name": "etc/.wh.."}], "refusing whiteout 'etc/.wh..'"),
    "whiteout-empty": ([{"name": ".wh."}], "refusing whiteout '.wh.'"),
    "symlink-named-dot": ([{"name": ".", "type": "sym", "link": "/etc"}],
                          "the root can only be a directory"),
    "symlink-named-dotdot": ([{"name": "..", "type": "sym", "link": "/etc"}],
                             "climbs above the root"),
    # '/' is the root entry (umoci insert DIR /); what lies below stays contained
    "slash-root-then-absolute": ([{"name": "/", "type": "dir"},
                                  {"name": "/tmp/kiln-abs-test", "data": b"pwned"}], "absolute path"),
    "slash-root-then-dotdot": ([{"name": "/", "type": "dir"},
                                {"name": "../outside/victim", "data": b"pwned"}], "climbs above the root"),
    "slash-root-symlink": ([{"name": "/", "type": "sym", "link": "/etc"}],
                           "the root can only be a directory"),
}


# Links that point out of DIR: writes through them land inside.
# (entries, a path that must exist inside DIR afterwards)
CLAMPED = {
    # (entries, path that must exist inside root afterwards)
    "symlink-abs-dir": ([{"name": "evil", "type": "sym", "link": "/"},
                         {"name": "evil/outside/victim", "data": b"in root"}], "outside/victim"),
    "symlink-up": ([{"name": "evil", "type": "sym", "link": "../.."},
                    {"name": "evil/x", "data": b"in root"}], "x"),
    "symlink-chain": ([{"name": "d", "type": "dir"}, {"name": "d/up", "type": "sym", "link": ".."},
                       {"name": "d/up2", "type": "sym", "link": "up/.."},
                       {"name": "d/up2/x", "data": b"in root"}], "x"),
    "dir-overridden-by-symlink": ([{"name": "foo", "type": "dir"},
                                   {"name": "foo", "type": "sym", "link": "/"},
                                   {"name": "foo/tmp/x", "data": b"in root"}], "tmp/x"),
    "whiteout-through-symlink": ([{"name": "localetc", "type": "sym", "link": "/outside"},
                                  {"name": "localetc/.wh.victim"}], None),
    "hardlink-to-symlink-then-chmod": ([{"name": "s", "type": "sym", "link": "/outside/etc/passwd"},
                                        {"name": "h", "type": "hard", "link": "s"},
                                        {"name": "h", "type": "dir", "mode": 0o777}], "h"),
}


def gzip_bomb(size):
    """A tar holding one file of `size` zeros, gzip'd, built in constant memory."""
    hdr = bytearray(tar_bytes([{"name": "zeros", "data": b""}])[:512])
    hdr[124:136] = b"%011o\0" % size
    hdr[148:156] = b"        "
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [c.compress(bytes(hdr))]
    chunk = bytes(1 << 20)
    for _ in range(size >> 20):
        out.append(c.compress(chunk))
    out.append(c.compress(bytes(1024)))
    out.append(c.flush())
    return b"".join(out)


# Two layers mixing several of the cases below (kiln flatten's test uses them).
def scary_layers():
    l1 = [
        {"name": "usr", "type": "dir"}, {"name": "usr/lib", "type": "dir"},
        {"name": "lib", "type": "sym", "link": "usr/lib"},
        {"name": "lib/x.so", "data": b"ELF"},
        {"name": "etc", "type": "dir"}, {"name": "etc/alternatives", "type": "dir"},
        {"name": "etc/alternatives/java", "type": "sym", "link": "/usr/lib/jvm/java/bin/java"},
        {"name": "usr/lib/jvm", "type": "dir"},
        {"name": "usr/lib/jvm/cacerts", "type": "sym",
         "link": "../../../../../../../../../../etc/pki/java/cacerts"},
        {"name": "bin", "type": "dir"}, {"name": "bin/dash", "type": "sym", "link": "dash"},
        {"name": "opt", "type": "dir"}, {"name": "opt/a", "data": b"a"}, {"name": "opt/b", "data": b"b"},
        {"name": "var", "type": "dir"}, {"name": "var/keep", "data": b"k"},
        {"name": "var/gone", "data": b"g"}, {"name": "ro", "type": "dir", "mode": 0o555},
        {"name": "ro/f", "data": b"r", "mode": 0o444},
    ]
    l2 = [
        {"name": "opt", "type": "dir"}, {"name": "opt/.wh..wh..opq"}, {"name": "opt/c", "data": b"c"},
        {"name": "var/.wh.gone"}, {"name": "lib/y.so", "data": b"ELF2"},
        {"name": "usr/lib/jvm/../../local", "type": "dir"},
    ]
    return [(gzip.compress(tar_bytes(l1), mtime=0), TGZ), (gzip.compress(tar_bytes(l2), mtime=0), TGZ)]


# Legitimate but scary layers (threats.md T7-T9): each must unpack exactly as
# `umoci unpack --rootless` does, through both resolution paths.  A case is a
# list of layers (lists of entries) and a check of kiln's tree.
def _rd(root, path):
    return (root / path).read_bytes()


SCARY = {
    "absolute-symlink": ([[{"name": "etc", "type": "dir"}, {"name": "etc/alternatives", "type": "dir"},
                           {"name": "etc/alternatives/java", "type": "sym",
                            "link": "/usr/lib/jvm/java/bin/java"}]],
                         lambda r: os.readlink(r / "etc/alternatives/java") == "/usr/lib/jvm/java/bin/java"),
    "merged-usr": ([[{"name": "usr", "type": "dir"}, {"name": "usr/lib", "type": "dir"},
                     {"name": "lib", "type": "sym", "link": "usr/lib"}, {"name": "lib/x.so", "data": b"ELF"}],
                    [{"name": "lib/y.so", "data": b"ELF2"}, {"name": "lib/sub", "type": "dir"},
                     {"name": "lib/sub/z.so", "data": b"ELF3"}]],
                   lambda r: os.readlink(r / "lib") == "usr/lib" and _rd(r, "usr/lib/x.so") == b"ELF"
                   and _rd(r, "usr/lib/y.so") == b"ELF2" and _rd(r, "usr/lib/sub/z.so") == b"ELF3"),
    "merged-usr-absolute": ([[{"name": "usr/bin", "type": "dir"}, {"name": "bin", "type": "sym", "link": "/usr/bin"}],
                             [{"name": "bin/sh", "data": b"#!"}]],
                            lambda r: _rd(r, "usr/bin/sh") == b"#!"),
    "deep-dotdot-link": ([[{"name": "usr/lib/jvm", "type": "dir"},
                           {"name": "usr/lib/jvm/cacerts", "type": "sym",
                            "link": "../../../../../../../../../../etc/pki/java/cacerts"},
                           {"name": "etc/pki/java/cacerts", "data": b"certs"}]],
                         lambda r: os.readlink(r / "usr/lib/jvm/cacerts").startswith("../../../")),
    "link-to-root": ([[{"name": "rootlink", "type": "sym", "link": "/"},
                       {"name": "up", "type": "sym", "link": "../../.."},
                       {"name": "self", "type": "sym", "link": "."}],
                      [{"name": "rootlink/etc/through-root", "data": b"in"}]],
                     lambda r: _rd(r, "etc/through-root") == b"in" and os.readlink(r / "rootlink") == "/"),
    "self-loop-link": ([[{"name": "bin", "type": "dir"}, {"name": "bin/dash", "type": "sym", "link": "dash"},
                         {"name": "a", "type": "sym", "link": "b"}, {"name": "b", "type": "sym", "link": "a"}]],
                       lambda r: os.readlink(r / "bin/dash") == "dash"),
    "opaque-whiteout": ([[{"name": "opt", "type": "dir"}, {"name": "opt/a", "data": b"a"},
                          {"name": "opt/sub", "type": "dir"}, {"name": "opt/sub/b", "data": b"b"}],
                         [{"name": "opt", "type": "dir"}, {"name": "opt/.wh..wh..opq"},
                          {"name": "opt/c", "data": b"c"}]],
                        lambda r: sorted(os.listdir(r / "opt")) == ["c"]),
    "whiteouts-of-files-and-dirs": ([[{"name": "var/keep", "data": b"k"}, {"name": "var/gone", "data": b"g"},
                                      {"name": "var/cache/x", "data": b"x"}],
                                     [{"name": "var/.wh.gone"}, {"name": "var/.wh.cache"}]],
                                    lambda r: sorted(os.listdir(r / "var")) == ["keep"]),
    "whiteout-under-symlinked-dir": ([[{"name": "real", "type": "dir"}, {"name": "real/f", "data": b"f"},
                                       {"name": "real/g", "data": b"g"},
                                       {"name": "alias", "type": "sym", "link": "real"}],
                                      [{"name": "alias/.wh.f"}]],
                                     lambda r: sorted(os.listdir(r / "real")) == ["g"]),
    "hardlinks-to-earlier-files": ([[{"name": "bin/busybox", "data": b"bb", "mode": 0o755},
                                     {"name": "bin/ls", "type": "hard", "link": "bin/busybox"}],
                                    [{"name": "sbin/init", "type": "hard", "link": "bin/busybox"}]],
                                   lambda r: os.stat(r / "bin/ls").st_ino == os.stat(r / "bin/busybox").st_ino),
    "hardlink-to-symlink": ([[{"name": "target", "data": b"t"}, {"name": "s", "type": "sym", "link": "target"},
                              {"name": "h", "type": "hard", "link": "s"}]],
                            lambda r: os.readlink(r / "h") == "target"),
    "read-only-dir-then-entries": ([[{"name": "ro", "type": "dir", "mode": 0o555},
                                     {"name": "ro/f", "data": b"r", "mode": 0o444},
                                     {"name": "ro/sub", "type": "dir", "mode": 0o500}],
                                    [{"name": "ro/g", "data": b"later", "mode": 0o400}]],
                                   lambda r: _rd(r, "ro/g") == b"later"
                                   and stat.S_IMODE(os.stat(r / "ro").st_mode) == 0o555),
    "setuid-setgid-sticky": ([[{"name": "usr/bin/passwd", "data": b"suid", "mode": 0o4755},
                               {"name": "usr/bin/wall", "data": b"sgid", "mode": 0o2755},
                               {"name": "srv", "type": "dir", "mode": 0o2775},
                               {"name": "tmp", "type": "dir", "mode": 0o1777}]],
                             lambda r: stat.S_IMODE(os.stat(r / "tmp").st_mode) == 0o1777
                             and stat.S_IMODE(os.stat(r / "usr/bin/passwd").st_mode) == 0o4755),
    "file-replaced-by-dir": ([[{"name": "x", "data": b"file"}], [{"name": "x", "type": "dir"},
                                                                {"name": "x/y", "data": b"y"}]],
                             lambda r: _rd(r, "x/y") == b"y"),
    "dir-replaced-by-file": ([[{"name": "d", "type": "dir"}, {"name": "d/z", "data": b"z"}],
                              [{"name": "d", "data": b"now a file"}]],
                             lambda r: _rd(r, "d") == b"now a file"),
    "symlink-replaced-by-dir": ([[{"name": "target", "type": "dir"}, {"name": "target/t", "data": b"t"},
                                  {"name": "l", "type": "sym", "link": "target"}],
                                 [{"name": "l", "type": "dir"}, {"name": "l/f", "data": b"f"}]],
                                lambda r: stat.S_ISDIR(os.lstat(r / "l").st_mode)),
    "long-names": ([[{"name": "n" * 255, "data": b"255"},
                     {"name": "/".join(["d" * 200] * 5) + "/" + "f" * 255, "data": b"deep"},
                     {"name": "l" * 100, "type": "sym", "link": "t" * 1000}]],
                   lambda r: _rd(r, "n" * 255) == b"255"),
    "non-ascii-names": ([[{"name": "naïve", "type": "dir"}, {"name": "naïve/日本語.txt", "data": b"nihongo"},
                          {"name": "with space & 'quotes'", "data": b"q"},
                          {"name": "emoji-\U0001f600", "type": "sym", "link": "naïve/日本語.txt"}]],
                        lambda r: _rd(r, "naïve/日本語.txt") == b"nihongo"),
    "non-utf8-and-control-names": ([[{"name": "latin1-\udce9t\udce9", "data": b"x"},
                                     {"name": "new\nline", "data": b"y"},
                                     {"name": "ctl-\x01-\x7f", "type": "sym", "link": "latin1-\udce9t\udce9"}]],
                                   lambda r: (r / os.fsdecode(b"latin1-\xe9t\xe9")).read_bytes() == b"x"),
    "empty-dirs-and-files": ([[{"name": "a/b/c", "type": "dir"}, {"name": "empty", "data": b""},
                               {"name": "e", "type": "dir", "mode": 0o700}]],
                             lambda r: os.listdir(r / "a/b/c") == []),
    "implicit-parents-and-dot-paths": ([[{"name": "./p/q/r/f", "data": b"f"},
                                         {"name": "usr/lib/jvm/../../local", "type": "dir"},
                                         {"name": "usr/./share//doc/x", "data": b"x"}]],
                                       lambda r: _rd(r, "p/q/r/f") == b"f" and (r / "usr/local").is_dir()),
    # image-spec layer.md "Whiteouts": a whiteout hides the lower layers only
    "whiteout-of-same-layer-file": ([[{"name": "f", "data": b"x"}, {"name": ".wh.f"},
                                      {"name": ".wh.g"}, {"name": "g", "data": b"g"}]],
                                    lambda r: _rd(r, "f") == b"x" and _rd(r, "g") == b"g"),
    "whiteout-of-same-layer-dir": ([[{"name": "d", "type": "dir"}, {"name": "d/x", "data": b"x"},
                                     {"name": ".wh.d"}]],
                                   lambda r: _rd(r, "d/x") == b"x"),
    "whiteout-over-lower-and-same-layer": ([[{"name": "f", "data": b"lower"}, {"name": "d/y", "data": b"y"},
                                             {"name": "e/z", "data": b"z"}],
                                            [{"name": "f", "data": b"upper"}, {"name": ".wh.f"},
                                             {"name": "d/x", "data": b"x"}, {"name": ".wh.d"},
                                             {"name": ".wh.e"}]],
                                           lambda r: _rd(r, "f") == b"upper" and os.listdir(r / "d") == ["x"]
                                           and not (r / "e").exists()),
    "opaque-keeps-implicit-parents-of-the-layer": ([[{"name": "opt/a/b/lower", "data": b"l"},
                                                     {"name": "opt/gone", "data": b"g"}],
                                                    [{"name": "opt/a/b/new", "data": b"n"},
                                                     {"name": "opt/.wh..wh..opq"}]],
                                                   lambda r: os.listdir(r / "opt/a/b") == ["new"]
                                                   and os.listdir(r / "opt") == ["a"]),
    "fifo-rootless": ([[{"name": "run", "type": "dir"}, {"name": "run/initctl", "type": "fifo", "mode": 0o600}]],
                      lambda r: stat.S_ISFIFO(os.lstat(r / "run/initctl").st_mode)),
}
