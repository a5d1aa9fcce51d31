# gateway.hcl — the iotgw configuration that runs out of the box on one machine: an embedded NATS server,
# two simulated (mock) devices and a console sink that prints every processed point.
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
  # Health and metrics HTTP address ("" disables it). Served from a later release.
  http_address = "127.0.0.1:8080"
  # Publish every point on iot.processed.{device}.{key} beside the batch on iot.processed.batch.{device}.
  # Batches are the hot path (one bus message per poll); per-point subjects are for people who `nats sub` them
  # and cost about one bus message per point (see bench/REPORT.md).
  point_subjects = true
}

nats {
  # "embedded" starts a NATS server inside the gateway; or nats://host:4222 (several, comma separated) for an
  # external server or cluster.
  url = "embedded"
  # Embedded server: listen address and port. Loopback only unless you change it.
  host = "127.0.0.1"
  port = 4222
  # Client options (embedded and external): reconnect forever (-1), wait between attempts, connect timeout.
  max_reconnect  = -1
  reconnect_wait = "2s"
  timeout        = "5s"
  # A ping every ping_interval; the link is declared dead after max_pings_out unanswered pings.
  ping_interval = "5s"
  max_pings_out = 2

  jetstream {
    # Persistence: the IOT_DATA stream keeps iot.processed.> and iot.rules.> for max_age.
    enabled    = false
    # Default: <data_dir>/jetstream.
    store_dir  = "./data/jetstream"
    max_memory = "1GB"
    max_file   = "10GB"
    max_age    = "24h"
  }
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
    # Delay before restart n: initial × 2^(n-1), at most max, varied by ±jitter (a fraction) so that many
    # actors failing together do not restart in lockstep.
    initial = "100ms"
    max     = "10s"
    jitter  = 0.2
  }
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
    # sine | ramp | random | constant | step (required)
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

device "meter-1" {
  driver   = "mock"
  interval = "2s"

  point "energy" {
    signal = "ramp"
    type   = "int64"
    min    = 0
    max    = 100000
    period = "1h"
    unit   = "kWh"
  }
  point "voltage" {
    signal   = "constant"
    value    = 230
    unit     = "V"
    # Per-point interval, overriding the device's.
    interval = "5s"
  }
  # Test hooks: fail_after = N makes the device panic after N polls (fail_mode = "receive", in its actor) or
  # after N intervals in one of its goroutines (fail_mode = "worker"). 0 disables them.
  fail_after = 0
  fail_mode  = "receive"
}

# A sink: one actor under the "sinks" supervisor. type = "console" prints one line per point on stdout.
sink "console" {
  type     = "console"
  # Subjects to print. Batches (iot.processed.batch.*) print one line per point; so, with per-point subjects
  # on, subscribe to batches only, or you would see each point twice.
  subjects = ["iot.processed.batch.>"]
  # auto (text, or JSON when the gateway logs JSON) | text | json
  format   = "auto"
  # Optional queue group: several gateways sharing one NATS cluster print each message once.
  queue    = ""
}
