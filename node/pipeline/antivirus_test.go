package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
)

func newAV(t *testing.T, cfg AVConfig) *Antivirus {
	t.Helper()
	log, _ := testLogger()
	a, err := NewAntivirus(cfg, log)
	require.NoError(t, err)
	return a
}

func check(t *testing.T, f Filter, m *Message) Verdict {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := f.Check(ctx, m)
	require.NoError(t, err)
	return v
}

func TestAntivirusDetects(t *testing.T) {
	a := newAV(t, DefaultAVConfig())
	// A QP part whose soft line breaks cut EICAR in two: only decoding
	// finds it.
	qpBody := []byte(strings.Repeat("padding ", 5) + eicar + " trailing text")
	qp := buildMessage(t, "alice@example.org", "qp", textPart("hi"),
		part{ctype: "text/plain", enc: "quoted-printable", body: qpBody})
	require.NotContains(t, string(qp), eicar, "the QP encoding must split the pattern for this test")
	b64 := mixedWithAttachment(t, []byte(eicar))
	require.NotContains(t, string(b64), eicar)
	nested := buildMessage(t, "alice@example.org", "nested",
		part{ctype: "multipart/alternative", children: []part{
			{ctype: "text/plain", enc: "quoted-printable", body: []byte("plain")},
			{ctype: "text/html", enc: "base64", body: []byte("<p>" + eicar + "</p>")},
		}})
	tests := []struct {
		name     string
		data     []byte
		wantPart string
	}{
		{"base64 attachment", b64, `part 2 ("report.bin")`},
		{"quoted-printable part", qp, "part 2"},
		{"nested alternative", nested, "part 1.2"},
		{"single part body", buildMessage(t, "a@example.org", "s", part{ctype: "application/octet-stream", enc: "base64", body: []byte(eicar)}), "message body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := check(t, a, testMessage(tt.data))
			require.Equal(t, Modify, v.Action, v.Reason)
			assert.Contains(t, v.Reason, EICARName+" in "+tt.wantPart)
			assert.Equal(t, []string{"X-Virus-Status: Infected (EICAR-Test-File); defanged"}, v.Headers)
			assert.NotContains(t, string(v.Data), eicar)
			// The defanged message scans clean.
			again := check(t, a, testMessage(v.Data))
			assert.Equal(t, Accept, again.Action, again.Reason)
		})
	}
}

func TestAntivirusCleanUnchanged(t *testing.T) {
	a := newAV(t, DefaultAVConfig())
	data := buildMessage(t, "alice@example.org", "clean", textPart("hello"),
		part{ctype: "multipart/alternative", children: []part{
			{ctype: "text/plain", enc: "quoted-printable", body: []byte("caf\u00e9")},
			{ctype: "text/html", enc: "quoted-printable", body: []byte("<b>caf\u00e9</b>")},
		}},
		attachment("data.bin", bytes.Repeat([]byte{0, 1, 2, 3, 0xff}, 1000)))
	orig := bytes.Clone(data)
	v := check(t, a, testMessage(data))
	assert.Equal(t, Accept, v.Action)
	assert.Nil(t, v.Data)
	assert.Empty(t, v.Headers)
	assert.Contains(t, v.Reason, "clean (6 parts")
	assert.Equal(t, orig, data, "Check must not modify the message")

	p := New(DefaultConfig(), nil, a)
	res, err := p.Run(context.Background(), testMessage(data))
	require.NoError(t, err)
	assert.Equal(t, orig, res.Data, "a clean message passes byte-identical")
}

