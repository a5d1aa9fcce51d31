# Every block and attribute, none at its default.
gateway {
  id             = "gw-7"
  log_level      = "debug"
  log_format     = "json"
  data_dir       = "/var/lib/iotgw"
  http_address   = ""
  point_subjects = false
}

nats {
  url            = "nats://a:4222, tls://b:4443"
  host           = "0.0.0.0"
  port           = -1
  max_reconnect  = 5
  reconnect_wait = "250ms"
  timeout        = "3s"
  ping_interval  = "1s"
  max_pings_out  = 4
  pending_messages = 5000
  pending_bytes    = "16MB"

  jetstream {
    enabled    = true
    store_dir  = "/tmp/js"
    max_memory = "512MB"
    max_file   = "2GiB"
    max_age    = "1h"
  }
}

supervisor {
  strategy     = "all_for_one"
  max_restarts = 0
  within       = "30s"
  backoff {
    initial = "50ms"
    max     = "5s"
    jitter  = 0.5
  }
}

device "plc-1" {
  driver     = "mock"
  interval   = "500ms"
  tags       = { line = "A" }
  fail_after = 3
  fail_mode  = "worker"

  point "temperature" {
    signal   = "sine"
    min      = 20
    max      = 30
    period   = "10s"
    interval = "100ms"
    unit     = "°C"
    tags     = { sensor = "t1" }
  }
  point "count" {
    signal = "constant"
    type   = "int64"
    value  = 7
  }
}

sink "console" {
  type     = "console"
  subjects = ["iot.processed.batch.>", "iot.alerts.*.plc-1"]
  format   = "json"
  queue    = "printers"
}
