package relay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/store"
	replicav1 "github.com/mailintake/mailintake/proto/mailintake/replica/v1"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Membership is what the edge needs of the cluster membership (cluster.Member).
type Membership interface {
	ID() string
	Peers() []store.Replica
}

// Edge fans the messages of every replica's mailboxes into one consumer stream.
type Edge struct {
	Broker *delivery.Broker
	Member Membership
	Peers  *Peers
	Log    *slog.Logger
	// Refresh is how often the edge looks for replicas that joined (1 s).
	Refresh time.Duration
	// Lag, when set, is told how long each relayed message took from its owner to this edge
	// (including the replicas' clock offset).
	Lag func(time.Duration)

	mu      sync.Mutex
	holders map[string]store.Replica // message id → the replica it is in flight on (relayed)
}

// Holder returns the replica a message this edge relayed is in flight on: its acknowledgement
// goes there, even when this replica's view of the owners is a moment old.
func (e *Edge) Holder(id string) (store.Replica, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.holders[id]
	return r, ok
}

func (e *Edge) hold(id string, r store.Replica) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.holders == nil {
		e.holders = map[string]store.Replica{}
	}
	e.holders[id] = r
}

func (e *Edge) unhold(ids ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		delete(e.holders, id)
	}
}

// eventKind says what a source reported.
type eventKind int

const (
	evMessage  eventKind = iota // msg for the consumer
	evDone                      // done: messages that left the flight
	evDemand                    // n: sessions waiting for a slot
	evReturned                  // n: credits given back after a revoke
	evOpened                    // a remote source's relay is subscribed
	evEnded                     // err: the source ended
)

// event is something a source reports to the edge's loop.
type event struct {
	src  *source
	kind eventKind
	msg  *mailintakev1.Message
	done []string
	n    int
	err  error
	sent time.Time // when the owner sent msg
}

// source is one replica's part of the stream: the local broker, or a relay to another replica.
type source struct {
	replicaID   string
	incarnation string
	peer        store.Replica // the replica (zero for the local source)
	ready       bool
	held        int // credits granted and neither used up nor returned
	inflight    map[string]bool
	demand      int
	revoking    bool
	grant       func(n int) error
	revoke      func(n int) error
	cancel      context.CancelFunc
}

func (s *source) unused() int { return s.held - len(s.inflight) }

// Serve streams the messages of the mailboxes scope selects, from every replica, to send, with
// at most maxInFlight unacknowledged across all of them, until ctx ends or send fails.
func (e *Edge) Serve(ctx context.Context, scope *replicav1.Scope, maxInFlight int, ackDeadline time.Duration, send func(*mailintakev1.Message) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sources := map[string]*source{}
	defer func() {
		for _, src := range sources {
			e.forget(src)
		}
	}()
	refreshEvery := e.Refresh
	if refreshEvery == 0 {
		refreshEvery = time.Second
	}
	log := e.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	events := make(chan event, 1024)
	emit := func(ev event) {
		select {
		case events <- ev:
		case <-ctx.Done():
		}
	}

	// The local part: a credited stream on this replica's broker.
	local := e.Broker.OpenCredited(Filter(scope), ackDeadline)
	defer e.Broker.CloseStream(local)
	ls := &source{replicaID: e.Member.ID(), ready: true, inflight: map[string]bool{}}
	ls.grant = func(n int) error { local.Grant(n); return nil }
	ls.revoke = func(n int) error {
		k := local.Revoke(n)
		go emit(event{src: ls, kind: evReturned, n: k})
		return nil
	}
	sources[ls.replicaID] = ls
	go func() {
		err := feed(ctx, local, nil, nil, func(r *replicav1.RelayResponse) error {
			emit(toEvent(ls, r))
			return nil
		})
		emit(event{src: ls, kind: evEnded, err: err})
	}()

	sub := &replicav1.Subscribe{Scope: scope, AckDeadline: durationpb.New(ackDeadline), EdgeReplicaId: e.Member.ID()}
	connect := func() {
		peers := map[string]string{}
		for _, p := range e.Member.Peers() {
			peers[p.ID] = p.Incarnation
		}
		for id, src := range sources {
			if src != ls && peers[id] != src.incarnation {
				// The replica's heartbeat lapsed (it died, or is frozen and cannot answer) or it
				// restarted: what it held is not ours to count; its successor delivers again.
				src.cancel()
				delete(sources, id)
				e.forget(src)
			}
		}
		for _, p := range e.Member.Peers() {
			if _, ok := sources[p.ID]; ok {
				continue
			}
			src := &source{replicaID: p.ID, incarnation: p.Incarnation, peer: p, inflight: map[string]bool{}}
			sctx, scancel := context.WithCancel(ctx)
			src.cancel = scancel
			sources[p.ID] = src
			go e.remote(sctx, p, sub, src, emit)
		}
	}
	connect()

	// Messages go out through a goroutine of their own, so a slow consumer never blocks the
	// loop; the queue holds at most what is in flight plus what left the flight unsent.
	outq := make(chan *mailintakev1.Message, 2*maxInFlight)
	sendErr := make(chan error, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-outq:
				if err := send(m); err != nil {
					sendErr <- err
					return
				}
			}
		}
	}()

	refresh := time.NewTicker(refreshEvery)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-sendErr:
			return err
		case <-refresh.C:
			connect()
		case ev := <-events:
			src := ev.src
			if sources[src.replicaID] != src {
				continue // from a source that ended
			}
			switch ev.kind {
			case evEnded:
				if src == ls {
					return ev.err
				}
				// Its messages in flight are no longer ours to count: their owner puts them back
				// (a closed relay) or its successor delivers them again (a dead owner).
				if ev.err != nil && !errors.Is(ev.err, context.Canceled) {
					log.Debug("relay ended", "replica_id", src.replicaID, "err", ev.err)
				}
				src.cancel()
				delete(sources, src.replicaID)
				e.forget(src)
			case evOpened:
				src.ready = true
			case evMessage:
				src.inflight[ev.msg.GetId()] = true
				if src != ls {
					e.hold(ev.msg.GetId(), src.peer)
					if e.Lag != nil && !ev.sent.IsZero() {
						e.Lag(time.Since(ev.sent))
					}
				}
				select {
				case outq <- ev.msg:
				case <-ctx.Done():
					return ctx.Err()
				}
			case evDone:
				for _, id := range ev.done {
					if src.inflight[id] {
						delete(src.inflight, id)
						src.held--
					}
				}
				if src != ls {
					e.unhold(ev.done...)
				}
			case evDemand:
				src.demand = ev.n
			case evReturned:
				src.held -= ev.n
				src.revoking = false
			}
		}
		e.allocate(sources, maxInFlight, len(outq))
	}
}