func TestAntivirusDefangKeepsTheRest(t *testing.T) {
	a := newAV(t, DefaultAVConfig())
	data := buildMessage(t, "alice@example.org", "three parts", textPart("first part\r\n"),
		attachment("eicar.com", []byte(eicar)), attachment("clean.bin", []byte("clean content")))
	start, end := partBounds(t, data, 2)
	v := check(t, a, testMessage(data))
	require.Equal(t, Modify, v.Action, v.Reason)
	out := v.Data

	// Everything outside the infected part is byte-identical.
	require.True(t, bytes.HasPrefix(out, data[:start]), "bytes before the part changed")
	require.True(t, bytes.HasSuffix(out, data[end:]), "bytes after the part changed")
	replaced := string(out[start : len(out)-(len(data)-end)])
	// multipart.Writer sorts the fields: Content-Disposition stays first,
	// the new fields take the place of Content-Transfer-Encoding.
	assert.Equal(t, "Content-Disposition: attachment; filename=\"eicar.com\"\r\n"+
		"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"+
		"This part of the message contained malware and was removed by mailarray.\r\n"+
		"Detected: EICAR-Test-File\r\nOriginal type: application/octet-stream\r\n"+
		"Original file name: eicar.com\r\nMessage id: T1", replaced)

	// The result is still a valid MIME message with the other parts intact.
	msgHdr := messageHeader(out)
	_, params, err := mime.ParseMediaType(msgHdr.Get("Content-Type"))
	require.NoError(t, err)
	_, bodyStart := headerEnd(out)
	mr := multipart.NewReader(bytes.NewReader(out[bodyStart:]), params["boundary"])
	var got []string
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		b, err := io.ReadAll(p)
		require.NoError(t, err)
		got = append(got, p.Header.Get("Content-Type")+": "+string(b))
	}
	require.Len(t, got, 3)
	assert.Equal(t, "text/plain; charset=utf-8: first part\r\n", got[0])
	assert.True(t, strings.HasPrefix(got[1], "text/plain; charset=us-ascii: This part of the message contained malware"))
	assert.Equal(t, "application/octet-stream: "+base64.StdEncoding.EncodeToString([]byte("clean content")), got[2])

	// Through the pipeline the header lands just after our Received.
	res, err := New(DefaultConfig(), nil, a).Run(context.Background(), testMessage(data))
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(res.Data, []byte(testReceived+"X-Virus-Status: Infected (EICAR-Test-File); defanged\r\nFrom: ")))
	assert.Equal(t, []string{`antivirus: modify: infected: EICAR-Test-File in part 2 ("eicar.com") (` +
		`4 parts, ` + fmt.Sprint(scannedBytes(t, a, data)) + ` bytes scanned); policy defang: 1 part(s) replaced`}, res.Trace)
}

// scannedBytes is what the scanner reports having scanned for data.
func scannedBytes(t *testing.T, a *Antivirus, data []byte) int64 {
	s, err := a.scan(context.Background(), data)
	require.NoError(t, err)
	return s.scanned
}

func TestAntivirusDefangSinglePartAndRFC822(t *testing.T) {
	a := newAV(t, DefaultAVConfig())
	// A single-part message: the top-level Content-Type and encoding are
	// replaced, every other header field stays.
	single := buildMessage(t, "alice@example.org", "single", part{ctype: "application/x-msdownload", enc: "base64", body: []byte(eicar)})
	v := check(t, a, testMessage(single))
	require.Equal(t, Modify, v.Action)
	hdrIn, hdrOut := messageHeader(single), messageHeader(v.Data)
	for _, k := range []string{"Received", "From", "To", "Subject", "Message-Id", "Mime-Version"} {
		assert.Equal(t, hdrIn.Values(k), hdrOut.Values(k), k)
	}
	assert.Equal(t, "text/plain; charset=us-ascii", hdrOut.Get("Content-Type"))
	assert.Equal(t, "7bit", hdrOut.Get("Content-Transfer-Encoding"))
	assert.True(t, bytes.HasSuffix(v.Data, []byte("Message id: T1\r\n")))

	// An attached message whose own attachment is infected: only that
	// innermost part changes.
	inner := string(mixedWithAttachment(t, []byte(eicar)))
	outer := "From: carol@example.org\r\nSubject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=OUTER\r\n\r\n" +
		"--OUTER\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--OUTER\r\nContent-Type: message/rfc822\r\n\r\n" + inner + "\r\n--OUTER--\r\n"
	v = check(t, a, testMessage([]byte(outer)))
	require.Equal(t, Modify, v.Action, v.Reason)
	assert.Contains(t, v.Reason, `EICAR-Test-File in part 2.1.2 ("report.bin")`)
	assert.Contains(t, string(v.Data), "--OUTER\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--OUTER\r\nContent-Type: message/rfc822\r\n\r\n")
	assert.Contains(t, string(v.Data), "the report is attached.")
}

