#!/usr/bin/env python3
"""A registry front for the conformance suite: reads (GET, HEAD) go to the edge's mirror, writes
(POST, PUT, PATCH, DELETE) to the origin's registry, with the origin's credentials added.

The OCI conformance suite talks to one registry URL and creates its own content. An edge mirror
is read-only; its content is what was pushed to the origin. Behind this front the suite's setup
pushes to the origin, and every request that checks an answer reads from the edge, as a device
at a site would. Nothing is answered by the proxy itself.

    split_proxy.py --reads http://127.0.0.1:5000 --writes http://127.0.0.1:8442 --basic user:pass

Prints `{"ready": PORT}` on stdout once listening; logs one line per request on stderr.
"""
import argparse
import base64
import http.client
import http.server
import json
import sys
import urllib.parse

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-authorization", "proxy-authenticate", "host"}


def read_body(h):
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += h.rfile.read(size)
            h.rfile.readline()
    n = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(n) if n else b""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reads", required=True)
    ap.add_argument("--writes", required=True)
    ap.add_argument("--basic", required=True, help="user:password for the writes")
    a = ap.parse_args()
    auth = "Basic " + base64.b64encode(a.basic.encode()).decode()
    reads, writes = urllib.parse.urlsplit(a.reads), urllib.parse.urlsplit(a.writes)

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self):
            body = read_body(self)
            write = self.command not in ("GET", "HEAD")
            to = writes if write else reads
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            if write:
                headers["Authorization"] = auth
            headers["Content-Length"] = str(len(body))
            c = http.client.HTTPConnection(to.hostname, to.port, timeout=60)
            try:
                c.request(self.command, self.path, body=body, headers=headers)
                r = c.getresponse()
                data = r.read()
            finally:
                c.close()
            sys.stderr.write(f"{self.command} {self.path} -> {'origin' if write else 'edge'} "
                             f"{r.status}\n")
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() in HOP or k.lower() == "content-length":
                    continue
                if k.lower() == "location" and v.startswith(f"http://{to.netloc}"):
                    v = v[len(f"http://{to.netloc}"):]
                self.send_header(k, v)
            length = r.getheader("Content-Length")
            if self.command == "HEAD" and length is not None:
                self.send_header("Content-Length", length)
            else:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = forward

        def log_message(self, *args):
            pass

    s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    print(json.dumps({"ready": s.server_address[1]}), flush=True)
    s.serve_forever()


if __name__ == "__main__":
    main()
