# gateway.hcl — the iotgw configuration that runs out of the box on one machine: an embedded NATS server, two
# simulated (mock) devices, a Modbus TCP simulator polled by two Modbus devices, and a console sink that prints
# every processed point.
#
#   go run . run                  # start it (Ctrl-C stops it)
#   go run . validate gateway.hcl # check a config: every problem is listed with file:line:column
#
# Every key is shown with its default value unless the comment says otherwise. Durations are strings ("250ms",
# "5s", "1m"), sizes are strings ("512MB", "1GB"; KB/MB/GB are powers of 1024, like nats-server). Any string
# can come from the environment: env("NAME") or env("NAME", "default").
# Ids (device ids, point keys, sink names) become NATS subject tokens: letters, digits, '-', '_' …; no '.',
# '*', '>' or spaces, at most 64 characters. The device id "batch" is reserved.

gateway {
  # This gateway's id: in logs, in supervisor events and in iot.control.ping. Default: the host name.
  id = env("IOTGW_ID", "iotgw-local")
  # trace | debug | info | warn | error. The LOG_LEVEL environment variable overrides it.
  log_level = "info"
  # console (readable, coloured on a terminal) | json. `iotgw run -log-format json` overrides it.
  log_format = "console"
  # Where the gateway keeps state (JetStream store by default).
  data_dir = "./data"
  # HTTP server: /healthz, /readyz (NATS connected, supervisors up) and Prometheus /metrics. "" disables it.
  # Beyond loopback it needs the http block's tls and token, or http { insecure = true }.
  http_address = "127.0.0.1:8080"
  # Publish every point on iot.processed.{device}.{key} beside the batch on iot.processed.batch.{device}.
  # Batches are the hot path (one bus message per poll); per-point subjects are for people who `nats sub` them
  # and cost about one bus message per point (see bench/REPORT.md).
  point_subjects = true
  # The Go runtime's soft memory limit (debug.SetMemoryLimit; the GOMEMLIMIT environment variable wins over it).
  # Unset: no limit. The GC works harder as the heap nears it: 1,000 Modbus devices took 112 instead of 141 MiB
  # RSS at 90MB, for 1.27x the CPU per point (README, "The cost per poll"). A limit, not a cap: past it the
  # gateway keeps running and the GC runs more.
  # memory_limit = "96MB"
}

# How the HTTP server is protected (all optional; the defaults suit loopback).
http {
  # Clients send Authorization: Bearer {token} (at least 16 characters). /healthz, /readyz and /metrics asked
  # from loopback need none, so a local Prometheus and health checks keep working. "" or unset: no token.
  # token = env("IOTGW_HTTP_TOKEN")
  # Serve HTTPS with this certificate and key (PEM).
  # tls {
  #   cert = "/etc/iotgw/http-cert.pem"
  #   key  = "/etc/iotgw/http-key.pem"
  # }
  # Accept serving beyond loopback without TLS and a token; the gateway warns at every start.
  insecure = false
  # The same server streams bus subjects to browsers: GET /ws?subject=iot.alerts.> (README, "The WebSocket
  # endpoint"): data subjects only, never iot.control.>, $JS, $SYS or inboxes; the token above applies; a client
  # that does not keep up is closed with 1008 "slow consumer"; at most 64 connections.
  # And the dashboard at / in a browser (README, "Dashboard"; no key of its own): open on loopback without a
  # token (an anonymous visitor is an admin there); with the token, sign in as a user of nats { authorization }
  # (admins may inject faults and acknowledge alerts, the others only look) or with the token itself.
}