func TestAntivirusPolicy(t *testing.T) {
	cfg := DefaultAVConfig()
	cfg.Policy = map[string]string{"quarantine.test": PolicyQuarantine, "Defang.Test": "DEFANG"}
	a := newAV(t, cfg)
	infected := mixedWithAttachment(t, []byte(eicar))
	tests := []struct {
		name string
		to   []string
		want Action
	}{
		{"defang domain", []string{"a@defang.test"}, Modify},
		{"default policy", []string{"a@other.test"}, Modify},
		{"quarantine domain", []string{"a@quarantine.test"}, Quarantine},
		{"strictest wins", []string{"a@defang.test", "b@quarantine.test", "c@other.test"}, Quarantine},
		{"strictest wins, any order", []string{"b@QUARANTINE.test", "a@defang.test"}, Quarantine},
		{"no recipients: default", nil, Modify},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testMessage(infected)
			m.To = tt.to
			v := check(t, a, m)
			assert.Equal(t, tt.want, v.Action, v.Reason)
			if tt.want == Quarantine {
				assert.Nil(t, v.Data)
				assert.Equal(t, []string{"X-Virus-Status: Infected (EICAR-Test-File); quarantined"}, v.Headers)
				assert.Contains(t, v.Reason, "policy quarantine")
			}
		})
	}

	// A pattern outside any part body (here the Subject) cannot be cut
	// out: quarantined even under defang.
	inHeader := buildMessage(t, "alice@example.org", eicar, textPart("hi"))
	v := check(t, a, testMessage(inHeader, "a@defang.test"))
	assert.Equal(t, Quarantine, v.Action)
	assert.Contains(t, v.Reason, "outside any part body")
	assert.Contains(t, v.Reason, "cannot defang")

	// Through the pipeline, quarantine keeps the data and flags it.
	res, err := New(DefaultConfig(), nil, a).Run(context.Background(), testMessage(infected, "a@quarantine.test"))
	require.NoError(t, err)
	assert.True(t, res.Quarantine)
	assert.Equal(t, string(InsertHeaders(infected, []string{"X-Virus-Status: Infected (EICAR-Test-File); quarantined"})), string(res.Data))

	for _, bad := range []AVConfig{
		{DefaultPolicy: "delete"},
		{Policy: map[string]string{"x.test": "bounce"}},
		{Policy: map[string]string{"bad domain": "defang"}},
		{Clamd: "127.0.0.1:3310"},
		{MaxScanBytes: -1},
	} {
		_, err := NewAntivirus(bad, nil)
		assert.Error(t, err, "%+v", bad)
	}
}

func TestAntivirusLimits(t *testing.T) {
	data := mixedWithAttachment(t, append(bytes.Repeat([]byte("x"), 4000), eicar...))
	cfg := DefaultAVConfig()
	cfg.MaxScanBytes = 1000
	v := check(t, newAV(t, cfg), testMessage(data))
	assert.Equal(t, Accept, v.Action, "the pattern lies past the scanning limit")
	assert.Contains(t, v.Reason, "limit scan bytes reached")

	cfg.QuarantineUnscanned = true
	v = check(t, newAV(t, cfg), testMessage(data))
	assert.Equal(t, Quarantine, v.Action)
	assert.Equal(t, []string{"X-Virus-Status: Unscanned (scan bytes limit); quarantined"}, v.Headers)
}

// sigFile writes a signature file and returns its path.
func sigFile(t *testing.T, dir, content string) string {
	t.Helper()
	path := filepath.Join(dir, "signatures.txt")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	return path
}

