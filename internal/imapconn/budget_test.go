package imapconn

import (
	"context"
	"testing"
	"time"
)

func TestBudgetOrderClipAndCancel(t *testing.T) {
	b := NewBudget(100)
	ctx := context.Background()
	if n, _ := b.Acquire(ctx, 60); n != 60 {
		t.Fatalf("took %d", n)
	}
	// A large request waits, and a small one behind it waits too (in order: no starvation).
	big := make(chan int64)
	go func() { n, _ := b.Acquire(ctx, 80); big <- n }()
	time.Sleep(20 * time.Millisecond)
	small := make(chan int64)
	go func() { n, _ := b.Acquire(ctx, 10); small <- n }()
	select {
	case <-big:
		t.Fatal("80 bytes granted with 60 of 100 taken")
	case <-small:
		t.Fatal("a small request overtook a waiting large one")
	case <-time.After(50 * time.Millisecond):
	}
	b.Release(60)
	if n := <-big; n != 80 {
		t.Fatalf("big took %d", n)
	}
	if n := <-small; n != 10 {
		t.Fatalf("small took %d", n)
	}
	b.Release(80)
	b.Release(10)
	// More than the whole budget takes all of it.
	if n, _ := b.Acquire(ctx, 1000); n != 100 {
		t.Fatalf("oversized request took %d, want 100", n)
	}
	// A waiter whose context ends leaves the queue; later requests are not blocked by it.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := b.Acquire(cctx, 50); err == nil {
		t.Fatal("acquired from a full budget")
	}
	b.Release(100)
	if n, _ := b.Acquire(ctx, 100); n != 100 {
		t.Fatalf("after a cancelled waiter: took %d", n)
	}
	if now, peak := b.Used(); now != 100 || peak != 100 {
		t.Errorf("used %d, peak %d", now, peak)
	}
	var nilBudget *Budget
	if n, err := nilBudget.Acquire(ctx, 5); n != 0 || err != nil {
		t.Errorf("a nil budget = %d, %v", n, err)
	}
}
