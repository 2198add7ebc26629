package directory

import (
	"container/list"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// DefaultCost is the bcrypt cost HashPassword uses when given 0: about
// 50-100 ms per hash on the machines this runs on.
const DefaultCost = bcrypt.DefaultCost

// minHashCost is the lowest cost bcrypt accepts (tests use it for speed).
const minHashCost = bcrypt.MinCost

// maxBcryptPasswordBytes is bcrypt's input limit: it ignores every byte
// past 72, so a longer password is refused rather than accepted on its
// first 72 bytes. HashPassword refuses to hash one.
const maxBcryptPasswordBytes = 72

// ErrAuth is returned by Authenticate for an unknown address and for a wrong
// password alike, so that a client cannot tell which.
var ErrAuth = errors.New("directory: authentication failed")

// HashPassword returns pw hashed with bcrypt at cost (0 means DefaultCost),
// in the file's form "{BCRYPT}$2a$...". `mailarray user hash` prints it.
func HashPassword(pw string, cost int) (string, error) {
	if cost == 0 {
		cost = DefaultCost
	}
	if cost < minHashCost || cost > MaxHashCost {
		return "", fmt.Errorf("directory: hash password: cost %d outside %d..%d", cost, minHashCost, MaxHashCost)
	}
	if pw == "" {
		return "", errors.New("directory: hash password: empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		return "", fmt.Errorf("directory: hash password: %w", err)
	}
	return "{" + string(SchemeBcrypt) + "}" + string(h), nil
}

// dummyHash returns a well-formed bcrypt hash at cost that no password is
// expected to match (its hash part is fixed, not computed). Authenticate
// compares against it for an unknown address so that the answer takes about
// as long as for a known one, without generating a hash at run time.
func dummyHash(cost int) []byte {
	return fmt.Appendf(nil, "$2a$%02d$%s", cost, "mailarraydirectorydumm.yhashnevermatchesanypassword.x")
}

// plainDigest is how a {PLAIN} password is held and compared: comparing
// fixed-size digests in constant time does not leak the password's length.
func plainDigest(pw string) [sha256.Size]byte { return sha256.Sum256([]byte(pw)) }

// authCache remembers successful bcrypt verifications so that repeated
// logins of the same user (a POP3 client polling, a benchmark) do not each
// spend a bcrypt computation. One cache belongs to one loaded snapshot of
// the file, so a reload starts with an empty one: a changed password takes
// effect at once, and a verification still running against the old file
// cannot fill the new cache.
//
// An item holds HMAC-SHA256(key, password) under a random key private to the
// Directory, never the password. The trade-off: while an item lives, someone
// who can read the process's memory (and so the key) can test guesses for
// that user at SHA-256 speed instead of bcrypt speed. Items live at most the
// TTL and the cache holds at most max of them (least recently used evicted
// first); Config.AuthCacheTTL = 0 turns the cache off. Failures are never
// cached: a wrong password always costs a full bcrypt comparison.
//
// Concurrent misses for one user each run bcrypt (no single-flight): it
// costs CPU only on the first burst after a load or an expiry.
type authCache struct {
	ttl time.Duration
	max int

	mu    sync.Mutex
	order *list.List // of *cacheItem, most recently used first
	items map[string]*list.Element
}

type cacheItem struct {
	address string
	digest  [sha256.Size]byte
	expires time.Time
}

func newAuthCache(ttl time.Duration, maxItems int) *authCache {
	if ttl <= 0 {
		return nil
	}
	return &authCache{ttl: ttl, max: maxItems, order: list.New(), items: make(map[string]*list.Element)}
}

// hit reports whether address last verified with a password whose digest
// is digest, no longer than ttl before now. A nil cache never hits.
func (c *authCache) hit(address string, digest [sha256.Size]byte, now time.Time) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.items[address]
	if el == nil {
		return false
	}
	it := el.Value.(*cacheItem)
	if !now.Before(it.expires) {
		c.order.Remove(el)
		delete(c.items, address)
		return false
	}
	// A different password is not a reason to drop the item: a client
	// trying wrong passwords must not evict the right one.
	if subtle.ConstantTimeCompare(it.digest[:], digest[:]) != 1 {
		return false
	}
	c.order.MoveToFront(el)
	return true
}

// add remembers a successful verification made at now.
func (c *authCache) add(address string, digest [sha256.Size]byte, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.items[address]; el != nil {
		it := el.Value.(*cacheItem)
		it.digest, it.expires = digest, now.Add(c.ttl)
		c.order.MoveToFront(el)
		return
	}
	for c.order.Len() >= c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*cacheItem).address)
	}
	c.items[address] = c.order.PushFront(&cacheItem{address: address, digest: digest, expires: now.Add(c.ttl)})
}

func (c *authCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// cacheDigest keys the cache: a MAC of the password under the Directory's
// private key, so the cache holds nothing that is the password or a plain
// unsalted hash of it.
func cacheDigest(key []byte, pw string) [sha256.Size]byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(pw))
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}
