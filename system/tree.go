package system

import (
	"fmt"
	"github.com/iotgw/iotgw/actors/rule"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/iotgw/iotgw/actors"
)

// Actor states as reported in the tree.
const (
	StateStarting   = "starting"
	StateRunning    = "running"
	StateRestarting = "restarting" // failed, waiting out its backoff before the restart
	StateFailed     = "failed"     // stopped for good after too many restarts
	StateStopped    = "stopped"
	// StateDisconnected is an actor whose peer is away: after a peer failure (actors.PeerFailure), retried at the
	// capped backoff for as long as it is configured, or a running actor that reported its link down (Env.Link).
	StateDisconnected = "disconnected"
)

// Tree is the live picture of the supervision tree that iot.control.tree returns: one entry per actor, keyed by
// its path ("devices/plc-1"). Supervisors and mailboxes write it; the control actor reads snapshots. It is the one
// piece of shared state, guarded by a mutex, because it is read from outside the actors' mailboxes.
type Tree struct {
	mu     sync.Mutex
	nodes  map[string]*treeEntry
	seq    int
	budget *pendingBudget // shown on the root; nil in a tree built alone
	uplink *uplink        // shown on the root; nil without a leafnode block (leafnode.go)
	// changed is signalled (without blocking) whenever an entry is added, removed or updated: the dashboard's
	// feed publishes the tree on iot.metrics.tree.{gateway} then (dashfeed.go).
	changed chan struct{}
}

type treeEntry struct {
	order     int
	kind      string
	state     string
	link      string // the link state the actor last reported (actors.LinkConnected, LinkDisconnected), "" none
	restarts  int
	connects  int // link reports of connected after anything else: the first connection and every reconnect
	failures  int
	lastError string
	errorAt   time.Time
	startedAt time.Time
	subjects  []string
	mailbox   *subjectMailbox
	faults    []string // injected faults, "f-1 latency"
	// writer is the actor of a device that takes writes (device.Writer), which the write router forwards them
	// to; writes counts those forwarded and not yet taken from its mailbox.
	takesWrites bool
	writer      *actor.PID
	writes      int
	// browser is the actor of a device that answers browse requests (device.Browser); browses counts those
	// forwarded and not yet taken, bounded like writes.
	takesBrowse bool
	browser     *actor.PID
	browses     int
}

// Node is one actor in a tree snapshot.
type Node struct {
	Name        string        `json:"name"`
	Path        string        `json:"path"`
	Kind        string        `json:"kind"`
	State       string        `json:"state"`
	Restarts    int           `json:"restarts"`
	LastError   string        `json:"last_error,omitempty"`
	LastErrorAt *time.Time    `json:"last_error_at,omitempty"`
	Since       *time.Time    `json:"since,omitempty"`
	Subjects    []string      `json:"subjects,omitempty"`
	Mailbox     *MailboxStats `json:"mailbox,omitempty"`
	Faults      []string      `json:"faults,omitempty"` // injected faults still active
	// PendingBudget is on the root only: the gateway-wide budget of buffered bus messages, its share per
	// subscription and what is buffered against it (each mailbox shows its own part).
	PendingBudget *PendingBudget `json:"pending_budget,omitempty"`
	// Rule is a rule actor's figures (points in, out, dropped, errors, eval time, alerts); see rules.go.
	Rule *rule.Stats `json:"rule,omitempty"`
	// Uplink is on the root only, with a leafnode block: the link to the hub (README "Uplink").
	Uplink   *UplinkState `json:"uplink,omitempty"`
	Children []*Node      `json:"children,omitempty"`
}

func newTree() *Tree { return &Tree{nodes: map[string]*treeEntry{}, changed: make(chan struct{}, 1)} }

// notify signals a change; a signal already pending covers this one too.
func (t *Tree) notify() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// add registers an actor; registering a path again (a child added back) keeps nothing of the old one.
func (t *Tree) add(path, kind string, mb *subjectMailbox) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	e := &treeEntry{order: t.seq, kind: kind, state: StateStarting, mailbox: mb}
	if mb != nil {
		e.subjects = mb.subjects()
	}
	t.nodes[path] = e
	t.notify()
}

func (t *Tree) remove(path string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.nodes, path)
	t.notify()
}

func (t *Tree) update(path string, f func(e *treeEntry)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.nodes[path]; ok {
		f(e)
		t.notify()
	}
}

func (t *Tree) setState(path, state string) {
	t.update(path, func(e *treeEntry) {
		e.state = state
		if state == StateRunning {
			e.startedAt = time.Now()
		}
	})
}

