"""Registry fixtures: the real distribution registry (/usr/bin/docker-registry)
on 127.0.0.1, open, with htpasswd Basic auth, with Bearer tokens from a small
token server written here, and with TLS from a test CA; plus a fault proxy.

Everything listens on 127.0.0.1 only."""
import base64
import hashlib
import json
import os
import pathlib
import re
import socket
import subprocess
import threading
import time
import urllib.request
import http.server
import socketserver
import struct

REGISTRY_BIN = "/usr/bin/docker-registry"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(*cmd, input=None, check=True):
    p = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, input=input)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}: {p.stdout} {p.stderr}")
    return p


class Registry:
    """A docker-registry process.  auth: None, ("htpasswd", file) or
    ("token", dict(realm, service, issuer, rootcertbundle)).  tls: (cert, key)."""

    def __init__(self, workdir, auth=None, tls=None, delete=True):
        self.dir = pathlib.Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.scheme = "https" if tls else "http"
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.dir / 'data'}",
            "  delete:",
            f"    enabled: {'true' if delete else 'false'}",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            "  headers:",
            "    X-Content-Type-Options: [nosniff]",
        ]
        if tls:
            lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
        if auth and auth[0] == "htpasswd":
            lines += ["auth:", "  htpasswd:", "    realm: kiln-test", f"    path: {auth[1]}"]
        elif auth and auth[0] == "token":
            t = auth[1]
            lines += ["auth:", "  token:", f"    realm: {t['realm']}", f"    service: {t['service']}",
                      f"    issuer: {t['issuer']}", f"    rootcertbundle: {t['rootcertbundle']}"]
        self.config = self.dir / "config.yml"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = open(self.dir / "registry.log", "w")
        env = dict(os.environ)
        for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            env.pop(k, None)
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.config)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        # a guard for a registry that never listens, not a measure: it starts
        # in well under a second, and exits (checked below) when it cannot
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("registry exited: " + (self.dir / "registry.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("registry did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def ref(self, repo, tag=None):
        return f"{self.host}/{repo}" + (f":{tag}" if tag else "")

    def api(self, path, method="GET", headers=None, auth=None):
        """A raw request to the registry (no auth unless given as a header value)."""
        req = urllib.request.Request(f"{self.scheme}://{self.host}{path}", method=method,
                                     headers=dict(headers or {}))
        if auth:
            req.add_header("Authorization", auth)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def blob_uploads_dir(self):
        return self.dir / "data" / "docker" / "registry" / "v2" / "repositories"


# ---- htpasswd ----

def make_htpasswd(path, user, password):
    out = run("htpasswd", "-Bbn", user, password).stdout
    pathlib.Path(path).write_text(out)
    return path


# ---- certificates ----

def make_ca(d):
    d = pathlib.Path(d)
    d.mkdir(parents=True, exist_ok=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=kiln test CA", "-keyout", d / "ca.key", "-out", d / "ca.crt",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return d / "ca.crt", d / "ca.key"


def make_server_cert(d, ca_crt, ca_key, name="127.0.0.1"):
    d = pathlib.Path(d)
    ext = d / "ext.cnf"
    ext.write_text(f"subjectAltName=IP:{name},DNS:localhost\nextendedKeyUsage=serverAuth\n")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", d / "server.key", "-out", d / "server.csr")
    run("openssl", "x509", "-req", "-in", d / "server.csr", "-CA", ca_crt, "-CAkey", ca_key,
        "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", d / "server.crt")
    return d / "server.crt", d / "server.key"


# ---- the token server ----

def _b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class TokenServer:
    """Issues JWTs (RS256, x5c = the signing certificate, which is the
    registry's rootcertbundle).  users: {name: password}; acl(user, repo) ->
    set of actions.  Records every request in .requests (path, query, auth
    header present) so tests can check scopes."""

    def __init__(self, workdir, users, acl=None, service="kiln-registry", expires_in=300,
                 oauth=False):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        from cryptography.x509.oid import NameOID
        import datetime

        self.dir = pathlib.Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.users = users
        self.acl = acl or (lambda user, repo: {"pull", "push"} if user else set())
        self.service = service
        self.issuer = "kiln-test-issuer"
        self.expires_in = expires_in
        self.oauth = oauth
        self.requests = []
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kiln token signer")])
        now = datetime.datetime.utcnow()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.bundle = self.dir / "token-ca.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._padding = padding
        self._hashes = hashes
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _reply(self, code, obj):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                from urllib.parse import urlparse, parse_qs
                u = urlparse(self.path)
                q = parse_qs(u.query)
                user = outer._check_basic(self.headers.get("Authorization"))
                outer.requests.append({"method": "GET", "query": q, "user": user,
                                       "auth": self.headers.get("Authorization") is not None})
                if user is False:
                    return self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                self._reply(200, outer._issue(user, q.get("scope", []), q.get("service", [""])[0]))

            def do_POST(self):
                from urllib.parse import parse_qs
                n = int(self.headers.get("Content-Length", "0"))
                q = parse_qs(self.rfile.read(n).decode())
                grant = q.get("grant_type", [""])[0]
                user = None
                if grant == "password":
                    u, pw = q.get("username", [""])[0], q.get("password", [""])[0]
                    user = u if outer.users.get(u) == pw else False
                outer.requests.append({"method": "POST", "query": q, "user": user, "auth": False,
                                       "grant": grant})
                if not outer.oauth:
                    return self._reply(404, {"error": "not found"})
                if user is False:
                    return self._reply(401, {"error": "invalid_grant"})
                self._reply(200, outer._issue(user, q.get("scope", []), q.get("service", [""])[0],
                                              field="access_token"))

        class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = S(("127.0.0.1", self.port), H)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _check_basic(self, header):
        """None: anonymous; False: wrong credentials; else the user name."""
        if not header:
            return None
        if not header.startswith("Basic "):
            return False
        try:
            user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        except Exception:
            return False
        return user if self.users.get(user) == pw else False

    def _issue(self, user, scopes, service, field="token"):
        access = []
        for s in scopes:
            for one in s.split(" "):
                parts = one.split(":")
                if len(parts) < 3 or parts[0] != "repository":
                    continue
                repo, actions = ":".join(parts[1:-1]), parts[-1].split(",")
                allowed = self.acl(user, repo)
                granted = [a for a in actions if a in allowed]
                access.append({"type": "repository", "name": repo, "actions": granted})
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {"iss": self.issuer, "sub": user or "", "aud": service, "exp": now + self.expires_in,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        sig = self.key.sign(signing.encode(), self._padding.PKCS1v15(), self._hashes.SHA256())
        tok = signing + "." + _b64url(sig)
        return {field: tok, "expires_in": self.expires_in, "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def registry_auth(self):
        return ("token", {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                          "rootcertbundle": self.bundle})

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- the fault proxy ----

class _Gone(Exception):
    """The connection was reset or abandoned on purpose: nothing more to send."""


class FaultProxy:
    """A plain-http proxy in front of a registry that misbehaves on request.

    faults: dicts tried in order against each request.  A fault matches when
    every string of "match" (a string or a tuple of strings) occurs in
    "METHOD PATH" and, with "if_header", when the request carries that
    header.  It lets its first "nth" matching requests through (default 0)
    and then fires "times" times (default 1).  Actions:

      before the registry sees the request
        status        answer "status" with "body", "retry_after", "add_headers"
        echo_auth     answer "status" with "body" where {auth} is the request's
                      Authorization value, {cred} its credential (as a
                      careless registry echoing the request it refused)
        redirect      307 to the same path on "to"; "location": "relative"
                      (a path-absolute reference) or "missing" (no Location)
        stall         wait "seconds", then close without an answer
        drip          answer 200 with a body of "length" bytes (64 KiB), sent
                      "chunk" bytes (2 KiB) a second: above curl's low-speed
                      limit, far slower than any deadline a test sets
        reset         close with a TCP reset, no answer
        expire_token  answer 401 with "challenge"; every later request with
                      the same Authorization gets that answer too
        reset_request_at, stall_request_at, close_request_at   read "at"
                      bytes of the request body, then reset / wait "seconds" and
                      close / close cleanly (and read the rest) without an answer
        corrupt_request_at   flip the byte at "at" of the request body
        extend_request       append "extra" bytes to the request body
        strip_range   forward without the Range header (a server ignoring it)
        skip          let this one through
      on the registry's answer
        lost_response  the registry handles it, the client gets a reset
        reset_at, short_at, stall_at   send "at" bytes of the body, then a
                      reset / a clean close / a wait of "seconds"
        drop_mid_body, truncate   close after half the body
        corrupt       flip the byte at "at" (default: the middle one)
        long          append "extra" bytes, counted in Content-Length
        relative_location, drop_location, other_location ("to")
        shift_content_range   a 206 whose Content-Range starts a byte late
        drop_range    no Range header; stuck_range: Range "0-0" (as ECR)
        wrong_digest  a Docker-Content-Digest of zeros
        pass          forward, adding "add_headers"
        paginate      serve the tag list in pages of "n" with Link headers

    upstream_auth(path), when given, replaces the client's Authorization on
    the way to the registry (a CDN that signs its own requests).
    .log holds (method, path, status); .headers_seen (method, path, headers);
    .fired the faults that fired, in order."""

    def __init__(self, upstream_host, upstream_auth=None, tls=None, public=None):
        """tls: (cert, key) to serve https; public: the scheme and host the
        registry's Location headers are rewritten to (default this proxy)."""
        self.upstream = upstream_host
        self.upstream_auth = upstream_auth
        self.faults = []
        self.log = []
        self.headers_seen = []
        self.fired = []
        self.expired = {}  # Authorization value -> the challenge answering it
        self.lock = threading.Lock()
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def finish(self):
                try:
                    super().finish()
                except OSError:
                    pass

            def _fault(self):
                line = f"{self.command} {self.path} "  # "GET /v2/ " is the probe alone
                with outer.lock:
                    for f in outer.faults:
                        m = f["match"]
                        if not all(s in line for s in ((m,) if isinstance(m, str) else m)):
                            continue
                        if "if_header" in f and self.headers.get(f["if_header"]) is None:
                            continue
                        f["seen"] = f.get("seen", 0) + 1
                        if f["seen"] <= f.get("nth", 0) or f.get("times", 1) <= 0:
                            continue
                        f["times"] = f.get("times", 1) - 1
                        outer.fired.append((f["action"], self.command, self.path))
                        return f
                return None

            def _reset(self):
                """Closes the connection with a TCP reset."""
                self.close_connection = True
                try:
                    self.wfile.flush()
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    os.close(self.connection.detach())
                except OSError:
                    pass
                raise _Gone()

            def _abandon(self, seconds):
                time.sleep(seconds)
                self.close_connection = True
                raise _Gone()

            def _read_body(self, f):
                act = f["action"] if f else None
                n = self.headers.get("Content-Length")
                if n is not None:
                    n = int(n)
                    if act in ("reset_request_at", "stall_request_at", "close_request_at"):
                        self.rfile.read(min(f["at"], n))
                        if act == "reset_request_at":
                            self._reset()
                        if act == "close_request_at":
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_WR)
                            self.rfile.read(n - min(f["at"], n))
                            raise _Gone()
                        self._abandon(f.get("seconds", 30))
                    body = self.rfile.read(n)
                elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    body = b"".join(chunks)
                else:
                    return None
                if act == "corrupt_request_at" and body:
                    body = bytearray(body)
                    body[min(f["at"], len(body) - 1)] ^= 0xFF
                    body = bytes(body)
                if act == "extend_request":
                    body += b"\0" * f.get("extra", 1)
                return body

            def _answer(self, status, payload=b"", headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _handle(self):
                try:
                    self._serve()
                except _Gone:
                    pass

            def _serve(self):
                import http.client
                f = self._fault()
                act = f["action"] if f else None
                body = self._read_body(f)
                if outer.serve(self, body):
                    return
                if act == "stall":
                    self._abandon(f.get("seconds", 30))
                if act == "skip":
                    f, act = None, None
                auth = self.headers.get("Authorization")
                with outer.lock:
                    outer.headers_seen.append((self.command, self.path, dict(self.headers)))
                    expired = outer.expired.get(auth) if auth else None
                    if act == "expire_token" and auth:
                        outer.expired[auth] = expired = f["challenge"]
                if expired:
                    outer.log.append((self.command, self.path, 401))
                    return self._answer(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}',
                                        [("WWW-Authenticate", expired), ("Content-Type", "application/json")])
                if act == "reset":
                    self._reset()
                if act == "redirect":
                    outer.log.append((self.command, self.path, f.get("status", 307)))
                    where = f.get("location")
                    hs = [] if where == "missing" else [
                        ("Location", self.path if where == "relative" else f"http://{f['to']}{self.path}")]
                    return self._answer(f.get("status", 307), b"", hs)
                if act == "drip":
                    outer.log.append((self.command, self.path, 200))
                    n, chunk = f.get("length", 64 << 10), f.get("chunk", 2048)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                    self.send_header("Content-Length", str(n))
                    self.end_headers()
                    try:
                        for _ in range(0, n, chunk):
                            self.wfile.write(b" " * chunk)
                            self.wfile.flush()
                            time.sleep(1)  # the upstream's pace, not a wait for kiln
                    except OSError:
                        pass
                    self.close_connection = True
                    raise _Gone()
                if act == "echo_auth":
                    outer.log.append((self.command, self.path, f["status"]))
                    cred = (auth or "").split(" ", 1)[-1]
                    payload = f["body"].replace("{auth}", auth or "").replace("{cred}", cred)
                    return self._answer(f["status"], payload.encode(), [("Content-Type", "application/json")])
                if act == "status":
                    outer.log.append((self.command, self.path, f["status"]))
                    hs = [("Retry-After", f["retry_after"])] if "retry_after" in f else []
                    return self._answer(f["status"],
                                        f.get("body", b'{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}'),
                                        hs + list(f.get("add_headers", [])))
                conn = http.client.HTTPConnection(outer.upstream, timeout=120)
                drop = ("host", "transfer-encoding", "connection")
                if act == "strip_range":
                    drop += ("range",)
                if outer.upstream_auth:
                    drop += ("authorization",)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in drop}
                if outer.upstream_auth:
                    headers["Authorization"] = outer.upstream_auth(self.path)
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read() if self.command != "HEAD" else b""
                conn.close()
                outer.log.append((self.command, self.path, r.status))
                added = outer.answered(self.command, self.path, dict(self.headers), body, r.status)
                if act == "lost_response":
                    self._reset()
                if act == "paginate":
                    return self._paginate(f, r, data)
                self.send_response(r.status)
                for k, v in r.getheaders():
                    lk = k.lower()
                    if lk in ("connection", "transfer-encoding", "content-length"):
                        continue
                    if lk == "location" and v.startswith(f"http://{outer.upstream}"):
                        v = v.replace(f"http://{outer.upstream}", outer.public, 1)
                    if lk == "location" and act == "relative_location":
                        v = v.split(outer.host, 1)[-1]
                    if lk == "location" and act == "other_location":
                        v = v.replace(outer.host, f["to"], 1)
                    if lk == "location" and act == "drop_location":
                        continue
                    if lk == "docker-content-digest" and act == "wrong_digest":
                        v = "sha256:" + "0" * 64
                    if lk == "range" and act == "drop_range":
                        continue
                    if lk == "range" and act == "stuck_range":
                        v = "0-0"  # as ECR answering a dropped chunk
                    if lk == "content-range" and act == "shift_content_range":
                        first, rest = v.split(" ", 1)[1].split("-", 1)
                        v = f"bytes {int(first) + 1}-{rest}"
                    self.send_header(k, v)
                for k, v in list((f or {}).get("add_headers", [])) + added:
                    self.send_header(k, v)
                if act == "long":
                    data += b"\0" * f.get("extra", 1)
                if self.command == "HEAD":
                    self.send_header("Content-Length", r.getheader("Content-Length", "0"))
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if act in ("drop_mid_body", "truncate", "short_at", "reset_at", "stall_at") and data:
                    at = min(f.get("at", len(data) // 2), len(data) - 1)
                    self.wfile.write(data[:at])
                    self.wfile.flush()
                    if act == "reset_at":
                        self._reset()
                    if act == "stall_at":
                        self._abandon(f.get("seconds", 30))
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if act == "corrupt" and data:
                    data = bytearray(data)
                    data[min(f.get("at", len(data) // 2), len(data) - 1)] ^= 0xFF
                    data = bytes(data)
                self.wfile.write(data)

            def _paginate(self, f, r, data):
                # serve the tag list in pages of f["n"], with relative Link headers
                from urllib.parse import urlparse, parse_qs
                q = parse_qs(urlparse(self.path).query)
                last = q.get("last", [""])[0]
                doc = json.loads(data)
                rest = sorted(t for t in doc["tags"] if t > last)
                page = rest[: f["n"]]
                data = json.dumps({"name": doc["name"], "tags": page}).encode()
                with outer.lock:
                    f["times"] = f.get("times", 0) + 1
                self.send_response(200)
                if len(rest) > len(page):
                    path = urlparse(self.path).path
                    self.send_header("Link", f'<{path}?n={f["n"]}&last={page[-1]}>; rel="next"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                if os.environ.get("KILN_TEST_PROXY_DEBUG"):
                    super().handle_error(request, client_address)

        self.public = public or f"http://{self.host}"
        self.httpd = S(("127.0.0.1", self.port), H)
        if tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, **fault):
        with self.lock:
            self.faults.append(fault)

    # hooks for proxies that add behaviour (ReferrersProxy)
    def serve(self, handler, body):
        """Answers a request here instead of the upstream; True when it did."""
        return False

    def answered(self, method, path, headers, body, status):
        """Sees a request the upstream answered; returns headers to add."""
        return []


    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- the referrers API (distribution-spec 1.1) over a registry without it ----

class ReferrersProxy(FaultProxy):
    """Emulates the referrers API of distribution-spec 1.1 in front of a
    registry that lacks it (Debian's docker-registry 2.8 has none, and Debian
    ships no registry that has it): a manifest PUT with a `subject` that the
    registry accepted is recorded and answered with an `OCI-Subject` header,
    and GET /v2/<name>/referrers/<digest>[?artifactType=T] is served here as an
    image index of the recorded descriptors (empty when there are none).
    Everything else goes to the real registry.  .referrers:
    {(name, subject digest): [descriptor, ...]}."""

    MANIFEST_PUT = re.compile(r"^/v2/(.+)/manifests/([^/?]+)$")
    REFERRERS_GET = re.compile(r"^/v2/(.+)/referrers/(sha256:[0-9a-f]{64})(?:\?(.*))?$")

    def __init__(self, upstream_host):
        self.referrers = {}
        super().__init__(upstream_host)

    def answered(self, method, path, headers, body, status):
        m = self.MANIFEST_PUT.match(path)
        if method != "PUT" or not m or status != 201 or not body:
            return []
        try:
            doc = json.loads(body)
        except ValueError:
            return []
        subject = (doc.get("subject") or {}).get("digest") if isinstance(doc, dict) else None
        if not subject:
            return []
        desc = {"mediaType": doc.get("mediaType") or headers.get("Content-Type"),
                "digest": "sha256:" + hashlib.sha256(body).hexdigest(), "size": len(body)}
        at = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
        if at:
            desc["artifactType"] = at
        if doc.get("annotations"):
            desc["annotations"] = doc["annotations"]
        with self.lock:
            listed = self.referrers.setdefault((m.group(1), subject), [])
            if desc["digest"] not in [d["digest"] for d in listed]:
                listed.append(desc)
        return [("OCI-Subject", subject)]

    def serve(self, handler, body):
        from urllib.parse import parse_qs
        m = self.REFERRERS_GET.match(handler.path)
        if handler.command not in ("GET", "HEAD") or not m:
            return False
        want = parse_qs(m.group(3) or "").get("artifactType", [None])[0]
        with self.lock:
            listed = list(self.referrers.get((m.group(1), m.group(2)), []))
            self.log.append((handler.command, handler.path, 200))
        if want:
            listed = [d for d in listed if d.get("artifactType") == want]
        data = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": listed}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
        if want:
            handler.send_header("OCI-Filters-Applied", "artifactType")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command == "GET":
            handler.wfile.write(data)
        return True


# ---- Docker Hub, NGC and the like under their real names, offline ----

def make_named_cert(d, ca_crt, ca_key, names):
    """A server certificate for the DNS names, signed by the test CA."""
    d = pathlib.Path(d)
    d.mkdir(parents=True, exist_ok=True)
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=" + ",".join(f"DNS:{n}" for n in names) +
                   "\nextendedKeyUsage=serverAuth\n")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={names[0]}",
        "-keyout", d / "named.key", "-out", d / "named.csr")
    run("openssl", "x509", "-req", "-in", d / "named.csr", "-CA", ca_crt, "-CAkey", ca_key,
        "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", d / "named.crt")
    return d / "named.crt", d / "named.key"


class NamedRegistry(FaultProxy):
    """A registry posing as a public one: one TLS front on 127.0.0.1 with a
    certificate (from a test CA) for every name in `names`, which kiln
    reaches through KILN_TEST_CONNECT_TO (.env).  Requests whose Host is
    the token host are answered here as that registry's token server
    (realm https://TOKEN_HOST/token, anonymous pulls allowed, `users` may
    push); everything else goes to a docker-registry with token auth.
    .hosts records the Host of every request, so a test can say which names
    kiln contacted; .ratelimit = (limit, remaining) adds Docker Hub's
    RateLimit headers to manifest answers.

    Docker Hub: NamedRegistry(d, "registry-1.docker.io", "auth.docker.io",
    "registry.docker.io", users, decoys=("docker.io", "index.docker.io"));
    NGC: NamedRegistry(d, "nvcr.io", "nvcr.io", "ngc", users,
    token_path="/proxy_auth")."""

    def __init__(self, workdir, api_host, token_host, service, users, decoys=(),
                 token_path="/token", any_user_token=None):
        """any_user_token: a password accepted with any user name (GHCR and
        a GITHUB_TOKEN)."""
        workdir = pathlib.Path(workdir)
        self.any_user_token = any_user_token
        self.api_host, self.token_host, self.token_path = api_host, token_host, token_path
        self.ca, ca_key = make_ca(workdir / "ca")
        names = list(dict.fromkeys([api_host, token_host, *decoys]))
        cert = make_named_cert(workdir / "cert", self.ca, ca_key, names)
        self.tokens = TokenServer(workdir / "token", users, service=service,
                                  acl=lambda user, repo: {"pull", "push"} if user else {"pull"})
        auth = ("token", {"realm": f"https://{token_host}{token_path}", "service": service,
                          "issuer": self.tokens.issuer, "rootcertbundle": self.tokens.bundle})
        self.registry = Registry(workdir / "registry", auth=auth)
        self.hosts = []
        self.token_requests = []
        self.ratelimit = None
        super().__init__(self.registry.host, tls=cert, public=f"https://{api_host}")
        self.env = {"KILN_TEST_CONNECT_TO": ",".join(f"{n}:443:127.0.0.1:{self.port}" for n in names),
                    "http_proxy": "", "https_proxy": "", "HTTP_PROXY": "", "HTTPS_PROXY": ""}

    def serve(self, handler, body):
        from urllib.parse import urlparse, parse_qs
        host = handler.headers.get("Host", "")
        with self.lock:
            self.hosts.append(host)
        u = urlparse(handler.path)
        if host != self.token_host or u.path != self.token_path:
            return False
        q = parse_qs(u.query)
        header = handler.headers.get("Authorization")
        user = self.tokens._check_basic(header)
        if user is False and self.any_user_token and header.startswith("Basic "):
            name, _, pw = base64.b64decode(header[6:]).decode(errors="replace").partition(":")
            user = name if pw == self.any_user_token else False
        with self.lock:
            self.token_requests.append({"method": handler.command, "path": u.path, "query": q,
                                        "user": user})
        if handler.command == "POST":
            code, doc = 404, {"error": "not found"}  # no OAuth2 grants: clients use GET
        elif user is False:
            code, doc = 401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}
        else:
            code, doc = 200, self.tokens._issue(user, q.get("scope", []), q.get("service", [""])[0])
        data = json.dumps(doc).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)
        return True

    def answered(self, method, path, headers, body, status):
        if self.ratelimit and "/manifests/" in path and method in ("GET", "HEAD"):
            lim, left = self.ratelimit
            return [("RateLimit-Limit", f"{lim};w=21600"), ("RateLimit-Remaining", f"{left};w=21600")]
        return []

    def manifest_requests(self, method):
        return [l for l in self.log if l[0] == method and "/manifests/" in l[1]]

    def stop(self):
        super().stop()
        self.registry.stop()
        self.tokens.stop()