nats {
  # "embedded" starts a NATS server inside the gateway; or nats://host:4222 (several, comma separated) for an
  # external server or cluster. An external server that is down at start does not stop the gateway: it runs,
  # is not ready on /readyz, keeps up to 64 MiB of what it publishes and connects when the server is there
  # (with JetStream on, the stream and the bucket of run-time devices are set up then).
  url = "embedded"
  # Embedded server: listen address and port. Loopback only unless you change it: beyond loopback (0.0.0.0, an
  # interface address, a host name) the gateway starts only with users (authorization) and tls below, or with
  # insecure = true, which it then warns about at every start.
  host = "127.0.0.1"
  port = 4222
  # insecure = true   # accept listening beyond loopback without users and TLS (anyone who reaches the port can
  #                   # read all data and, without users, drive iot.control.>). Default false.
  # Client options (embedded and external): reconnect forever (-1), wait between attempts, connect timeout.
  max_reconnect  = -1
  reconnect_wait = "2s"
  timeout        = "5s"
  # A ping every ping_interval; the link is declared dead after max_pings_out unanswered pings.
  ping_interval = "5s"
  max_pings_out = 2
  # The gateway's own connection to the embedded server: in memory (true) or over TCP loopback (false). Other
  # clients always use TCP. bench/REPORT.md compares the two. Ignored with an external url.
  in_process = true
  # One budget for the bus messages the NATS client buffers for the actors' subscriptions (nats.go's own bound,
  # 65,536 messages or 64 MiB, is per subscription): they share it, each an equal share within 1.5x (re-divided
  # exactly when the tree is read), at least 64 messages and 1 MiB. Past its share a subscription drops, and iot.control.tree counts it; the tree's root shows the budget.
  pending_messages = 131072
  pending_bytes    = "128MB"

  # Users of the embedded server. With none (the default) it requires no login, which is fine on loopback only.
  # With any user set, every client must log in. A user has a password or an nkey (its public key; the client
  # signs with the seed: iotgw ctl -nkey seed.txt); its name (ASCII letters, digits, - and _) names its inbox.
  #   admin = true: may use every subject (iot.control.>, JetStream, …).
  #   any other user: may subscribe to iot.processed.>, iot.rules.>, iot.alerts.>, iot.aggregated.>,
  #     iot.errors.>, iot.metrics.> and its own reply inbox _INBOX.{name}.> (iotgw ctl -user sets it; with the
  #     nats CLI: --inbox-prefix _INBOX.{name}), and publish nothing. iot.raw.>, iot.control.>, $JS.>, $KV.>,
  #     $O.>, $SYS.> and other users' inboxes are closed; the gateway's inboxes (_IOTGW_INBOX.>) and the other
  #     users' _INBOX.{name}.> stay closed whatever publish and subscribe grant.
  #   publish = [subjects]: what else it may publish to (wildcards * and > allowed), e.g. a device user that
  #     feeds one line: ["iot.raw.http.line3"]; a user that may ask the tree: ["iot.control.tree"].
  #   subscribe = [subjects]: what else it may subscribe to.
  #   allow_responses = true: it may answer (once, within a minute) each request it received; off by default,
  #     since a reader of data could otherwise answer requests whose messages it reads.
  # authorization {
  #   user "admin" {
  #     password = env("IOTGW_ADMIN_PASSWORD")
  #     admin    = true
  #   }
  #   user "dashboard" { password = env("IOTGW_DASHBOARD_PASSWORD") }
  #   user "line3" {
  #     password = env("IOTGW_LINE3_PASSWORD")
  #     publish  = ["iot.raw.http.line3"]
  #   }
  #   user "ops" {
  #     nkey  = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"
  #     admin = true
  #   }
  # }

  # TLS on the embedded server's client listener (PEM files, checked by `iotgw validate`). With ca, clients
  # must present a certificate signed by it (verify defaults to true then). The gateway's own connection stays
  # in memory (in_process must be true).
  # tls {
  #   cert   = "/etc/iotgw/nats-cert.pem"
  #   key    = "/etc/iotgw/nats-key.pem"
  #   ca     = "/etc/iotgw/clients-ca.pem"
  #   verify = true
  # }

  # TLS to an external server (url = "tls://…"): ca to trust its certificate (default: the system's roots),
  # cert and key to present a client certificate. Only with an external url.
  # client_tls {
  #   ca   = "/etc/iotgw/site-ca.pem"
  #   cert = "/etc/iotgw/gw-cert.pem"
  #   key  = "/etc/iotgw/gw-key.pem"
  # }

  jetstream {
    # Persistence, on by default: the IOT_DATA stream keeps the batches (iot.processed.batch.>, one message per
    # poll or DATA frame) and iot.rules.>; not the per-point subjects, which carry the same points again. The
    # processing stage's publishes into it are acknowledged, and every sink but the console reads a durable
    # consumer of it (README: Durability). false: sinks keep a bounded memory buffer each instead (`buffer`).
    # With an external server (url), that server must run JetStream (nats-server -js), or set false.
    enabled    = true
    # Default: <data_dir>/jetstream. The embedded server's store: its limits for all its streams together.
    store_dir  = "./data/jetstream"
    max_memory = "1GB"
    max_file   = "10GB"
    # IOT_DATA's limits, in age and bytes (default: three quarters of max_file); what they discard is counted
    # (iotgw_stream_discarded_total) and reported on iot.errors.jetstream.discarded.
    max_age    = "24h"
    max_bytes  = "7680MB"
    # When IOT_DATA is full: "old" deletes its oldest messages (a sink that lags that far loses them, counted as
    # above); "new" refuses new ones, which the processing stage counts and reports (iot.errors.processor.store).
    discard    = "old"
    # How long the stream drops a publish retried with the same message id (the processing stage retries an
    # unacknowledged publish within it).
    duplicate_window = "2m"
    # The processing stage's acknowledged publishes in flight, and how long one waits for its acknowledgement
    # before it is published again.
    publish_window  = 256
    publish_timeout = "5s"
    # IOT_DEADLETTER: what a sink gave up on (Term, or max_deliver attempts), with the reason in its headers.
    dead_letter_max_age   = "168h"
    dead_letter_max_bytes = "256MB"
    # JetStream off: the bound, in messages, of each durable inbox's memory buffer (oldest dropped past it, counted).
    buffer = 10000
    # How the embedded server's store reaches the disk: "always" (an fsync per write) or a duration (an fsync at
    # least that often). The loss window of a power cut; a crash of the process alone loses nothing stored
    # (with persist_mode "default", below).
    sync = "2m"
    # IOT_DATA's persist mode (nats-server's): "default" writes each message to the store's file before its
    # publish is acknowledged, so kill -9 loses nothing acknowledged; "async" acknowledges from the server's
    # write cache and writes it in batches (at 16 KiB, or within 8 ms): about 0.3-0.5 µs less CPU per point at
    # 30 points per batch, and a crash of the gateway can lose the publishes of those last 8 ms, acknowledged.
    # Fixed when the stream is created: to change it, remove the stream (its data) or use a new store_dir.
    persist_mode = "default"
  }

  # The uplink (README "Uplink"): the embedded server joins a hub (a site or cloud NATS cluster) as a leaf node,
  # with a JetStream domain of its own, and the hub's stream sources IOT_DATA across the link, so a WAN outage
  # delays data and loses none while IOT_DATA keeps it (max_age, max_file). Needs jetstream { enabled = true }
  # and the embedded server. Commented out: it needs a hub; the gateway runs without one.
  # leafnode {
  #   # The hub's leafnode listener (nats-leaf://, tls://, wss://…); urls = [ … ] for several servers of a
  #   # cluster, tried in turn.
  #   url = "nats-leaf://hub.example.com:7422"
  #   # How the hub knows the gateway: a .creds file (operator/JWT hubs) ...
  #   credentials = "/etc/iotgw/hub.creds"
  #   # ... or user and password of the hub's leafnodes authorization; the password only through env().
  #   # user     = "gw-plant7"
  #   # password = env("IOTGW_HUB_PASSWORD")
  #   # TLS to the hub: ca to trust its certificate (default: the system's roots), cert and key if the hub asks
  #   # for a client certificate. tls:// and wss:// URLs use TLS even without this block.
  #   # tls {
  #   #   ca = "/etc/iotgw/hub-ca.pem"
  #   # }
  #   # The gateway's JetStream domain: the hub reaches its stream as $JS.{domain}.API. Default: the gateway id.
  #   # domain = "plant7"
  #   # Let the hub's clients use iot.control.> of this gateway (add devices, inject faults, read the tree).
  #   # Default false: the link refuses control requests from the hub and hides the gateway's own.
  #   # allow_control = false
  #   # Between attempts to reach the hub.
  #   # reconnect_wait = "1s"
  # }
}