// forget drops the holder entries of a source that ended.
func (e *Edge) forget(src *source) {
	ids := make([]string, 0, len(src.inflight))
	for id := range src.inflight {
		ids = append(ids, id)
	}
	e.unhold(ids...)
}

func toEvent(src *source, r *replicav1.RelayResponse) event {
	switch k := r.GetKind().(type) {
	case *replicav1.RelayResponse_Message:
		ev := event{src: src, kind: evMessage, msg: k.Message}
		if r.GetSentTime() != nil {
			ev.sent = r.GetSentTime().AsTime()
		}
		return ev
	case *replicav1.RelayResponse_Done:
		return event{src: src, kind: evDone, done: k.Done.GetMessageIds()}
	case *replicav1.RelayResponse_Demand:
		return event{src: src, kind: evDemand, n: int(k.Demand.GetWaiting())}
	case *replicav1.RelayResponse_Returned:
		return event{src: src, kind: evReturned, n: int(k.Returned.GetCredits())}
	}
	return event{src: src, kind: evEnded, err: errors.New("the owner sent a relay message this replica does not know (a newer version?)")}
}

// remote runs the relay to one other replica until it ends.
func (e *Edge) remote(ctx context.Context, peer store.Replica, sub *replicav1.Subscribe, src *source, emit func(event)) {
	fail := func(err error) {
		if err == nil {
			err = io.EOF
		}
		emit(event{src: src, kind: evEnded, err: err})
	}
	client, err := e.Peers.Client(peer.Addr)
	if err != nil {
		fail(err)
		return
	}
	rs, err := client.Relay(ctx)
	if err != nil {
		fail(err)
		return
	}
	if err := rs.Send(&replicav1.RelayRequest{Kind: &replicav1.RelayRequest_Subscribe{Subscribe: sub}}); err != nil {
		fail(err)
		return
	}
	src.grant = func(n int) error {
		return rs.Send(&replicav1.RelayRequest{Kind: &replicav1.RelayRequest_Credit{Credit: &replicav1.Credit{Grant: int32(n)}}})
	}
	src.revoke = func(n int) error {
		return rs.Send(&replicav1.RelayRequest{Kind: &replicav1.RelayRequest_Credit{Credit: &replicav1.Credit{Revoke: int32(n)}}})
	}
	emit(event{src: src, kind: evOpened})
	for {
		r, err := rs.Recv()
		if err != nil {
			fail(err)
			return
		}
		emit(toEvent(src, r))
	}
}

// allocate hands out the consumer's free slots. Sources whose sessions wait for a slot (hungry)
// get them, first up to an equal share each, then all that are left (a single busy mailbox fetches
// whole batches, not one message at a time); when nobody waits, each source gets one slot ahead,
// so new mail moves at once. When a hungry source is below its share and no slot is free, unused
// slots are taken back from the sources above theirs.
func (e *Edge) allocate(sources map[string]*source, maxInFlight, queued int) {
	list := make([]*source, 0, len(sources))
	held := 0
	for _, s := range sources {
		held += s.held
		if s.ready {
			list = append(list, s)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].replicaID < list[j].replicaID })
	free := min(maxInFlight-held, maxInFlight-queued)
	grants := map[*source]int{}
	var hungry []*source
	for _, s := range list {
		if s.demand > 0 && !s.revoking {
			hungry = append(hungry, s)
		}
	}
	share := maxInFlight
	if len(hungry) > 0 {
		share = max(1, maxInFlight/len(hungry))
		// Up to the share, the source holding least first.
		for free > 0 {
			var best *source
			for _, s := range hungry {
				if s.held+grants[s] < share && (best == nil || s.held+grants[s] < best.held+grants[best]) {
					best = s
				}
			}
			if best == nil {
				break
			}
			grants[best]++
			free--
		}
		// The rest, round-robin.
		for i := 0; free > 0; i++ {
			grants[hungry[i%len(hungry)]]++
			free--
		}
	} else {
		for _, s := range list {
			if free > 0 && !s.revoking && s.unused() == 0 {
				grants[s]++
				free--
			}
		}
	}
	for s, n := range grants {
		if err := s.grant(n); err == nil {
			s.held += n
		}
	}
	if free > 0 || len(hungry) == 0 {
		return
	}
	needy := false
	for _, s := range hungry {
		if s.held < share {
			needy = true
		}
	}
	if !needy {
		return
	}
	for _, s := range list {
		if s.revoking {
			continue
		}
		extra := s.unused()
		if s.demand > 0 {
			extra = min(extra, s.held-share)
		}
		if extra > 0 {
			if err := s.revoke(extra); err == nil {
				s.revoking = true
			}
		}
	}
}
