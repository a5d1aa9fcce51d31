// Package sim is `iotgw sim modbus`: a Modbus TCP simulator as a program of its own, with faults switched by
// commands on standard input. It builds the simulator from a config file's simulator block the way the gateway's
// in-process simulator does (so it sits under system, which may import the drivers); it never starts a runtime.
package sim

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/iotgw/iotgw/actors/device/simulator"
	"github.com/iotgw/iotgw/config"
	"github.com/iotgw/iotgw/sidecar/modbussim"
	"github.com/iotgw/iotgw/system"
)

const simUsage = `iotgw sim modbus [-listen 127.0.0.1:5020] [-config sim.hcl] [-name NAME]

Runs a Modbus TCP simulator whose registers follow signals. Without -config it serves the demo map (a boiler on
unit 1, a power meter on unit 2; see gateway.hcl). With -config, the file's simulator block (the one named -name,
or the only one) gives the units and signals.

Faults are switched at run time by typing commands on standard input:
  fault exception [CODE] [unit=N] [from=A] [to=B] [p=0.5]
  fault delay DURATION [...]        fault drop [...]       fault corrupt [...]
  fault noreply [...]               fault wrongtxid [...]
  clear                              faults (list)          stats
`

// Main runs `iotgw sim` with the words after "sim" and returns the exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "modbus" {
		fmt.Fprint(stderr, simUsage)
		return 2
	}
	fs := flag.NewFlagSet("sim modbus", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "listen address (default the config's, or 127.0.0.1:5020)")
	path := fs.String("config", "", "an HCL file with simulator blocks")
	name := fs.String("name", "", "which simulator block of the file")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	sim := config.Simulator{Name: "sim", Listen: modbussim.DefaultListen}
	if *path != "" {
		cfg, err := config.Load(*path)
		if err != nil {
			fmt.Fprintln(stderr, err) // every problem as file:line:column, as `iotgw validate` prints them
			return 1
		}
		found := false
		for _, s := range cfg.Simulators {
			if *name == "" || s.Name == *name {
				sim, found = s, true
				break
			}
		}
		if !found {
			fmt.Fprintf(stderr, "iotgw sim: %s has no simulator block %q\n", *path, *name)
			return 1
		}
	}
	if *listen != "" {
		sim.Listen = *listen
	}
	cfg, err := simulator.Config(sim)
	if err != nil {
		fmt.Fprintf(stderr, "iotgw sim: %v\n", err)
		return 1
	}
	log, err := system.NewLogger(stderr, os.Getenv("LOG_LEVEL"), "console")
	if err != nil {
		fmt.Fprintf(stderr, "iotgw sim: %v\n", err)
		return 2
	}
	srv, err := modbussim.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "iotgw sim: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "iotgw sim: %v\n", err)
		return 1
	}
	log.Info().Str("listen", srv.Addr().String()).Int("units", len(cfg.Units)).Msg("Modbus simulator listening; type 'help' for fault commands")
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			fmt.Fprintln(stdout, simCommand(srv, sc.Text()))
		}
	}()
	<-ctx.Done()
	if err := srv.Stop(); err != nil {
		log.Error().Err(err).Msg("Modbus simulator stopped with an error")
		return 1
	}
	return 0
}

// simCommand runs one fault command and returns what to print.
func simCommand(srv *modbussim.Server, line string) string {
	words := strings.Fields(line)
	if len(words) == 0 {
		return ""
	}
	switch words[0] {
	case "clear":
		srv.ClearFaults()
		return "faults cleared"
	case "faults":
		fs := srv.Faults()
		if len(fs) == 0 {
			return "no faults"
		}
		var b strings.Builder
		for _, f := range fs {
			fmt.Fprintf(&b, "%s unit=%d exception=%d delay=%s p=%g from=%d to=%d\n", f.Kind, f.Unit, f.Exception, f.Delay, f.Probability, f.From, f.To)
		}
		return strings.TrimSpace(b.String())
	case "stats":
		return fmt.Sprintf("%+v", srv.Stats())
	case "fault":
		f, err := parseFault(words[1:])
		if err != nil {
			return "error: " + err.Error()
		}
		srv.SetFaults(append(srv.Faults(), f)...)
		return "fault " + f.Kind.String() + " on"
	case "help":
		return simUsage
	default:
		return fmt.Sprintf("error: unknown command %q (fault, clear, faults, stats, help)", words[0])
	}
}

func parseFault(words []string) (modbussim.Fault, error) {
	var f modbussim.Fault
	if len(words) == 0 {
		return f, errors.New("fault what? exception, delay, drop, corrupt, noreply, wrongtxid")
	}
	k, err := modbussim.ParseFaultKind(words[0])
	if err != nil {
		return f, err
	}
	f.Kind = k
	for _, w := range words[1:] {
		key, val, ok := strings.Cut(w, "=")
		if !ok {
			switch k {
			case modbussim.FaultException:
				n, err := strconv.ParseUint(w, 10, 8)
				if err != nil {
					return f, fmt.Errorf("exception code %q: %v", w, err)
				}
				f.Exception = uint8(n)
			case modbussim.FaultDelay:
				d, err := time.ParseDuration(w)
				if err != nil {
					return f, err
				}
				f.Delay = d
			default:
				return f, fmt.Errorf("unexpected %q", w)
			}
			continue
		}
		n, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return f, fmt.Errorf("%s: %v", key, err)
		}
		switch key {
		case "unit":
			f.Unit = uint8(n)
		case "from":
			f.From = uint16(n)
		case "to":
			f.To = uint16(n)
		case "p":
			f.Probability = n
		default:
			return f, fmt.Errorf("unknown option %q (unit, from, to, p)", key)
		}
	}
	return f, nil
}
