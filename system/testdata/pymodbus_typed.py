#!/usr/bin/python3
"""Debian's python3-pymodbus as an independent Modbus TCP server, for iotgw's type and byte-order tests.

Usage: pymodbus_typed.py PORT SPEC_JSON
SPEC_JSON: [{"address": 0, "type": "float32", "order": "CDAB", "value": 123.456}, ...] on unit 1, holding registers.
Values are encoded here with Python's struct module, independently of the gateway's codec. Prints "ready".
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
    regs = [0] * 1000
    for item in spec:
        words = encode(item["type"], item.get("order", "ABCD"), item["value"])
        regs[item["address"]:item["address"] + len(words)] = words
    slave = ModbusSlaveContext(hr=ModbusSequentialDataBlock(0, regs), zero_mode=True)
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
    StartTcpServer(context=context, address=("127.0.0.1", port))


if __name__ == "__main__":
    main()
