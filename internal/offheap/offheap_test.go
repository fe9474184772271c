package offheap

import (
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/testutil"
)

// A buffer given back is lent again for the next that fits it (the smallest free one that
// does), never for a larger one, and never to two holders at once.
func TestReuse(t *testing.T) {
	a := newArena(false)
	small, big := a.get(100_000), a.get(1_000_000)
	if len(small) != 100_000 || cap(small) != 100_000 || len(big) != 1_000_000 {
		t.Fatalf("len %d cap %d, len %d", len(small), cap(small), len(big))
	}
	copy(big, testutil.RandomBytes(len(big), 1)) // writable to its end
	if s := a.stats(); s.Lent != 2 || s.Free != 0 {
		t.Fatalf("stats %+v, want 2 lent", s)
	}
	a.put(big)
	a.put(small)
	if b := a.get(200_000); &b[0] != &big[0] || len(b) != 200_000 {
		t.Error("the 1 MB buffer was not lent again for 200 KB (the 100 KB one is too small)")
	}
	if b := a.get(50_000); &b[0] != &small[0] {
		t.Error("the 100 KB buffer was not lent again for 50 KB")
	}
	if b := a.get(70_000); &b[0] == &small[0] || &b[0] == &big[0] {
		t.Error("a buffer was lent twice")
	}
	if s := a.stats(); s.Lent != 3 || s.Free != 0 || s.Cached != 0 {
		t.Errorf("stats %+v, want 3 lent and none free", s)
	}
}

// Small buffers come from the heap; giving back one that was not lent, twice, or the heap's,
// changes nothing.
func TestSmallAndForeign(t *testing.T) {
	a := newArena(false)
	b := a.get(MinSize - 1)
	if len(b) != MinSize-1 {
		t.Fatalf("len %d", len(b))
	}
	a.put(b)
	a.put(make([]byte, 1<<20))
	a.put(nil)
	big := a.get(MinSize)
	a.put(big)
	a.put(big)
	if s := a.stats(); s.Lent != 0 || s.Free != 1 || s.Cached != MinSize {
		t.Errorf("stats %+v, want one free buffer of %d touched bytes", s, MinSize)
	}
}

// What is kept free is bounded by its touched bytes (the largest go first), and all of it is
// unmapped once the arena has been idle for a while.
func TestBoundedAndReleasedWhenIdle(t *testing.T) {
	a := newArena(false)
	a.maxCached = 3 << 20
	a.idle = 200 * time.Millisecond
	var bufs [][]byte
	for _, n := range []int{1 << 20, 1 << 20, 2 << 20, 600 << 10} {
		bufs = append(bufs, a.get(n))
	}
	for _, b := range bufs {
		a.put(b)
	}
	s := a.stats()
	if s.Cached > a.maxCached || s.Free != 3 || s.Cached != 2<<20+600<<10 {
		t.Fatalf("stats %+v, want the 2 MB buffer dropped and 2.6 MB kept", s)
	}
	// Activity keeps them; idleness releases them.
	for range 3 {
		time.Sleep(100 * time.Millisecond)
		a.put(a.get(600 << 10))
	}
	if s := a.stats(); s.Free != 3 {
		t.Fatalf("released while in use: %+v", s)
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.stats().Free > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still %+v after being idle", a.stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := a.stats(); s.Cached != 0 {
		t.Errorf("stats %+v after release", s)
	}
	a.put(a.get(1 << 20)) // usable after a release
}

// Buffers lent to several goroutines at once hold each its own bytes.
func TestConcurrent(t *testing.T) {
	a := newArena(false)
	pattern := testutil.RandomBytes(2<<20, 7)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100 {
				n := MinSize + (g*7919+i*104729)%(1<<20)
				b := a.get(n)
				want := pattern[g*1000+i : g*1000+i+n]
				copy(b, want)
				time.Sleep(time.Microsecond)
				if !bytes.Equal(b, want) {
					t.Errorf("goroutine %d, buffer %d: changed while lent", g, i)
					return
				}
				a.put(b)
			}
		})
	}
	wg.Wait()
	if s := a.stats(); s.Lent != 0 || s.Cached > a.maxCached {
		t.Errorf("stats %+v", s)
	}
}

// In poison mode a buffer given back is never lent again, and touching it crashes the process.
func TestPoison(t *testing.T) {
	if os.Getenv("OFFHEAP_TOUCH_FREED") == "1" {
		a := newArena(true)
		b := a.get(1 << 20)
		b[0] = 1
		a.put(b)
		if c := a.get(1 << 20); &c[0] == &b[0] {
			os.Exit(3) // lent again
		}
		b[100] = 2 // must fault
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPoison$")
	cmd.Env = append(os.Environ(), "OFFHEAP_TOUCH_FREED=1")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); err == nil || code == 3 || !bytes.Contains(out, []byte("unexpected fault address")) {
		t.Fatalf("touching a freed buffer in poison mode: exit %d, %v:\n%s", code, err, out)
	}
}

// A guarded buffer dropped without Free is given back once its handle is collected; one that
// was given back and lent again is not taken from its new holder by the old handle's net.
func TestGuard(t *testing.T) {
	a := newArena(false)
	collected := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for a.stats().Lent != want {
			if time.Now().After(deadline) {
				t.Fatalf("stats %+v, want %d lent", a.stats(), want)
			}
			runtime.GC()
			time.Sleep(10 * time.Millisecond)
		}
	}
	func() {
		b := a.get(200 << 10)
		a.guard(&b) // dropped without Free
	}()
	collected(0)
	if s := a.stats(); s.Free != 1 {
		t.Fatalf("stats %+v, want the dropped buffer free", s)
	}
	var again []byte
	func() {
		b := a.get(200 << 10)
		a.guard(&b)
		a.put(b)
		again = a.get(200 << 10) // the same mapping, lent anew
		if &again[0] != &b[0] {
			t.Fatal("the free mapping was not lent again")
		}
	}()
	for range 5 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	if s := a.stats(); s.Lent != 1 {
		t.Fatalf("stats %+v: the old handle's net took the buffer from its new holder", s)
	}
	a.put(again)
	runtime.KeepAlive(again)
}