supervisor {
  # one_for_one restarts only the actor that failed; all_for_one restarts its siblings with it.
  strategy = "one_for_one"
  # An actor that fails more than max_restarts times within `within` is stopped for good, reported failed
  # in iot.control.tree and on iot.errors.supervisor.{name}; the gateway keeps running. An actor that has run
  # for `within` without failing starts again from the initial backoff.
  max_restarts = 10
  within       = "1m"
  backoff {
    # Delay before restart n: initial × 2^(n-1) varied by ±jitter (a fraction); at the cap it is drawn in
    # [max × (1 - jitter), max], so that many actors failing together do not restart in lockstep there either.
    initial = "100ms"
    max     = "10s"
    jitter  = 0.2
  }
}

# Fault injection through iot.control.faults.* (crash, stop, drop a connection, add latency, make a device
# return errors or bad quality, kill a sidecar process). Off unless enabled: a production gateway should not
# take orders to break itself.
faults {
  enabled = false
}

# A device: one actor under the "devices" supervisor. driver = "mock" simulates one; each poll of a group of
# points (same interval) is published as one batch on iot.raw.mock.{device}, validated by the processor and
# republished on iot.processed.batch.{device} and iot.processed.{device}.{key}.
device "boiler-1" {
  driver   = "mock"
  # Default poll interval of its points.
  interval = "1s"
  # Tags added to every point of the device.
  tags = { site = "plant-a", line = "1" }

  point "temperature" {
    # sine | ramp | random | constant | step | counter (by one from min at every poll) (required)
    signal = "sine"
    # Published value type: float64 | int64 | bool.
    type   = "float64"
    min    = 60
    max    = 90
    # Period of sine, ramp and step.
    period = "60s"
    # Goes into the point's tags as unit.
    unit   = "°C"
  }
  point "pressure" {
    signal = "random"
    min    = 1.8
    max    = 2.2
    unit   = "bar"
  }
  point "burner_on" {
    signal = "step"
    type   = "bool"
    period = "20s"
  }
}

device "mixer-1" {
  driver   = "mock"
  interval = "2s"

  point "speed" {
    signal = "ramp"
    type   = "int64"
    min    = 0
    max    = 1500
    period = "1m"
    unit   = "rpm"
  }
  point "setpoint" {
    signal   = "constant"
    value    = 1200
    unit     = "rpm"
    # Per-point interval, overriding the device's.
    interval = "5s"
  }
  # Test hooks: fail_after = N makes the device panic after N polls (fail_mode = "receive", in its actor) or
  # after N intervals in one of its goroutines (fail_mode = "worker"). 0 disables them.
  fail_after = 0
  fail_mode  = "receive"
}

# A Modbus TCP simulator started inside the gateway, under the endpoints supervisor (endpoints/simulator-plant),
# before the devices that poll it. Without unit blocks it serves the demo map: unit 1 a boiler (holding 0-1 float32 temperature, 2-3 pressure,
# 4 status word, 5 int16 outside temperature, 10-11 uint32 operating seconds, 20-21 the temperature in CDAB order,
# coils 0-3 pump/burner/valve/alarm, holding 100-109 and coils 10-19 free for writes), unit 2 a power meter
# (30 holding registers: float32 voltages 0-5, currents 6-11, kW 12-13, kvar 14-15, kVA 16-17, power factor 18-19,
# Hz 20-21, uint32 energy imported 22-23 and exported 24-25, float32 max demand 26-27, uint32 seconds 28-29).
# The same block in a file runs standalone: iotgw sim modbus -config sim.hcl.
simulator "plant" {
  listen = "127.0.0.1:5020"
  # unit "3" {
  #   signal "level" {
  #     table   = "input"     # holding | input | coil | discrete
  #     address = 0
  #     type    = "float32"   # int16 … float64, bool
  #     order   = "ABCD"      # ABCD | DCBA | BADC | CDAB
  #     kind    = "sine"      # constant | sine | ramp | random | step | counter
  #     min     = 0
  #     max     = 100
  #     period  = "1m"
  #   }
  # }
}