func TestSignatureFile(t *testing.T) {
	dir := t.TempDir()
	hashed := []byte("a known bad attachment, matched by digest")
	sum := sha256.Sum256(hashed)
	content := "# test signatures\n" +
		"Test.Pattern hex:" + hex.EncodeToString([]byte("EVIL-PATTERN-42")) + "\n" +
		"\n" +
		"Test.Digest sha256:" + hex.EncodeToString(sum[:]) + "\n" +
		"Bad.Short hex:0102\n" +
		"Bad.Kind md5:00112233\n" +
		"no-value-here\n" +
		"Test.Pattern hex:41424344\n" +
		"Bad.Hex hex:zz11\n"
	path := sigFile(t, dir, content)

	sigs, problems := ParseSignatures(strings.NewReader(content), path)
	require.Len(t, sigs, 2)
	assert.Equal(t, Signature{Name: "Test.Pattern", Kind: SigBytes, Pattern: []byte("EVIL-PATTERN-42"), Line: 2}, sigs[0])
	assert.Equal(t, 4, sigs[1].Line)
	var lines []int
	for _, p := range problems {
		lines = append(lines, p.Line)
	}
	assert.Equal(t, []int{5, 6, 7, 8, 9}, lines, "%v", problems)
	assert.Equal(t, path+":5: pattern of 2 bytes, want 4 to 1024", problems[0].String())
	assert.Contains(t, problems[3].Reason, "duplicate name Test.Pattern (first on line 2)")

	log, logs := testLogger()
	cfg := DefaultAVConfig()
	cfg.SignatureFile = path
	a, err := NewAntivirus(cfg, log)
	require.NoError(t, err)
	assert.Equal(t, 3, a.Signatures(), "EICAR and the two good lines")
	assert.Contains(t, logs.String(), "line=5")

	tests := []struct {
		name, want string
		data       []byte
	}{
		{"hex pattern in a decoded part", "Test.Pattern", mixedWithAttachment(t, []byte("prefix EVIL-PATTERN-42 suffix"))},
		{"sha256 of an attachment", "Test.Digest", mixedWithAttachment(t, hashed)},
		{"digest needs the whole part", "", mixedWithAttachment(t, append(hashed, '!'))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := check(t, a, testMessage(tt.data))
			if tt.want == "" {
				assert.Equal(t, Accept, v.Action, v.Reason)
				return
			}
			require.Equal(t, Modify, v.Action, v.Reason)
			assert.Contains(t, v.Reason, tt.want+` in part 2 ("report.bin")`)
		})
	}

	// Reload picks up a new signature; a failed reload keeps the old set.
	fresh := mixedWithAttachment(t, []byte("brand new threat"))
	assert.Equal(t, Accept, check(t, a, testMessage(fresh)).Action)
	sigFile(t, dir, content+"Test.New hex:"+hex.EncodeToString([]byte("new threat"))+"\n")
	problems, err = a.Reload()
	require.NoError(t, err)
	assert.Len(t, problems, 5)
	assert.Equal(t, Modify, check(t, a, testMessage(fresh)).Action)
	require.NoError(t, os.Remove(path))
	_, err = a.Reload()
	assert.Error(t, err)
	assert.Equal(t, 4, a.Signatures())

	// A missing file at start is an error.
	_, err = NewAntivirus(cfg, nil)
	assert.Error(t, err)
}

func TestSignatureWatch(t *testing.T) {
	dir := t.TempDir()
	path := sigFile(t, dir, "# none yet\n")
	cfg := DefaultAVConfig()
	cfg.SignatureFile = path
	a := newAV(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Watch(ctx, 5*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })

	msg := testMessage(mixedWithAttachment(t, []byte("watched threat")))
	assert.Equal(t, Accept, check(t, a, msg).Action)
	// Replace the file the way an operator's tool would: rename over it.
	tmp := filepath.Join(dir, "new.txt")
	require.NoError(t, os.WriteFile(tmp, []byte("Test.Watched hex:"+hex.EncodeToString([]byte("watched threat"))+"\n"), 0o644))
	require.NoError(t, os.Rename(tmp, path))
	require.Eventually(t, func() bool { return a.Signatures() == 2 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, Modify, check(t, a, msg).Action)
}

func TestSignatureMatcherLargeSet(t *testing.T) {
	// Past smallPatternSet the prefix index is used: same answers.
	var sigs []Signature
	for i := range 100 {
		sigs = append(sigs, Signature{Name: fmt.Sprintf("S%d", i), Kind: SigBytes, Pattern: []byte(fmt.Sprintf("pattern-%03d!", i))})
	}
	db := compileSignatures(sigs)
	data := []byte("xx pattern-007! yy pattern-099! pattern-100! pattern-00")
	var names []string
	for _, f := range db.find(data) {
		names = append(names, f.Sig.Name)
		assert.Equal(t, f.Sig.Pattern, data[f.Offset:f.Offset+len(f.Sig.Pattern)])
	}
	assert.ElementsMatch(t, []string{"S7", "S99"}, names)
}

// fakeClamd is a clamd speaking INSTREAM on loopback. It reports FOUND
// with the name of the first of its patterns in the stream.
type fakeClamd struct {
	l        net.Listener
	patterns map[string]string // pattern -> name
	mu       sync.Mutex
	scans    []int // bytes received per scan
	wg       sync.WaitGroup
}

func startFakeClamd(t *testing.T, patterns map[string]string) *fakeClamd {
	t.Helper()
	l, err := (&env.RealNet{}).Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fakeClamd{l: l, patterns: patterns}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() { defer f.wg.Done(); f.serve(c) }()
		}
	}()
	t.Cleanup(func() { l.Close(); f.wg.Wait() })
	return f
}

