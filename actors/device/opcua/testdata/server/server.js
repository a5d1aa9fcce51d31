// The OPC UA server the opcua driver's tests start for real: node-opcua, an implementation independent of the
// gateway's client (gopcua). Usage:
//
//   node server.js --port 4840 --pki DIR [--no-anonymous] [--bench N] [--limit N] [--reject-clients]
//
// DIR holds the server's PKI (its self-signed certificate is made there on the first start and kept, so a restart
// on the same DIR presents the same certificate). Client certificates are accepted without a trust list: the
// tests are about the gateway verifying the server, not the other way round; so are user certificates (auth =
// "certificate"). With --reject-clients it trusts no client certificate (a server the gateway was not yet
// introduced to). It prints one line
// "listening <port> <server certificate path>" once it accepts connections, and runs until it is killed.
//
// The address space, under Objects/Plant (ns=1):
//   Plant/Line1/Temperature  ns=1;s=Temperature  Double, a ramp 20.0, 20.5, … 29.5, one step every 50 ms
//   Plant/Line1/Counter      ns=1;s=Counter      UInt32, +1 every 50 ms from the server's start
//   Plant/Line1/Setpoint     ns=1;s=Setpoint     Double, writable (starts at 50)
//   Plant/Line1/Running      ns=1;s=Running      Boolean, writable (starts true)
//   Plant/Line1/Name         ns=1;s=Name         String "line one"
//   Plant/Line1/Status       ns=1;s=Status       Int32 42, its status Uncertain (UncertainLastUsableValue)
//   Plant/Line2/Pressure     ns=1;s=Pressure     Float 1.5, read only
//   Plant/Bench/B0 … B{N-1} ns=1;s=Bench.{i} UInt32, +1 every 10 ms (with --bench N, for the benchmark)
// Users: "operator" / "secret". --limit N announces (and enforces) at most N nodes per Read and N monitored items
// per call in Server.ServerCapabilities.OperationLimits.
"use strict";
const path = require("path");
const {
  OPCUAServer, OPCUACertificateManager, DataType, Variant, StatusCodes, MessageSecurityMode, SecurityPolicy,
} = require("node-opcua");

function arg(name, def) {
  const i = process.argv.indexOf("--" + name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

async function main() {
  const port = parseInt(arg("port", "4840"), 10);
  const pki = path.resolve(arg("pki", path.join(__dirname, "pki")));
  const anonymous = !process.argv.includes("--no-anonymous");
  const limit = parseInt(arg("limit", "0"), 10);

  const serverCertificateManager = new OPCUACertificateManager({
    rootFolder: path.join(pki, "server"),
    automaticallyAcceptUnknownCertificate: !process.argv.includes("--reject-clients"),
  });
  await serverCertificateManager.initialize();
  const userCertificateManager = new OPCUACertificateManager({
    rootFolder: path.join(pki, "users"),
    automaticallyAcceptUnknownCertificate: true,
  });
  await userCertificateManager.initialize();
  const certificateFile = path.join(pki, "server", "own", "certs", "server_certificate.pem");
  const privateKeyFile = path.join(pki, "server", "own", "private", "private_key.pem");

  const server = new OPCUAServer({
    port,
    hostname: "127.0.0.1",
    alternateHostname: ["127.0.0.1"],
    serverCertificateManager,
    userCertificateManager,
    certificateFile,
    privateKeyFile,
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: anonymous,
    userManager: { isValidUser: (user, pass) => user === "operator" && pass === "secret" },
    buildInfo: { productName: "iotgw-test-server", buildNumber: "1" },
    serverCapabilities: limit > 0 ? { operationLimits: { maxNodesPerRead: limit, maxMonitoredItemsPerCall: limit } } : undefined,
  });
  await server.initialize();

  const ns = server.engine.addressSpace.getOwnNamespace();
  const objects = server.engine.addressSpace.rootFolder.objects;
  const plant = ns.addFolder(objects, { browseName: "Plant", nodeId: "s=Plant" });
  const line1 = ns.addFolder(plant, { browseName: "Line1", nodeId: "s=Line1" });
  const line2 = ns.addFolder(plant, { browseName: "Line2", nodeId: "s=Line2" });

  const started = Date.now();
  const tick = () => Math.floor((Date.now() - started) / 50);
  const readOnly = (v) => ({ get: () => v });

  ns.addVariable({
    componentOf: line1, browseName: "Temperature", nodeId: "s=Temperature", dataType: "Double",
    minimumSamplingInterval: 10,
    value: { get: () => new Variant({ dataType: DataType.Double, value: 20 + (tick() % 20) / 2 }) },
  });
  ns.addVariable({
    componentOf: line1, browseName: "Counter", nodeId: "s=Counter", dataType: "UInt32",
    minimumSamplingInterval: 10,
    value: { get: () => new Variant({ dataType: DataType.UInt32, value: tick() }) },
  });
  let setpoint = 50;
  ns.addVariable({
    componentOf: line1, browseName: "Setpoint", nodeId: "s=Setpoint", dataType: "Double",
    minimumSamplingInterval: 10, accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite",
    value: {
      get: () => new Variant({ dataType: DataType.Double, value: setpoint }),
      set: (v) => { setpoint = v.value; return StatusCodes.Good; },
    },
  });
  let running = true;
  ns.addVariable({
    componentOf: line1, browseName: "Running", nodeId: "s=Running", dataType: "Boolean",
    minimumSamplingInterval: 10, accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite",
    value: {
      get: () => new Variant({ dataType: DataType.Boolean, value: running }),
      set: (v) => { running = v.value; return StatusCodes.Good; },
    },
  });
  ns.addVariable({
    componentOf: line1, browseName: "Name", nodeId: "s=Name", dataType: "String",
    accessLevel: "CurrentRead", userAccessLevel: "CurrentRead",
    minimumSamplingInterval: 10, value: readOnly(new Variant({ dataType: DataType.String, value: "line one" })),
  });
  const status = ns.addVariable({
    componentOf: line1, browseName: "Status", nodeId: "s=Status", dataType: "Int32",
  });
  status.setValueFromSource(new Variant({ dataType: DataType.Int32, value: 42 }), StatusCodes.UncertainLastUsableValue);
  ns.addVariable({
    componentOf: line2, browseName: "Pressure", nodeId: "s=Pressure", dataType: "Float",
    accessLevel: "CurrentRead", userAccessLevel: "CurrentRead",
    minimumSamplingInterval: 10, value: readOnly(new Variant({ dataType: DataType.Float, value: 1.5 })),
  });

  const benchNodes = parseInt(arg("bench", "0"), 10);
  if (benchNodes > 0) {
    const bench = ns.addFolder(plant, { browseName: "Bench", nodeId: "s=Bench" });
    const fast = () => Math.floor((Date.now() - started) / 10);
    for (let i = 0; i < benchNodes; i++) {
      ns.addVariable({
        componentOf: bench, browseName: `B${i}`, nodeId: `s=Bench.${i}`, dataType: "UInt32", minimumSamplingInterval: 10,
        value: { get: () => new Variant({ dataType: DataType.UInt32, value: fast() + i }) },
      });
    }
  }

  await server.start();
  process.stdout.write(`listening ${port} ${certificateFile}\n`);
  const stop = async () => { try { await server.shutdown(0); } finally { process.exit(0); } };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => { process.stderr.write(`server failed: ${err && err.stack || err}\n`); process.exit(1); });
