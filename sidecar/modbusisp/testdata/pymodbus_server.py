#!/usr/bin/python3
"""An independent Modbus TCP server for iotgw's tests: Debian's python3-pymodbus with known register values.

Usage: pymodbus_server.py PORT VALUES_JSON
VALUES_JSON: {"hr": [uint16, ...], "ir": [...], "co": [0/1, ...], "di": [...]} starting at address 0 (unit 1).
Prints "ready" on stdout once listening.
"""
import json
import sys
import threading
import time

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import StartTcpServer


def main():
    port = int(sys.argv[1])
    values = json.loads(sys.argv[2])

    def block(name):
        return ModbusSequentialDataBlock(0, list(values.get(name, [])) + [0] * 200)

    slave = ModbusSlaveContext(hr=block("hr"), ir=block("ir"), co=block("co"), di=block("di"), zero_mode=True)
    context = ModbusServerContext(slaves=slave, single=True)

    def announce():
        import socket
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
