#!/usr/bin/env python3
"""A lab backend: names itself over HTTP (TCP port 80, IPv4 and IPv6) and UDP echo
(port 7), and streams a slow download for long-lived-connection tests.

  GET /           -> "<name>\n"
  GET /slow?bytes=N&rate=R -> "backend=<name>\n" then N bytes at about R bytes/s
  POST /          -> reads the whole body, answers "<name> received <bytes>\n"
  UDP port 7 of each VIP given -> replies "<name>" from that VIP

Usage: backend.py NAME [VIP ...]   (UDP is bound per VIP so replies come from the VIP)
"""
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

NAME = sys.argv[1]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_POST(self):
        # Read the whole body before answering, so the client has to deliver all of it.
        n = int(self.headers.get("Content-Length", "0"))
        got = 0
        while got < n:
            chunk = self.rfile.read(min(65536, n - got))
            if not chunk:
                break
            got += len(chunk)
        body = f"{NAME} received {got}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/slow":
            q = parse_qs(url.query)
            total = int(q.get("bytes", ["1000000"])[0])
            rate = int(q.get("rate", ["100000"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(f"backend={NAME}\n".encode())
            self.wfile.flush()
            chunk = max(1, rate // 20)
            sent = 0
            while sent < total:
                n = min(chunk, total - sent)
                self.wfile.write(b"x" * n)
                self.wfile.flush()
                sent += n
                time.sleep(n / rate)
            return
        body = f"{NAME}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class DualStack(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def udp_echo(vip):
    family = socket.AF_INET6 if ":" in vip else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND: the VIP may be added after us
    s.bind((vip, 7))
    while True:
        _, peer = s.recvfrom(2048)
        s.sendto(NAME.encode(), peer)


for vip in sys.argv[2:]:
    threading.Thread(target=udp_echo, args=(vip,), daemon=True).start()
print("ready", flush=True)
DualStack(("::", 80), Handler).serve_forever()
