#!/usr/bin/python3
"""Debian's python3-pymodbus as an independent Modbus TCP server with known values, for iotgw's tests.

Usage: pymodbus_server.py PORT SPEC_JSON [rtu], where SPEC_JSON is either
  {"hr": [uint16, ...], "ir": [...], "co": [0/1, ...], "di": [...]}   raw tables from address 0, or
  [{"address": 0, "type": "float32", "order": "CDAB", "value": 123.456}, ...]   typed holding registers, encoded
  here with Python's struct module, independently of the gateway's codec.
Serves unit 1 (and any other id). With "rtu" it frames Modbus RTU over TCP (a serial device server) instead of
Modbus TCP. Prints "ready" once listening.
"""
import json
import socket
import struct
import sys
import threading
import time

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import StartTcpServer

FORMATS = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f",
           "int64": ">q", "uint64": ">Q", "float64": ">d"}


def encode(kind, order, value):
    if kind == "string":
        raw = value.encode("ascii")
        if len(raw) % 2:
            raw += b"\0"
    else:
        if kind.startswith(("int", "uint")):
            value = int(value)
        raw = struct.pack(FORMATS[kind], value)  # big-endian: A B C D ...
    if order == "DCBA":
        raw = raw[::-1]
    elif order == "BADC":
        raw = b"".join(raw[i:i + 2][::-1] for i in range(0, len(raw), 2))
    elif order == "CDAB":
        words = [raw[i:i + 2] for i in range(0, len(raw), 2)]
        raw = b"".join(reversed(words))
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


def main():
    port = int(sys.argv[1])
    spec = json.loads(sys.argv[2])
    tables = {"hr": [], "ir": [], "co": [], "di": []}
    if isinstance(spec, dict):
        tables.update(spec)
    else:
        regs = [0] * 1000
        for item in spec:
            words = encode(item["type"], item.get("order", "ABCD"), item["value"])
            regs[item["address"]:item["address"] + len(words)] = words
        tables["hr"] = regs

    def block(name):
        return ModbusSequentialDataBlock(0, list(tables[name]) + [0] * 1000)

    slave = ModbusSlaveContext(hr=block("hr"), ir=block("ir"), co=block("co"), di=block("di"), zero_mode=True)
    context = ModbusServerContext(slaves=slave, single=True)

    def announce():
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                print("ready", flush=True)
                return
            except OSError:
                time.sleep(0.05)

    threading.Thread(target=announce, daemon=True).start()
    if len(sys.argv) > 3 and sys.argv[3] == "rtu":
        from pymodbus.transaction import ModbusRtuFramer
        StartTcpServer(context=context, address=("127.0.0.1", port), framer=ModbusRtuFramer)
    else:
        StartTcpServer(context=context, address=("127.0.0.1", port))


if __name__ == "__main__":
    main()
