package sidecar

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/iotgw/iotgw/internal/backoff"
	"github.com/rs/zerolog"
)

// LaunchOptions say how to start a plugin's process.
type LaunchOptions struct {
	Port     int    // ISP_PORT; 0 = the manifest's isp_port
	Host     string // where the gateway connects; default 127.0.0.1
	LogLevel string // LOG_LEVEL for the sidecar; default "info"
	Env      []string
	Log      zerolog.Logger // the sidecar's output lines are logged here with its name
}

// Process is a running sidecar program.
type Process struct {
	Name string
	Addr string // host:port the sidecar listens on

	cmd  *exec.Cmd
	done chan struct{}
	err  error
	wg   sync.WaitGroup // the output loggers
}

// ErrExited is returned when a sidecar process ends while the gateway waits for it.
var ErrExited = errors.New("sidecar process exited")

// ErrPortInUse is returned by Launch when something already listens on the sidecar's port: the gateway would
// otherwise connect to it instead of to the process it launched.
var ErrPortInUse = errors.New("port in use")

// Launch starts the plugin's entry with ISP_PORT and LOG_LEVEL set, in its own process group (so stopping it stops
// what it started), and logs every line it prints. On Linux the process is killed when the gateway dies, even by
// SIGKILL (see startTied). A port that something already listens on is refused before anything starts.
func Launch(m *Manifest, opt LaunchOptions) (*Process, error) {
	exe, err := m.Executable()
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", m.Name, err)
	}
	port := opt.Port
	if port == 0 {
		port = m.ISPPort
	}
	host := opt.Host
	if host == "" {
		host = "127.0.0.1"
	}
	level := opt.LogLevel
	if level == "" {
		level = "info"
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	if err := portFree(addr); err != nil {
		return nil, fmt.Errorf("plugin %s: %w", m.Name, err)
	}
	cmd := exec.Command(exe, m.Args...)
	cmd.Dir = m.Dir
	cmd.Env = append(append(os.Environ(), opt.Env...), "ISP_PORT="+strconv.Itoa(port), "LOG_LEVEL="+level)
	cmd.SysProcAttr = sysProcAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &Process{Name: m.Name, Addr: addr, cmd: cmd, done: make(chan struct{})}
	if err := startTied(cmd, p.done); err != nil {
		return nil, fmt.Errorf("plugin %s: start %s: %w", m.Name, exe, err)
	}
	log := opt.Log.With().Str("plugin", m.Name).Int("pid", cmd.Process.Pid).Logger()
	p.wg.Add(2)
	go p.pipe(stdout, log, "stdout")
	go p.pipe(stderr, log, "stderr")
	go func() {
		p.wg.Wait() // the pipes are drained before Wait closes them
		p.err = cmd.Wait()
		close(p.done)
	}()
	log.Info().Str("entry", exe).Str("addr", p.Addr).Msg("sidecar launched")
	return p, nil
}

// portFree checks that nothing listens on addr, so that waiting for the port cannot mistake another program
// (typically a sidecar a killed gateway left behind, on a system without Pdeathsig) for the one launched.
func portFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w: %s is already taken (a sidecar left running, or another program); stop it or set port = … in the sidecar block", ErrPortInUse, addr)
	}
	if err != nil {
		return nil // not an address of this host, say: the launched process and WaitPort will tell
	}
	return l.Close()
}

func (p *Process) pipe(r io.Reader, log zerolog.Logger, stream string) {
	defer p.wg.Done()
	defer func() { _ = recover() }() // a logging failure must not kill the gateway
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		log.Info().Str("stream", stream).Msg(sc.Text())
	}
	_, _ = io.Copy(io.Discard, r) // a line over 64 KiB stopped the scanner; keep the pipe from blocking the child
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process ended (after Done).
func (p *Process) Err() error { return p.err }

// WaitPort waits until the sidecar accepts connections on its port, the process exits, or ctx ends.
func (p *Process) WaitPort(ctx context.Context) error {
	wait := backoff.Backoff{Policy: backoff.Policy{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond}}
	for {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", p.Addr)
		if err == nil {
			return c.Close()
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s: %w before listening on %s: %v", p.Name, ErrExited, p.Addr, p.err)
		case <-ctx.Done():
			return fmt.Errorf("%s: not listening on %s: %w", p.Name, p.Addr, ctx.Err())
		case <-time.After(wait.Next()):
		}
	}
}

// Stop asks the process group to terminate (SIGTERM), kills it after grace, and waits until it has exited and its
// output is drained.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	return nil
}

// Kill sends SIGKILL to the process group at once (fault injection, tests).
func (p *Process) Kill() error {
	return syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}