// started marks an incarnation running once it has handled Started. Its link state starts unknown, but for a
// Reconnector restarted after a peer failure: it stays disconnected until it reports the link up.
func (t *Tree) started(path string, reconnecting bool) {
	t.update(path, func(e *treeEntry) {
		e.state, e.startedAt = StateRunning, time.Now()
		if !reconnecting {
			e.link = ""
		}
	})
}

// link records the link state an actor reports through Env.Link: a running actor whose link is down shows
// disconnected, detail as its last error; up again, it shows running.
func (t *Tree) link(path, state, detail string) {
	t.update(path, func(e *treeEntry) {
		switch state {
		case actors.LinkDisconnected:
			e.link = state
			if detail != "" {
				e.lastError, e.errorAt = detail, time.Now()
			}
		case actors.LinkConnected:
			if e.link != actors.LinkConnected {
				e.connects++ // a sink's figures show the reconnects (sinks.go)
			}
			if e.link == actors.LinkDisconnected && e.state == StateRunning {
				e.startedAt = time.Now()
			}
			e.link = state
		}
	})
}

// Get returns one actor's node without children.
func (t *Tree) Get(path string) (*Node, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.nodes[path]
	if !ok {
		return nil, false
	}
	return e.node(path), true
}

// Snapshot returns the whole tree from its root, nil when nothing is registered.
func (t *Tree) Snapshot() *Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	paths := make([]string, 0, len(t.nodes))
	for p := range t.nodes {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return t.nodes[paths[i]].order < t.nodes[paths[j]].order })
	byPath := make(map[string]*Node, len(paths))
	var root *Node
	for _, p := range paths {
		n := t.nodes[p].node(p)
		byPath[p] = n
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			// The root registers first; the top-level supervisors ("devices", "sinks", …) hang under it, so the
			// paths operators type stay short ("devices/plc-1").
			if root == nil {
				root = n
				if t.budget != nil {
					root.PendingBudget = t.budget.snapshot()
				}
				if t.uplink != nil {
					s := t.uplink.snapshot()
					root.Uplink = &s
				}
			} else {
				root.Children = append(root.Children, n)
			}
			continue
		}
		if pn, ok := byPath[p[:i]]; ok {
			pn.Children = append(pn.Children, n)
		} else if root != nil && p != root.Path {
			root.Children = append(root.Children, n)
		}
	}
	return root
}

func (e *treeEntry) node(path string) *Node {
	name := path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		name = path[i+1:]
	}
	state := e.state
	if state == StateRunning && e.link == actors.LinkDisconnected {
		state = StateDisconnected
	}
	n := &Node{
		Name: name, Path: path, Kind: e.kind, State: state, Restarts: e.restarts,
		LastError: e.lastError, Subjects: e.subjects, Faults: append([]string(nil), e.faults...),
	}
	if !e.errorAt.IsZero() {
		at := e.errorAt
		n.LastErrorAt = &at
	}
	if !e.startedAt.IsZero() && state == StateRunning {
		at := e.startedAt
		n.Since = &at
	}
	if e.mailbox != nil {
		st := e.mailbox.stats()
		n.Mailbox = &st
	}
	return n
}

// forwardWrite returns the actor that takes path's writes, counting one more forwarded to it, when it is a
// device.Writer that is not failed or stopped. Otherwise busy says why a Writer cannot take one now (it is
// being spawned, or has maxWaitingWrites waiting), or is empty when path is no running Writer.
func (t *Tree) forwardWrite(path string) (pid *actor.PID, busy string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.nodes[path]
	switch {
	case !ok || !e.takesWrites || e.state == StateFailed || e.state == StateStopped:
		return nil, ""
	case e.writer == nil:
		return nil, "is starting: try again"
	case e.writes >= maxWaitingWrites:
		return nil, fmt.Sprintf("has %d writes waiting: try again later", e.writes)
	}
	e.writes++
	return e.writer, ""
}

// forwardBrowse is forwardWrite for browse requests (device.Browser).
func (t *Tree) forwardBrowse(path string) (pid *actor.PID, busy string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.nodes[path]
	switch {
	case !ok || !e.takesBrowse || e.state == StateFailed || e.state == StateStopped:
		return nil, ""
	case e.browser == nil:
		return nil, "is starting: try again"
	case e.browses >= maxWaitingBrowses:
		return nil, fmt.Sprintf("has %d browse requests waiting: try again later", e.browses)
	}
	e.browses++
	return e.browser, ""
}

// browseTaken counts a forwarded browse request that the device actor has taken from its mailbox.
func (t *Tree) browseTaken(path string) {
	t.update(path, func(e *treeEntry) {
		if e.browses > 0 {
			e.browses--
		}
	})
}

// writeTaken counts a forwarded write that the device actor has taken from its mailbox.
func (t *Tree) writeTaken(path string) {
	t.update(path, func(e *treeEntry) {
		if e.writes > 0 {
			e.writes--
		}
	})
}
