// Command iotgw is the industrial IoT edge gateway: `iotgw run` starts it, `iotgw validate` checks a config,
// `iotgw version` prints the version. The work happens in package system (and `iotgw ctl` and `iotgw sim` in
// system/ctl and system/sim); this file only parses the command line and hands over.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/sidecar/modbusisp"
	"github.com/iotgw/iotgw/system"
	"github.com/iotgw/iotgw/system/ctl"
	"github.com/iotgw/iotgw/system/sim"
	"github.com/rs/zerolog"
)

const usage = `iotgw — industrial IoT edge gateway

Usage:
  iotgw run [-config gateway.hcl] [-log-format console|json] [-log-level LEVEL] [-cpuprofile FILE]
  iotgw validate [-v] [FILE …] check configs; lists every problem as file:line:column, exits 1 if any
  iotgw sidecar modbus [-listen ADDR]   the reference Modbus sidecar (ISP server); ISP_PORT and LOG_LEVEL apply
  iotgw sim modbus [-listen ADDR] [-config sim.hcl]   a Modbus TCP simulator with run-time faults
  iotgw ctl [-s URL] [-json] COMMAND …   control a running gateway over NATS; 'iotgw ctl help' lists the commands
  iotgw version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "sidecar":
		return cmdSidecar(args[1:], stderr)
	case "sim":
		return sim.Main(args[1:], os.Stdin, stdout, stderr)
	case "ctl":
		return ctl.Main(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "iotgw %s\n", system.Version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "iotgw: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "gateway.hcl", "config file")
	format := fs.String("log-format", "", "log and console format: console or json (default: the config's)")
	level := fs.String("log-level", "", "log level (default: the config's; LOG_LEVEL overrides both)")
	cpuProfile := fs.String("cpuprofile", "", "write a pprof CPU profile of the run to this file (written at shutdown)")
	memProfile := fs.String("memprofile", "", "write a pprof heap profile to this file when told to stop, before stopping (what is live, and every allocation of the run)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(stderr, "iotgw: cpuprofile: %v\n", err)
			return 2
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	var heapProfile *os.File
	if *memProfile != "" {
		var err error
		if heapProfile, err = os.Create(*memProfile); err != nil {
			fmt.Fprintf(stderr, "iotgw: memprofile: %v\n", err)
			return 2
		}
		defer func() { _ = heapProfile.Close() }()
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	if *format != "" {
		cfg.Gateway.LogFormat = *format
	}
	if *level != "" {
		cfg.Gateway.LogLevel = *level
	}
	log, err := system.NewLogger(stderr, cfg.Gateway.LogLevel, cfg.Gateway.LogFormat)
	if err != nil {
		fmt.Fprintf(stderr, "iotgw: %v\n", err)
		return 2
	}
	applyMemoryLimit(cfg.Gateway.MemoryLimit, log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rt := system.New(cfg, system.WithLogger(log), system.WithStdout(stdout), system.WithConfigPath(*path))
	// Catch SIGHUP before starting: its default action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := rt.Start(ctx); err != nil {
		log.Error().Err(err).Msg("gateway did not start")
		return 1
	}
	// Parsing the config and spawning every actor is the run's peak of short-lived memory (a 1,000-device
	// gateway.hcl: about 100 MB idle afterwards); give it back to the OS now rather than at the scavenger's pace.
	debug.FreeOSMemory()
	for {
		select {
		case <-hup:
			if err := rt.RequestReload(time.Minute); err != nil {
				log.Error().Err(err).Msg("reload on SIGHUP failed")
			}
			continue
		case <-ctx.Done():
		}
		break
	}
	log.Info().Msg("shutting down")
	if heapProfile != nil {
		runtime.GC() // the heap live while it ran, before the stop tears it down
		if err := pprof.WriteHeapProfile(heapProfile); err != nil {
			log.Error().Err(err).Msg("memprofile")
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		log.Warn().Uint64("heap_alloc_bytes", ms.HeapAlloc).Uint64("heap_inuse_bytes", ms.HeapInuse).Uint64("heap_idle_bytes", ms.HeapIdle).
			Uint64("heap_released_bytes", ms.HeapReleased).Uint64("stack_inuse_bytes", ms.StackInuse).Uint64("sys_bytes", ms.Sys).
			Uint64("next_gc_bytes", ms.NextGC).Int("goroutines", runtime.NumGoroutine()).Msg("memprofile: the runtime's memory when told to stop")
	}
	if err := rt.Stop(); err != nil {
		log.Error().Err(err).Msg("gateway stopped with an error")
		return 1
	}
	return 0
}

func cmdSidecar(args []string, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "modbus" {
		fmt.Fprintf(stderr, "iotgw sidecar: want a sidecar name: modbus\n")
		return 2
	}
	fs := flag.NewFlagSet("sidecar modbus", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", modbusisp.DefaultListen(os.Getenv("ISP_PORT")), "ISP listen address (default 127.0.0.1:$ISP_PORT)")
	name := fs.String("name", "modbus", "the sidecar's name in STATUS replies and point sources")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	log, err := system.NewLogger(stderr, os.Getenv("LOG_LEVEL"), "console")
	if err != nil {
		fmt.Fprintf(stderr, "iotgw sidecar: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := modbusisp.Run(ctx, modbusisp.Options{Listen: *listen, Name: *name, Log: log}); err != nil {
		log.Error().Err(err).Msg("modbus sidecar stopped with an error")
		return 1
	}
	return 0
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("v", false, "show each problem with the source lines around it")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	paths := fs.Args()
	if len(paths) == 0 {
		paths = []string{"gateway.hcl"}
	}
	code := 0
	for _, path := range paths {
		if _, err := config.Load(path); err != nil {
			printConfigError(stderr, err)
			var cerr *config.Error
			if *verbose && errors.As(err, &cerr) {
				fmt.Fprintln(stderr)
				_ = cerr.WriteText(stderr, false)
			}
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
	}
	return code
}

// printConfigError lists every problem as "file:line:column: summary: detail", one per line, as compilers do.
func printConfigError(w io.Writer, err error) {
	fmt.Fprintln(w, err)
}

// applyMemoryLimit sets the Go runtime's soft memory limit to gateway.memory_limit (bytes; 0: none), unless the
// GOMEMLIMIT environment variable, which the runtime has read already, sets one: the environment wins, as
// LOG_LEVEL does over log_level. See "A Guide to the Go Garbage Collector" (go.dev/doc/gc-guide): under the limit
// the collector runs at GOGC as usual; near it, it collects more often, trading CPU for a smaller heap.
func applyMemoryLimit(limit int64, log zerolog.Logger) {
	if limit <= 0 {
		return
	}
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		log.Info().Str("GOMEMLIMIT", env).Msg("gateway.memory_limit ignored: the GOMEMLIMIT environment variable sets the limit")
		return
	}
	debug.SetMemoryLimit(limit)
	log.Info().Int64("memory_limit", limit).Msg("Go runtime soft memory limit set")
}
