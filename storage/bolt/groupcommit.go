package bolt

import (
	"errors"
	"fmt"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// groupCommit shares one fsync'd bbolt commit between concurrent writers.
// A writer queues its function and, if no commit is running, leads one for
// every function queued by then; writers arriving during a commit queue
// for the next one. Before taking the queue, a leader waits (at most delay)
// until as many writes are queued as the previous commit carried plus
// those that queued while it ran: the writers of a steady load then share
// each commit instead of splitting into cohorts that take turns (one
// committing while the other queues), while a lone writer commits at
// once. bbolt's own Batch waits the full delay for company every time and
// starts its next batch's timer while the previous commit is still
// running, which split 32 concurrent guest creations into commits of
// about 10.
//
// Every caller returns only after the commit holding its function has been
// fsync'd, or with the error that function returned.
type groupCommit struct {
	db *bbolt.DB
	// delay bounds a leader's wait for more writes (Options.MaxBatchDelay).
	delay time.Duration
	// maxCalls bounds the functions in one commit.
	maxCalls int
	// leader holds a token while a caller runs a commit.
	leader chan struct{}
	mu     sync.Mutex
	queue  []*groupCall
	// want is how many writers the next commit waits for; wake, when
	// set, is closed once the queue holds want functions.
	want int
	wake chan struct{}
}

type groupCall struct {
	fn   func(*bbolt.Tx) error
	done chan error
}

// errTrySolo tells a caller whose function failed inside a shared commit
// to run it again in a transaction of its own, for its own error.
var errTrySolo = errors.New("storage: run the write alone")

func newGroupCommit(db *bbolt.DB, delay time.Duration) *groupCommit {
	return &groupCommit{db: db, delay: delay, maxCalls: 1000, leader: make(chan struct{}, 1)}
}

// do runs fn in a write transaction shared with concurrent callers. As with
// bbolt's Batch, fn may run more than once: when another function of the
// same commit fails, the commit is rolled back and run again without it.
func (g *groupCommit) do(fn func(*bbolt.Tx) error) error {
	c := &groupCall{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	if g.wake != nil && len(g.queue) >= g.want {
		close(g.wake)
		g.wake = nil
	}
	g.mu.Unlock()
	var err error
	select {
	case err = <-c.done:
	case g.leader <- struct{}{}:
		// A leader signals every function it took before it gives the
		// token back, so this one is either done or still queued; with
		// more than maxCalls queued before it, it leads commits until
		// one carries it.
		err = g.lead(c)
		<-g.leader
	}
	if errors.Is(err, errTrySolo) {
		return g.db.Update(fn)
	}
	return err
}

// waitForCompany waits, at most delay, until the queue holds want
// functions.
func (g *groupCommit) waitForCompany() {
	g.mu.Lock()
	if len(g.queue) >= g.want || g.delay <= 0 {
		g.mu.Unlock()
		return
	}
	wake := make(chan struct{})
	g.wake = wake
	g.mu.Unlock()
	t := time.NewTimer(g.delay)
	select {
	case <-wake:
	case <-t.C:
	}
	t.Stop()
}

// lead runs commits, holding the leader token, until c is done. Only the
// first waits for company: the rest of the queue has waited already.
func (g *groupCommit) lead(c *groupCall) error {
	for first := true; ; first = false {
		select {
		case err := <-c.done:
			return err
		default:
		}
		if first {
			g.waitForCompany()
		}
		calls := g.take()
		g.run(calls)
		// The writers of this commit are likely to write again (a
		// client's next guest), and those that queued meanwhile are
		// waiting: the next commit waits for as many. After a full
		// commit, the queue alone fills the next one: no waiting.
		g.mu.Lock()
		g.want = min(len(calls)+len(g.queue), g.maxCalls)
		if len(calls) == g.maxCalls {
			g.want = 0
		}
		g.mu.Unlock()
	}
}

func (g *groupCommit) take() []*groupCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.wake = nil
	n := min(len(g.queue), g.maxCalls)
	calls := g.queue[:n:n]
	g.queue = g.queue[n:]
	if len(g.queue) == 0 {
		g.queue = nil
	}
	return calls
}

// run commits calls, sending each its result; a function that fails is
// taken out (told to run alone) and the others are committed without it.
func (g *groupCommit) run(calls []*groupCall) {
	for len(calls) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bbolt.Tx) error {
			for i, c := range calls {
				if err := safeCall(c.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, c := range calls {
				c.done <- err
			}
			return
		}
		calls[failed].done <- errTrySolo
		calls = append(calls[:failed], calls[failed+1:]...)
	}
}

// safeCall runs fn, turning a panic into an error so that one caller's
// panic does not take the others' writes down; the caller then runs its
// function alone, where the panic happens in its own goroutine.
func safeCall(fn func(*bbolt.Tx) error, tx *bbolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return fn(tx)
}