# driver = "modbus": polled directly by its own actor (Modbus TCP framing of our own; RTU with goburrow/modbus).
# Devices on the same endpoint (mode and address) share one transport actor (endpoints/modbus-{mode}-{address})
# that serialises their transactions, and must agree on its settings (two devices on one serial line at different
# speeds are an error); each request waits at most the device's timeout, so one dead unit cannot stall the others'
# polls for longer than that.
device "meter-1" {
  driver   = "modbus"
  # tcp | rtu (address is then the serial port, with a serial { baud_rate, data_bits, parity, stop_bits } block)
  # | rtu-over-tcp (RTU frames through a serial device server).
  mode     = "tcp"
  address  = "127.0.0.1:5020"
  unit_id  = 2
  # Per request; a request that times out is tried again retries times, on a fresh connection.
  timeout  = "1s"
  retries  = 1
  # Default poll interval; poll groups (below) have their own.
  interval = "2s"
  # Quiet time after each request, for devices that need it.
  pause    = "0s"
  # 0: addresses are protocol addresses; 1: register numbers as some manuals count them (40001 style minus 40000).
  address_base = 0
  # Registers of one unit and table are read in as few requests as possible (at most 125 registers or 2000
  # bits each); up to max_gap unused registers between two are read and discarded to merge them (-1: never).
  max_gap      = 10
  max_bit_gap  = 128
  # A point not read successfully for this long is reported with the tag stale=true (default 3 × its interval).
  stale_after  = "10s"
  tags = { panel = "MDB-1" }

  group "fast" {
    interval = "500ms"
  }

  register "voltage_l1" {
    # holding (default) | input | coil | discrete
    table   = "holding"
    address = 0
    # bool, int16, uint16 (default), int32, uint32, int64, uint64, float32, float64, string (with length).
    type    = "float32"
    # Byte order: ABCD (default, big-endian), DCBA, BADC, CDAB; for 64-bit types also ABCDEFGH, HGFEDCBA,
    # BADCFEHG, GHEFCDAB (Telegraf's names for the same four orders).
    order   = "ABCD"
    unit    = "V"
  }
  register "current_l1" {
    address = 6
    type    = "float32"
    unit    = "A"
    group   = "fast"
  }
  register "power" {
    address = 12
    type    = "float32"
    unit    = "kW"
    group   = "fast"
    # Report only when it changes by more than deadband, and at least every force_every polls.
    on_change   = true
    deadband    = 0.05
    force_every = 10
  }
  register "frequency" {
    address = 20
    type    = "float32"
    unit    = "Hz"
  }
  register "energy" {
    address = 22
    type    = "uint32"
    # value = raw × scale + offset, in float64.
    scale   = 0.1
    offset  = 0
    unit    = "kWh"
  }
}

device "boiler-2" {
  driver   = "modbus"
  address  = "127.0.0.1:5020"
  unit_id  = 1
  interval = "1s"
  register "temperature" {
    address = 0
    type    = "float32"
    unit    = "°C"
  }
  register "running" {
    address = 4
    type    = "bool"
    # bit 0..15 of a holding or input register read as bool
    bit     = 0
  }
  register "pump" {
    table   = "coil"
    address = 0
  }
  # Writable through iot.control.devices.boiler-2.write: {"key":"setpoint","value":75}
  register "setpoint" {
    address = 100
    type    = "uint16"
    unit    = "°C"
  }
}

# driver = "mqtt": subscribes to topic filters on an MQTT broker and maps each message to points, one batch per
# message on iot.raw.mqtt.{device}. Commented out: it needs a broker (mosquitto on 127.0.0.1:1883, say).
# device "plant-mqtt" {
#   driver          = "mqtt"
#   broker          = "tcp://127.0.0.1:1883"  # tcp:// or mqtt://; ssl://, tls:// or mqtts:// for TLS
#   protocol        = "3.1.1"                 # 3.1.1 (default) | 5
#   client_id       = "iotgw-plant"           # default iotgw-{device}; required for a persistent session
#   username        = "gateway"
#   password        = env("MQTT_PASSWORD", "")
#   clean_session   = true                    # false: a persistent session (the broker queues QoS 1 messages while away)
#   qos             = 1                       # of the subscriptions: 0, 1 or 2
#   keep_alive      = "30s"
#   connect_timeout = "10s"
#   max_payload     = "1MB"                   # a larger message is refused with a too_large event
#   stale_after     = "1m"                    # a key not received for this long is published bad with stale=true (default: off)
#   batch_window    = "10ms"                  # one bus batch per window, not per message (default 0s: per message)
#   tags            = { site = "north" }
#   devices         = ["press-7", "oven-2"]  # the only ids a +device level may name (default: any valid id)
#   # tls { ca = "/etc/iotgw/broker-ca.pem"  cert = "/etc/iotgw/gw.pem"  key = "/etc/iotgw/gw-key.pem" }
#
#   # Writes (iot.control.devices.plant-mqtt.write {"key":…,"value":…}) publish the value on this topic.
#   command_topic  = "plant/cmd/{key}"        # {key} is the key written, {device} this device's id
#   command_qos    = 1
#   command_retain = false
#   command_format = "value"                 # value: the value's text (21.5, true, ON) | json: {"setpoint": 21.5}
#
#   # A topic filter; +device and +key name the levels that give the point's device and key, any other +name a
#   # tag, a bare + or a trailing # match without a name. Each subscribe block maps its messages as it says:
#   subscribe "plant/+device/+key" {
#     format = "auto"                         # auto (default) | value (a plain number or boolean) | json
#   }
#   subscribe "sensors/+device/json" {
#     format      = "json"
#     time_field  = "ts"                      # the timestamp; default the arrival time
#     time_format = "unix_ms"                 # unix | unix_ms (default) | unix_us | unix_ns | rfc3339
#     max_depth   = 32                        # deeper nesting is refused (a JSON bomb), as are
#     max_values  = 10000                     # more values than this in one message
#     # Without field blocks every number and boolean is a point, nested names joined with _ ("data_temp").
#     field "temperature" {
#       path = "data.temp"                    # dotted path; array elements by index: "sensors.0.value"
#       type = "float64"                      # float64 | int64 | bool | string; default as sent
#     }
#     field "running" { path = "state.on" }
#   }
#   subscribe "meters/+device/power" {
#     key         = "power"                   # the key of a plain value when the topic names none
#     value_field = "value"                   # {"value": 1.5, "ts": …}: the one value, keyed by the topic or key
#     time_field  = "ts"
#   }
# }

