#!/usr/bin/env python3
"""A minimal ISP sidecar written from the protocol document alone, with Python's standard library.

It is the interoperability check for iotgw: line-delimited JSON over TCP on ISP_PORT (default 50052), the gateway
is the client. It accepts CONFIG (answers RESPONSE success or an error), answers STATUS and HEARTBEAT, sends a
HEARTBEAT every HEARTBEAT_S seconds, and sends DATA every interval_ms with one simulated point per register, and METRICS (its counters) every half second.
Unknown message types get an error RESPONSE; the connection stays up.

Test hooks (environment): PYSIM_GARBAGE=1 sends a line of garbage and an oversized line once after CONFIG;
PYSIM_SILENT=1 never sends heartbeats or data; PYSIM_NO_CONFIG_REPLY=1 never answers CONFIG; PYSIM_HALF_LINE=1
sends half a line after CONFIG and disconnects.
"""
import json
import math
import os
import socket
import sys
import threading
import time

PORT = int(os.environ.get("ISP_PORT", "50052"))
HEARTBEAT_S = float(os.environ.get("HEARTBEAT_S", "15"))


def now_ns():
    return time.time_ns()


class Client:
    def __init__(self, sock, addr):
        self.sock = sock
        self.addr = addr
        self.lock = threading.Lock()
        self.config = None
        self.alive = True
        self.sent = 0

    def send(self, msg):
        line = (json.dumps(msg, separators=(",", ":")) + "\n").encode("utf-8")
        self.send_raw(line)

    def send_raw(self, data):
        with self.lock:
            try:
                self.sock.sendall(data)
                self.sent += 1
            except OSError:
                self.alive = False

    def respond(self, msg_id, success=True, error=None, **extra):
        payload = {"success": success}
        if error:
            payload["error"] = error
        payload.update(extra)
        self.send({"type": "RESPONSE", "id": msg_id, "timestamp": now_ns(), "payload": payload})

    def handle(self, msg):
        kind = msg.get("type")
        msg_id = msg.get("id", "")
        if kind == "CONFIG":
            if os.environ.get("PYSIM_NO_CONFIG_REPLY"):
                return
            cfg = msg.get("payload") or {}
            if not isinstance(cfg.get("registers", []), list) or not cfg.get("mode"):
                self.respond(msg_id, False, "config needs a mode and a list of registers")
                return
            self.config = cfg
            self.respond(msg_id)
            if os.environ.get("PYSIM_HALF_LINE"):
                self.send_raw(b'{"type":"DATA","payload":{"points":[{"key":"half"')
                self.alive = False
                self.sock.shutdown(socket.SHUT_RDWR)
                return
            if os.environ.get("PYSIM_GARBAGE"):
                self.send_raw(b"this is not json\n")
                self.send_raw(b'{"type":"DATA","payload":' + b'"x' * (2 << 20) + b'"}\n')
                self.send_raw(b'{"type":"FROBNICATE","id":"odd-1","timestamp":1}\n')
        elif kind == "STATUS":
            regs = len((self.config or {}).get("registers", []))
            self.respond(msg_id, status="running", configured=self.config is not None, registers=regs,
                         language="python", messages_sent=self.sent)
        elif kind == "HEARTBEAT":
            if msg_id:
                self.respond(msg_id)
        elif kind == "RESPONSE":
            pass
        else:
            self.respond(msg_id, False, "unknown message type %r" % kind)

    def read_loop(self):
        buf = b""
        while self.alive:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.strip()
                if not line:
                    continue
                try:
                    msg = json.loads(line.decode("utf-8"))
                except (ValueError, UnicodeDecodeError) as e:
                    self.respond("", False, "bad line: %s" % e)
                    continue
                if not isinstance(msg, dict):
                    self.respond("", False, "a message is a JSON object")
                    continue
                self.handle(msg)
        self.alive = False
        try:
            self.sock.close()
        except OSError:
            pass

    def data_loop(self):
        last_hb = last_metrics = next_data = time.time()
        while self.alive:
            time.sleep(0.01)
            if os.environ.get("PYSIM_SILENT"):
                continue
            cfg = self.config
            t = time.time()
            if cfg is not None and t >= next_data:
                next_data = t + cfg.get("interval_ms", 1000) / 1000.0
                points = []
                for reg in cfg.get("registers", []):
                    value = round(20 + 5 * math.sin(t), 3) * (reg.get("scale") or 1)
                    if reg.get("type") == "bool":
                        value = int(t) % 2 == 0
                    points.append({"key": reg["key"], "source": "pysim", "timestamp": now_ns(), "value": value,
                                   "type": reg.get("type", "float32"), "quality": 1, "tags": reg.get("tags") or {}})
                if points:
                    self.send({"type": "DATA", "timestamp": now_ns(), "payload": {"points": points}})
            if cfg is not None and t - last_metrics >= 0.5:
                regs = len(cfg.get("registers", []))
                self.send({"type": "METRICS", "timestamp": now_ns(),
                           "payload": {"counters": {"registers": regs, "messages_sent": self.sent}}})
                last_metrics = t
            if t - last_hb >= HEARTBEAT_S:
                self.send({"type": "HEARTBEAT", "timestamp": now_ns()})
                last_hb = t


def main():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", PORT))
    srv.listen(8)
    print("pysim sidecar listening on 127.0.0.1:%d" % PORT, flush=True)
    while True:
        sock, addr = srv.accept()
        c = Client(sock, addr)
        threading.Thread(target=c.read_loop, daemon=True).start()
        threading.Thread(target=c.data_loop, daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
