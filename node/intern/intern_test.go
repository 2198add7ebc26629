package intern

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

func same(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

func TestSharedAcrossCollections(t *testing.T) {
	first := Bytes([]byte("mailbox@example.org"))
	runtime.GC()
	runtime.GC()
	again := Bytes([]byte("mailbox@example.org"))
	assert.Equal(t, "mailbox@example.org", again)
	assert.True(t, same(first, again), "one copy, even after garbage collections")
	assert.True(t, same(first, String(strings.Clone("mailbox@example.org"))))
}

func TestBounds(t *testing.T) {
	long := strings.Repeat("x", MaxBytes+1)
	a, b := Bytes([]byte(long)), Bytes([]byte(long))
	assert.Equal(t, long, a)
	assert.False(t, same(a, b), "longer than MaxBytes: not kept")
	assert.Equal(t, "", Bytes(nil))
	assert.Equal(t, "", String(""))
}

func TestConcurrentUse(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				v := fmt.Sprintf("line %d", i%50)
				assert.Equal(t, v, Bytes([]byte(v)), "goroutine %d", g)
			}
		})
	}
	wg.Wait()
	assert.True(t, same(String("line 7"), Bytes([]byte("line 7"))))
}