# driver = "http", mode = "poll": GETs (or POSTs) url every interval and maps the JSON answer like an mqtt subscribe
# block (the same format, key, type, value_field, time_field, time_format, max_depth, max_values and field blocks).
# Commented out: it needs a server to poll.
# device "weather" {
#   driver       = "http"
#   url          = "http://127.0.0.1:8081/status.json"
#   method       = "GET"                      # GET (default) | POST
#   # body       = "{\"read\":\"all\"}"         # the body of a POST, sent as application/json
#   headers      = { "X-Site" = "north" }
#   username     = "gateway"                  # basic auth; or bearer_token = env("WEATHER_TOKEN")
#   password     = env("WEATHER_PASSWORD", "")
#   interval     = "10s"                      # one poll at a time: a slow server delays the next poll
#   timeout      = "5s"
#   max_body     = "1MB"                      # a larger answer fails the poll (too_large)
#   stale_after  = "30s"                      # default 3 × interval
#   # tls { ca = "/etc/iotgw/weather-ca.pem" }  # https:// with a private CA (default: the system's roots)
#   field "outside" {
#     path = "current.temperature"
#     type = "float64"
#   }
# }

# driver = "http", mode = "push": the device POSTs points to the gateway's HTTP server (gateway.http_address),
# POST /api/v1/points/{device} with a point {"key":…,"value":…} or a batch {"points":[…]}, with the http block's
# bearer token when one is set. Only a device declared like this takes pushes.
# device "meter-push" {
#   driver      = "http"
#   mode        = "push"
#   max_body    = "1MB"                       # a larger push is refused with 413
#   stale_after = "1m"                        # a key not pushed for this long is published bad with stale=true (default: off)
#   tags        = { site = "north" }
# }

# driver = "opcua": an OPC UA server read with gopcua by the device's own actor, on an interval (mode = "poll": one
# Read of every node each interval) or through a subscription (mode = "subscribe": one monitored item per node, the
# server sends changes). Each read or notification is one batch on iot.raw.opcua.{device}; problems go to
# iot.errors.opcua.{device}. A lost session (the server restarted, the link dropped) is retried at the supervisor's
# backoff with a new session and a new subscription, for ever. Find node ids with
#   nats req iot.control.devices.line-1.browse '{"node_id":"i=85","depth":2}'
# Commented out: it needs an OPC UA server (the tests start one: actors/device/opcua/testdata/server, node server.js).
# device "line-1" {
#   driver   = "opcua"
#   endpoint = "opc.tcp://127.0.0.1:4840"        # opc.tcp://host:port[/path], port required
#   mode     = "poll"                            # poll | subscribe
#   interval = "1s"                              # poll interval, or the subscription's publishing interval
#   timeout  = "5s"                              # dial and request timeout
#   # stale_after = "3s"                         # default 3 × interval: a point without a good value that long is stale
#   security_policy = "None"                     # None | Basic256Sha256
#   security_mode   = "None"                     # None (with None) | Sign | SignAndEncrypt (with Basic256Sha256)
#   # The server's certificate, checked on a signed channel (required with Sign or SignAndEncrypt): trusted as it is
#   # when named here (PEM or DER), or when signed by server_ca. One that does not verify is refused with its
#   # thumbprint in the event, never trusted silently.
#   # server_certificates = ["/etc/iotgw/plc-1.der"]
#   # server_ca           = "/etc/iotgw/plant-ca.pem"
#   # The gateway's client certificate (PEM or DER) and RSA key; left out, one is generated at the first start into
#   # <data_dir>/opcua/client_certificate.der (+ client_key.pem, mode 0600) and reused: trust that file on the server.
#   # certificate = "/etc/iotgw/client.der"
#   # private_key = "/etc/iotgw/client.pem"
#   auth = "anonymous"                           # anonymous | username (username, password) | certificate
#   # username = "operator"
#   # password = env("OPCUA_PASSWORD")
#   tags = { line = "1" }
#   node "temperature" {
#     node_id = "ns=1;s=Temperature"             # ns=<index>;<i|s|g|b>=<identifier>
#     type    = "float64"                        # float64 (any number) | int64 (an integer) | bool | string
#     unit    = "°C"
#     # scale  = 1.0                             # value × scale + offset; a scaled int64 is published as float64
#     # offset = 0.0
#     # Mode subscribe only:
#     # sampling_interval = "1s"                 # default: the device's interval
#     # deadband          = 0.5                  # report only changes larger than this
#     # deadband_type     = "absolute"           # absolute | percent (of the node's EURange)
#   }
#   # Writable through iot.control.devices.line-1.write: {"key":"setpoint","value":75.5}
#   node "setpoint" {
#     node_id = "ns=1;s=Setpoint"
#   }
# }

