package rule

import (
	"encoding/json"
	"hash/fnv"
	"sort"
	"strings"
	"time"
)

// Partitioning by device: when several gateways share a stateful rule (an alert's `for`, a window), each device's
// points must reach the same gateway, never round-robin. What nats-server offers, and why it is not used alone:
//
//   - Subject mapping with {{partition(n, wildcards…)}} (docs.nats.io, "Subject Mapping and Partitioning") maps a
//     device deterministically to one of n partition subjects, but it rewrites the subject for every subscriber
//     (a console sink on iot.processed.batch.> would see iot.processed.batch.{device}.{p}), and it assigns the
//     partition, not its consumer: a queue group on a partition still hands each message to a random member, so
//     the partitions still need owners, and handing them on needs coordination mapping does not do.
//   - One JetStream consumer per partition with a pinned client (priority groups, nats-server 2.11+) does pin a
//     partition to one client and fails over after its TTL, but needs JetStream, which is optional here, and one
//     durable per rule and partition on a shared stream.
//
// So the rule does it itself with rendezvous (highest random weight) hashing over the gateways that share it, which
// announce themselves on iot.metrics.health.rules.{rule}: every gateway reads every batch (the device is the
// subject's last token, so a batch it does not own costs no decoding), and owns a device when hash(gateway, device)
// is the highest among the active members. A member changes the set at one point of the bus's message order: a
// gateway becomes active, or leaves, when it receives its own "up" or "leave" message, and the others change at
// the same message, so on one server each batch is taken by exactly one gateway, also while one joins or leaves
// cleanly. A joining gateway first says "join", waits joinSettle for the active members' answers, and only then
// says "up"; what arrived meanwhile it keeps, and processes if no one else was active (a gateway on its own loses
// nothing at start). A gateway that dies without "leave" is dropped after memberTimeout; until then its devices'
// points are not processed (the loss window of a crash). A device's alerts move with it through the store when the
// gateways share one (ruleActor.takeOver), and so do an aggregate's open windows (handover.go).

// Membership timing.
const (
	memberInterval = time.Second
	memberTimeout  = 3500 * time.Millisecond
	joinSettle     = 300 * time.Millisecond
	maxJoinBuffer  = 4096
)

// SubjectMembersPrefix is where the gateways sharing a partitioned rule announce themselves.
const SubjectMembersPrefix = "iot.metrics.health.rules."

type memberMsg struct {
	Member string `json:"member"`
	State  string `json:"state"` // join | up | leave | handoff
}

type membership struct {
	self     string
	subject  string
	active   bool
	joinedAt time.Time
	lastSent time.Time
	others   bool                 // an active member other than self was heard while joining
	members  map[string]time.Time // active members, by id, with when they were last heard
	ids      []string             // sorted active members
	owned    map[string]bool      // device → owned, for the current members
	version  uint64               // counts the changes of the set (and of active)
	handoff  bool                 // another member has stored windows it gave up (handover.go); the actor resets it
}

func newMembership(self, rule string) *membership {
	return &membership{self: self, subject: SubjectMembersPrefix + rule, members: map[string]time.Time{}, owned: map[string]bool{}}
}

func (m *membership) message(state string) []byte {
	data, _ := json.Marshal(memberMsg{Member: m.self, State: state})
	return data
}

// heard handles a member message; it returns what to publish in reply ("" for nothing) and whether this gateway
// just became active.
func (m *membership) heard(data []byte, now time.Time) (reply string, activated bool) {
	var msg memberMsg
	if json.Unmarshal(data, &msg) != nil || msg.Member == "" || len(msg.Member) > 128 {
		return "", false
	}
	switch msg.State {
	case "join":
		if msg.Member != m.self && m.active {
			return "up", false // tell the newcomer who is here
		}
	case "up":
		if msg.Member == m.self {
			if m.active {
				m.touch(msg.Member, now)
				return "", false
			}
			m.active = true
			m.touch(m.self, now)
			m.version++
			return "", true
		}
		if !m.active {
			m.others = true
		}
		m.touch(msg.Member, now)
	case "handoff":
		m.handoff = m.handoff || (msg.Member != m.self && m.active)
	case "leave":
		if _, ok := m.members[msg.Member]; ok {
			delete(m.members, msg.Member)
			m.changed()
		}
		if msg.Member == m.self {
			m.active = false
			m.version++
		}
	}
	return "", false
}

func (m *membership) touch(id string, now time.Time) {
	_, known := m.members[id]
	m.members[id] = now
	if !known {
		m.changed()
	}
}

func (m *membership) changed() {
	m.version++
	m.ids = m.ids[:0]
	for id := range m.members {
		m.ids = append(m.ids, id)
	}
	sort.Strings(m.ids)
	clear(m.owned)
}

// expire drops members not heard for memberTimeout (a gateway that died without leaving).
func (m *membership) expire(now time.Time) {
	for id, seen := range m.members {
		if id != m.self && now.Sub(seen) > memberTimeout {
			delete(m.members, id)
			m.changed()
		}
	}
}

// owns says whether this gateway takes the device's points.
func (m *membership) owns(device string) bool {
	if !m.active {
		return false
	}
	if len(m.ids) <= 1 {
		return true
	}
	if o, ok := m.owned[device]; ok {
		return o
	}
	best, bestID := uint64(0), ""
	for _, id := range m.ids {
		h := fnv.New64a()
		_, _ = h.Write([]byte(id))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(device))
		if s := mix64(h.Sum64()); s > best || bestID == "" {
			best, bestID = s, id
		}
	}
	o := bestID == m.self
	if len(m.owned) < maxSeries {
		m.owned[device] = o
	}
	return o
}

// mix64 is murmur3's 64-bit finalizer. FNV-1a alone spreads a difference in the gateway id only towards the high
// bits in a pattern shared by similar device ids (dev-0 … dev-9 all went to one gateway of two): the finalizer
// makes every input bit reach every output bit.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// Members returns the active members' ids.
func (m *membership) Members() []string { return append([]string(nil), m.ids...) }

// deviceOf is the device of a batch subject: its last token.
func deviceOf(subject string) string {
	return subject[strings.LastIndexByte(subject, '.')+1:]
}