func (f *fakeClamd) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cmd := make([]byte, len("zINSTREAM\x00"))
	if _, err := io.ReadFull(c, cmd); err != nil || string(cmd) != "zINSTREAM\x00" {
		c.Write([]byte("UNKNOWN COMMAND\x00"))
		return
	}
	var data []byte
	for {
		var n [4]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		size := binary.BigEndian.Uint32(n[:])
		if size == 0 {
			break
		}
		if size > ClamdChunkBytes {
			c.Write([]byte("INSTREAM size limit exceeded. ERROR\x00"))
			return
		}
		chunk := make([]byte, size)
		if _, err := io.ReadFull(c, chunk); err != nil {
			return
		}
		data = append(data, chunk...)
	}
	f.mu.Lock()
	f.scans = append(f.scans, len(data))
	f.mu.Unlock()
	for p, name := range f.patterns {
		if bytes.Contains(data, []byte(p)) {
			c.Write([]byte("stream: " + name + " FOUND\x00"))
			return
		}
	}
	c.Write([]byte("stream: OK\x00"))
}

func (f *fakeClamd) scanSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.scans...)
}

func TestClamd(t *testing.T) {
	f := startFakeClamd(t, map[string]string{eicar: "Eicar-Test-Signature", "CLAMD-ONLY": "Clamd.Only-1"})
	n := &env.RealNet{}
	c := &Clamd{Addr: f.l.Addr().String(), Net: n}
	ctx := context.Background()

	big := bytes.Repeat([]byte("0123456789abcdef"), 3*ClamdChunkBytes/16+100) // 4 chunks
	name, err := c.Scan(ctx, big)
	require.NoError(t, err)
	assert.Equal(t, "", name)
	assert.Equal(t, []int{len(big)}, f.scanSizes(), "every chunk arrived")
	name, err = c.Scan(ctx, []byte("x "+eicar))
	require.NoError(t, err)
	assert.Equal(t, "Eicar-Test-Signature", name)

	cfg := DefaultAVConfig()
	cfg.Clamd, cfg.Net = f.l.Addr().String(), n
	a := newAV(t, cfg)

	v := check(t, a, testMessage(mixedWithAttachment(t, []byte("harmless"))))
	assert.Equal(t, Accept, v.Action)
	assert.Contains(t, v.Reason, "clamd OK")

	// clamd finds what the built-in signatures do not; the parts are sent
	// one by one to find which to defang. (The raw message carries the
	// pattern as plain text in part 1, so clamd sees it whole.)
	data := buildMessage(t, "alice@example.org", "x", textPart("CLAMD-ONLY sample"), attachment("ok.bin", []byte("fine")))
	v = check(t, a, testMessage(data))
	require.Equal(t, Modify, v.Action, v.Reason)
	assert.Contains(t, v.Reason, "Clamd.Only-1 in part 1")
	assert.Contains(t, v.Reason, "clamd found Clamd.Only-1")
	assert.Equal(t, []string{"X-Virus-Status: Infected (Clamd.Only-1); defanged"}, v.Headers)

	// Found in the whole but in no part: quarantined.
	v = check(t, a, testMessage(buildMessage(t, "alice@example.org", "CLAMD-ONLY", textPart("hi"))))
	assert.Equal(t, Quarantine, v.Action, v.Reason)

	// clamd down: the filter fails, so the pipeline answers 451.
	l, err := n.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	l.Close()
	cfg.Clamd = dead
	down := newAV(t, cfg)
	_, err = down.Check(ctx, testMessage(data))
	require.Error(t, err)
	_, err = New(DefaultConfig(), nil, down).Run(ctx, testMessage(data))
	require.Error(t, err)
	assert.Equal(t, 451, smtpCode(err))

	// clamd answering with an error.
	for _, reply := range []string{"INSTREAM size limit exceeded. ERROR", "stream: something odd"} {
		_, err := parseClamdReply(reply)
		assert.ErrorIs(t, err, ErrClamd, reply)
	}
}