# A sidecar: a separate program speaking ISP (README, "Writing a sidecar"), one actor under the "sidecars"
# supervisor. Either the gateway launches it (plugin, from gateway.plugins_dir; killed with the gateway) or it runs
# already (address). A sidecar that is unreachable, hangs up, goes silent or exits is retried for as long as it is
# configured, at the supervisor's backoff, and shown disconnected; only a rejected CONFIG or a missing plugin
# counts against max_restarts.
# sidecar "line-3" {
#   plugin                = "my-sidecar"  # or: address = "10.0.0.7:50052"
#   port                  = 50060         # ISP_PORT of the launched process (default: the manifest's isp_port)
#   env                   = { DEVICE = "/dev/ttyUSB0" }
#   dial_timeout          = "5s"
#   request_timeout       = "10s"         # CONFIG and STATUS replies
#   heartbeat_interval    = "15s"         # dead after max_missed_heartbeats intervals without a line
#   max_missed_heartbeats = 3
#   max_line_size         = "1MB"
#   # A key DATA has not brought a good value of for this long is republished once with stale=true and
#   # quality 0, with a "stale" event on iot.errors.isp.{sidecar}. Default: 3 × config.interval when the config
#   # block sets one, else 1m; "0s" turns the check off (a sidecar that reports on change only).
#   stale_after           = "3s"
#   config {                              # sent as CONFIG after every (re)connect
#     # The reference Modbus sidecar (plugin "modbus") takes the modbus driver's connection settings:
#     # tcp | rtu (with a serial { baud_rate, data_bits, parity, stop_bits } block, default 9600 8N1) | rtu-over-tcp.
#     mode     = "tcp"
#     address  = "192.168.1.100:502"
#     timeout  = "3s"                     # per attempt
#     interval = "1s"
#     retries  = 1                        # extra attempts after a timeout or a garbled reply (0..10)
#     register "temperature" {
#       address  = 0
#       type     = "float32"
#       function = 3
#       scale    = 0.1
#       unit     = "°C"
#     }
#   }
# }

# Rules: one actor each under the "rules" supervisor, after the built-in processor (README, "Rules"). A rule reads
# the processed batches (iot.processed.batch.>), or with from = "rule" another rule's output, picks points with
# match and when, and publishes what it makes: iot.rules.{rule}.{device} (filter, transform, forward: one batch per
# device), iot.alerts.{level}.{device} (alert events), iot.aggregated.{device}.{key} (window results). Expressions
# (when, clear_when, value) are expr-lang/expr over value, is_number, text, device, key, quality, tags, timestamp,
# type and values.KEY, with math, time and string functions and changed(), delta(), rate(); they are compiled and
# type-checked at load, and a mistake is reported at its line and column. A point that makes an expression fail
# is an event on iot.errors.rules; the rule goes on.
rule "boiler-hot" {
  type = "alert"
  match {
    # Patterns: * is any run of characters. Each list is alternatives; devices, keys and tags must all match.
    devices = ["boiler-*"]
    keys    = ["temperature"]
    # tags  = { site = "plant-a" }
  }
  # The condition; pending → firing once it has held for `for`, resolved when it clears.
  when     = "value > 85"
  for      = "5s"
  # Hysteresis: resolve only below 85 − 3 (or write clear_when = "value < 82" instead).
  deadband = 3
  # info | warning | critical: the {level} of iot.alerts.{level}.{device}.
  level    = "warning"
  # Placeholders: {rule} {device} {key} {value} {level} {condition} {tag:NAME}.
  message  = "{device} {key} is {value} {tag:unit}"
  # One alert per key (default "{rule}:{device}:{key}:{condition}"); must hold {device} or a {tag:NAME}.
  dedup_key = "{rule}:{device}:{key}:{condition}"
  # Send a firing alert again every repeat until it is acknowledged (iot.control.alerts.ack); "0s": once.
  repeat   = "10m"
  # The least time between the end of an alert and the next firing of its key (it waits pending); "0s": off.
  throttle = "1m"
  # Also alert when a matched series sends nothing for no_data, and while its points have bad quality.
  no_data     = "30s"
  bad_quality = true
  # partition = "device": the default for alerts and aggregates: gateways sharing the rule each own whole
  # devices (never round-robin), so the state of a device is in one place. "none": any gateway takes any batch.
}

rule "temperature-f" {
  type   = "transform"
  match { keys = ["temperature"] }
  # A new value from an expression (a number); or scale = 0.1 and offset = -40 (value × scale + offset).
  value  = "value * 1.8 + 32"
  rename = "temperature_f"
  unit   = "°F"
  # value_type = "float64"   # float64 | int64 | bool | string
  # A derived point from several keys of one device in the same batch (every key it reads must be in it):
  # derive "power" {
  #   value = "values.voltage * values.current"
  #   unit  = "W"
  # }
  # Several gateways on one NATS cluster share a stateless rule in this queue group (default iotgw.rules.{name}).
  # queue = "iotgw.rules.temperature-f"
}

