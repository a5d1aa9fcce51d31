"""Read a modbussim server with pymodbus, an independent client, and print JSON.

Usage: pymodbus_read.py HOST PORT UNIT
Prints {"holding": [...10 registers from 0], "coils": [...16 bits from 0],
"exception": <code of reading holding 9999..10000, or null>} or {"error": "..."}.
"""
import json
import sys

from pymodbus.client import ModbusTcpClient


def main():
    host, port, unit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    client = ModbusTcpClient(host, port=port, timeout=5)
    if not client.connect():
        print(json.dumps({"error": "connect failed"}))
        return 1
    try:
        hr = client.read_holding_registers(0, 10, slave=unit)
        if hr.isError():
            print(json.dumps({"error": "read holding registers: %s" % hr}))
            return 1
        co = client.read_coils(0, 16, slave=unit)
        if co.isError():
            print(json.dumps({"error": "read coils: %s" % co}))
            return 1
        ex = client.read_holding_registers(9999, 2, slave=unit)
        code = getattr(ex, "exception_code", None) if ex.isError() else None
        print(json.dumps({
            "holding": list(hr.registers),
            "coils": [bool(b) for b in co.bits[:16]],
            "exception": code,
        }))
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