rule "speed-changes" {
  type  = "filter"
  match {
    devices = ["mixer-1"]
    keys    = ["speed"]
  }
  # Pass only a change of more than 50 from the last value passed (deadband_percent = 5: relative), and at most
  # one point per device and key every rate_limit. A when = "…" drops what it does not hold for.
  deadband   = 50
  rate_limit = "1s"
}

rule "boiler-1m" {
  type      = "aggregate"
  match {
    devices = ["boiler-1"]
    keys    = ["temperature", "pressure"]
  }
  # tumbling (size) | hopping (size, hop) | sliding (size) | count (count) | session (gap, size: its longest).
  window    = "tumbling"
  size      = "1m"
  # avg min max sum count first last stddev, and percentiles p50 … p99.9.
  functions = ["avg", "min", "max", "p95"]
  # processing (when a point arrives; the default) | event (its timestamp, with lateness for late points).
  time      = "processing"
  # group_by = "line"   # per value of that tag and key, instead of per device and key
  # max_points = 10000  # values kept per window for percentiles and sliding windows
  # Partitioned by device (the default), a gateway that stops, or gives a device up to one that joins, hands
  # the device's open windows on through JetStream (bucket IOTGW_WINDOWS) and the new owner emits them whole; a
  # gateway that crashes loses the open windows of its devices (README, "Window state moves with its device").
}

rule "temperature-out" {
  type    = "forward"
  # Read another rule's output (chains are checked for cycles at load).
  from    = "temperature-f"
  # {rule}, {device}, {key} as whole tokens; with {key} every point is its own message. Without a subject the
  # batches go on iot.rules.{rule}.{device}, for another rule to read. The control plane, $JS, $KV, $SYS, inboxes
  # and iot.raw, iot.processed and iot.errors are refused.
  subject = "plant.{device}.{key}"
  # rename = "temp_f"
}

# A sink: one actor under the "sinks" supervisor. type = "console" prints one line per point on stdout.
sink "console" {
  type     = "console"
  # Subjects to print; default ["iot.processed.batch.>"]. Batches print one line per point; so, with per-point
  # subjects on (point_subjects), iot.processed.> would show each point twice.
  subjects = ["iot.processed.batch.>"]
  # auto (text, or JSON when the gateway logs JSON) | text | json
  format   = "auto"
  # Optional queue group: several gateways sharing one NATS cluster print each message once.
  queue    = ""
}

# type = "file" writes every point to files, one per line, under data_dir by default. It reads its subjects from a
# durable consumer of its own (named after the sink) when JetStream is on, and acknowledges a delivery only once
# its points are in the file (and fsynced, per sync): while the directory cannot be written the data waits in
# the stream and comes again in order (README, "The file sink", says what each sync mode risks).
sink "files" {
  type     = "file"
  # Subjects to write; default ["iot.processed.batch.>"]: every point once.
  subjects = ["iot.processed.batch.>"]
  # Where each point goes: {data_dir} (only at the start), {sink}, {device} (the point's device id), {date}
  # (2006-01-02) and {hour} (00-23) of the point's own timestamp, in UTC. A ".." element is refused; a device id
  # that is not a valid token is never put into a path (the message goes to the dead letters).
  path     = "{data_dir}/points/{date}/{device}.jsonl"
  # jsonl (one point's JSON per line, as on the bus) | influx (InfluxDB line protocol) | csv (with a header).
  format   = "jsonl"
  # Rotate a file before it passes rotate_size ("0": never by size) or rotate_age after it was opened ("0s":
  # never by age); rotated files are renamed {name}-{UTC time}{ext}, gzipped when compress is on, and at most
  # max_files of them are kept per path (the oldest removed first).
  rotate_size = "64MB"
  rotate_age  = "24h"
  max_files   = 10
  compress    = true
  # always: fsync each delivery, then ack it. interval: fsync every sync_interval, then ack what it covered.
  # never: ack once written to the operating system (a power cut can lose what it had not written back yet).
  sync          = "interval"
  sync_interval = "1s"
  # Files kept open at once (the least recently written is closed past it), and how long an idle one stays open.
  max_open_files = 64
  idle_timeout   = "1m"
  # Deliveries handed to the sink and not yet acknowledged; with sync = "interval" it syncs early at half of it.
  max_ack_pending = 1024
  # While the directory cannot be written, the first delivery is handed back to come again after retry, doubling
  # per failure up to 1s (the runtime parks the later ones meanwhile: one redelivery per retry); once it is written
  # the parked ones follow at once.
  retry = "200ms"
}

# The JetStream sink: keeps chosen subjects in a stream. Without `stream` they go into IOT_DATA (no second
# copy), here the alerts, which IOT_DATA does not keep by default.
sink "alerts" {
  type     = "jetstream"
  # Subjects below iot. (not iot.control.> or iot.deadletter.>), wildcards allowed.
  subjects = ["iot.alerts.>"]
}

# A stream of its own, with its own limits: a subject that IOT_DATA keeps already is copied from it by the server
# (the stream sources IOT_DATA, filtered), any other is captured directly.
# sink "archive" {
#   type      = "jetstream"
#   stream    = "IOT_ARCHIVE"       # letters, digits, '_' and '-'
#   subjects  = ["iot.processed.batch.>"]
#   max_age   = "720h"              # default 24h; "0s" keeps for ever
#   max_bytes = "1GB"               # default 1GB
#   discard   = "old"               # old | new
#   storage   = "file"              # file | memory
# }

# Publish to an MQTT broker (needs one: commented out so that this file runs on one machine). It reads a durable
# inbox of its own and acks each delivery after the broker's PUBACK/PUBCOMP, so while the broker is away the data
# waits in IOT_DATA and arrives in order when it is back (README, "The MQTT sink").
# sink "plant-broker" {
#   type               = "mqtt"
#   broker             = "tcp://127.0.0.1:1883"   # tcp:// mqtt:// | TLS: ssl:// tls:// mqtts://
#   protocol           = "3.1.1"                  # 3.1.1 | 5
#   subjects           = ["iot.processed.batch.>"]
#   topic              = "plant/{device}/{key}"   # {device} {key} {gateway} {sink}; without {key}: a message per batch
#   payload            = "value"                  # json (the point) | batch ({"points":[…]}, topic without {key}) | value
#   qos                = 1                        # 0 | 1 | 2: acked to the stream after the broker's acknowledgement
#   retain             = true                     # a new subscriber gets the last value of each topic
#   client_id          = "iotgw-gw-1-plant"       # default iotgw-{gateway}-{sink}
#   persistent_session = false                    # clean_session = false (3.1.1), session_expiry (5)
#   keep_alive         = "30s"
#   timeout            = "10s"                    # connect and acknowledgement
#   max_ack_pending    = 1024                     # deliveries in flight
#   max_inflight       = 1024                     # QoS 1/2 messages on the wire awaiting the broker's ack (≤ 65535; default 18 for QoS 2 on 3.1.1)
#   # username = "gateway"
#   # password = env("IOTGW_MQTT_PASSWORD")
#   # tls {
#   #   ca   = "/etc/iotgw/broker-ca.pem"         # else the system's roots
#   #   cert = "/etc/iotgw/mqtt-client.pem"       # a client certificate, with its key
#   #   key  = "/etc/iotgw/mqtt-client-key.pem"
#   # }
# }

# type = "redis" writes the latest value of every device's keys into a hash per device (and optionally a stream per
# device and PUBLISH), pipelined, from a durable consumer of its own: a delivery is acknowledged once its pipeline
# succeeded; while Redis is down the data waits in the stream and comes again in order (README, "The network
# sinks"). Commented out: it needs a Redis server.
# sink "latest" {
#   type           = "redis"
#   address        = "127.0.0.1:6379"   # host:port (required)
#   # username     = "iotgw"            # ACL user and password (AUTH), optional
#   # password     = env("REDIS_PASSWORD")
#   db             = 0                  # SELECT
#   subjects       = ["iot.processed.batch.>"]
#   # Hash {hash_prefix}{device}: field {key} = the latest value, {key}.ts its Unix ns time, {key}.q its quality.
#   hash_prefix    = "iot:latest:"      # "" for no hash
#   # Stream {stream_prefix}{device}, trimmed with MAXLEN ~ to stream_max_len entries.
#   stream_prefix  = ""                 # e.g. "iot:stream:"; "" for none
#   stream_entry   = "point"            # point: an entry per point (key, value, ts, q, tag.{name}) | batch: an entry
#                                       #   per device and message, keys as fields ({key}, {key}.ts, {key}.q, {key}.tag.{name})
#   stream_max_len = 100000
#   # PUBLISH {channel_prefix}{device} with each point's JSON.
#   channel_prefix = ""                 # e.g. "iot:points:"; "" for none
#   batch_size      = 1000              # points per pipeline, at most
#   flush_interval  = "100ms"           # a batch that is not full is written after this long
#   max_ack_pending = 4096              # deliveries handed to the sink and not yet acknowledged
#   retry           = "500ms"           # while Redis is down: first delay of a delivery handed back,
#   max_retry       = "30s"             #   doubling up to this
#   timeout         = "5s"              # one pipeline
# }

# type = "influxdb" writes line protocol to InfluxDB 1.x (/write) or 2.x (/api/v2/write), batched by size and time,
# gzipped, from a durable consumer of its own; a batch is acknowledged on InfluxDB's 204, and the messages of lines
# it refuses (a field type conflict, say) go to the dead letters with its reason. Commented out: it needs an
# InfluxDB server.
# sink "tsdb" {
#   type             = "influxdb"
#   url              = "http://127.0.0.1:8086"   # the server's base URL (required)
#   # InfluxDB 1.x: database (required), retention_policy, username/password (basic authentication).
#   database         = "iot"
#   # retention_policy = "autogen"
#   # username       = "iotgw"
#   # password       = env("INFLUX_PASSWORD")
#   # InfluxDB 2.x instead: org, bucket and token (all three; then leave the 1.x keys out).
#   # org            = "plant"
#   # bucket         = "iot"
#   # token          = env("INFLUX_TOKEN")
#   subjects         = ["iot.processed.batch.>"]
#   # Measurement and field of each point: {device}, {key} and literal text. The point's tags are tags.
#   measurement      = "{device}"
#   field            = "{key}"
#   device_tag       = ""                # e.g. "device": the device id as a tag too; "" for none
#   key_tag          = ""
#   gzip             = true
#   batch_size       = 5000              # lines per request, at most
#   flush_interval   = "1s"
#   max_ack_pending  = 4096
#   retry            = "1s"              # while InfluxDB is down: first delay, doubling up to max_retry
#   max_retry        = "30s"
#   timeout          = "10s"             # one request
# }
