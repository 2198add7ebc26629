package node

import (
	"reflect"
	"slices"
	"strings"
)

// How a configuration key takes a new value (Reload, reload.go).
const (
	// KeyLive: a reload applies the new value at once.
	KeyLive = "live"
	// KeyRestart: the running value stays until the node restarts; a
	// reload that changes it says so in the log.
	KeyRestart = "restart"
)

// keyClass says how one key reloads, and why when it does not.
type keyClass struct {
	how string // KeyLive or KeyRestart
	// why a restart-only key cannot change live (or a live key's caveat),
	// shown in the log and mirrored by docs/deploy.md.
	why string
	// restartIf, for a live key, names a change that still needs a
	// restart (returns its reason), or "".
	restartIf func(old, new *Config) string
}

func live(why string) keyClass    { return keyClass{how: KeyLive, why: why} }
func restart(why string) keyClass { return keyClass{how: KeyRestart, why: why} }

// Reasons shared by several keys.
const (
	whyListener = "a listener is bound at start"
	whyIdentity = "the node's identity in the array"
	whyArray    = "every node of the array must agree"
	whyGoSMTP   = "go-smtp's server reads it unlocked from every session"
	whySession  = "copied into each session's settings"
	whyWatcher  = "the watcher loops are started with it; the files' contents reload on their own"
	// A reload rebuilds the pipeline (Node.swapInbound): a message in
	// flight finishes on the filters it started with.
	whyPipeline = "the next message; one in flight finishes on the old pipeline"
)

// configKeys classifies every YAML key of Config, by its dotted path
// (tuning.maintain-every). It is the one list of what a reload applies:
// docs/deploy.md ("Reloading the configuration") and
// deploy/mailarray.example.yaml mirror it, and TestEveryConfigKeyClassified
// fails on a key missing here. A key is live only where the running code
// reads it afresh (Node.conf, a setter of the part that copied it).
var configKeys = map[string]keyClass{
	"name":              restart(whyIdentity),
	"data":              restart("the store is opened at start"),
	"domain":            restart("the hosted domains name the node's DNS zones and greetings"),
	"users":             restart("the directory is opened at start; the file's contents reload on their own"),
	"mailboxes":         restart("the inline directory is built at start"),
	"advertise":         restart("advertised in membership at start"),
	"roles":             restart("advertised in membership at start"),
	"smtp":              restart(whyListener),
	"pop3":              restart(whyListener),
	"pop3s":             restart(whyListener),
	"imap":              restart(whyListener),
	"imaps":             restart(whyListener),
	"dns":               restart(whyListener),
	"peer":              restart(whyListener),
	"http":              restart(whyListener),
	"gossip":            restart(whyListener),
	"join":              restart("used to join the array at start"),
	"peer-key":          restart(whyArray),
	"peer-ca":           restart("the peer API's trust anchor is set at start; " + whyArray),
	"peer-cert":         restart("the peer API's TLS is set at start"),
	"peer-cert-key":     restart("the peer API's TLS is set at start"),
	"insecure-peer-api": restart("the peer API's protection is checked at start"),
	"gossip-key":        restart(whyArray),
	"gossip-profile":    restart("serf is configured at start"),
	"ingest-token":      restart("the ingest gateway copies it at start"),
	"admin-token":       live("read at each operator request"),
	"tls-cert":          {how: KeyLive, why: "the certificate is loaded from the new files; turning TLS on or off needs a restart", restartIf: tlsOnOff},
	"tls-key":           {how: KeyLive, why: "with tls-cert", restartIf: tlsOnOff},

	"replicas":          restart(whyArray),
	"write-quorum":      restart(whyArray),
	"max-message-bytes": restart(whyGoSMTP),
	"max-recipients":    restart(whyGoSMTP),
	"smtp-read-timeout": restart(whyGoSMTP),

	"smtp-max-sessions":        live("new connections"),
	"smtp-max-sessions-per-ip": live("new connections; sessions open stay"),
	"smtp-rate-per-ip":         live("new connections"),
	"pop3-idle-timeout":        restart(whySession),
	"pop3-max-failed-logins":   restart(whySession),
	"pop3-max-sessions":        live("new connections"),
	"imap-max-sessions":        live("new connections"),

	"pop3-max-sessions-per-ip":      live("new connections; sessions open stay"),
	"imap-max-sessions-per-ip":      live("new connections; sessions open stay"),
	"pop3-login-timeout":            restart(whySession),
	"imap-login-timeout":            restart(whySession),
	"smtp-rcpt-tarpit-after":        live("the next unknown recipient"),
	"smtp-rcpt-tarpit-delay":        live("the next unknown recipient"),
	"smtp-max-unknown-rcpts":        live("the next unknown recipient"),
	"smtp-max-unknown-rcpts-per-ip": live("the next unknown recipient"),
	"allow-cleartext-auth":          restart("the POP3 and IMAP servers' login policy is set at start"),

	"dns-ttl":            live("the next answer"),
	"zone-file":          live("the new files are loaded (a bad one refuses the reload) and watched"),
	"dns-strategy":       restart("the strategy keeps state (rotation, load) from start; " + whyArray),
	"dns-rotate-every":   live("the next answer"),
	"placement-strategy": restart("the strategy keeps state from start"),
	"weight":             restart("advertised in membership at start"),
	"load-stale":         restart("the load tracker's poll period is set at start"),
	"users-reload":       restart(whyWatcher),
	"shutdown-grace":     live("read when the signal comes"),
	"log-level":          live("`mailarray serve` sets its logger's level"),

	"pipeline.av-signatures":            live(whyPipeline),
	"pipeline.av-policy":                live(whyPipeline),
	"pipeline.av-domain-policy":         live(whyPipeline),
	"pipeline.clamd":                    live(whyPipeline),
	"pipeline.spam-db":                  live(whyPipeline),
	"pipeline.dnsbl":                    live(whyPipeline),
	"pipeline.ipbl":                     live(whyPipeline),
	"pipeline.dnsbl-server":             live(whyPipeline),
	"pipeline.spam-reject":              live(whyPipeline),
	"pipeline.fail-open":                live(whyPipeline),
	"pipeline.sms-gateway":              live("notices queued from then on; queued ones keep their gateway"),
	"pipeline.auth.resolver":            live(whyPipeline),
	"pipeline.auth.spf":                 live(whyPipeline),
	"pipeline.auth.dkim":                live(whyPipeline),
	"pipeline.auth.dmarc":               live(whyPipeline),
	"pipeline.auth.dmarc-policy":        live(whyPipeline),
	"pipeline.auth.authserv-id":         live(whyPipeline),
	"pipeline.auth.arc-trusted-sealers": live(whyPipeline),
	"tuning.anti-entropy-every":         live("the next round"),
	"tuning.maintain-every":             live("the next scan"),
	"tuning.pending-timeout":            live("the next scan"),
	"tuning.orphan-grace":               live("the next scan"),
	"tuning.rebuild-per-scan":           live("the next scan"),
	"tuning.tombstone-ttl":              restart("the collection horizon: " + whyArray),
	"tuning.delete-sync-timeout":        live("the next deletion"),
	"tuning.verify-every":               live("the next slice"),
	"tuning.verify-per-scan":            live("the next slice"),
	"tuning.collect-every":              restart("the collection horizon's step: " + whyArray),
	"tuning.ready-probe-every":          live("the next probe"),
	"tuning.rebalance-after-return":     live("the next maintenance pass"),
}

// tlsOnOff: a node without TLS has listeners without STARTTLS, and one
// with TLS serves POP3S/IMAPS with it: only a change between two files
// is live.
func tlsOnOff(old, new *Config) string {
	if (old.TLSCert == "") != (new.TLSCert == "") {
		return "turning TLS on or off"
	}
	return ""
}

// configField is one YAML key of Config and where its value lives.
type configField struct {
	key   string
	index []int // reflect.Value.FieldByIndex of Config
}

// configFields lists Config's YAML keys in declaration order: nested
// structs (pipeline, tuning) as dotted paths, inline ones flattened,
// `yaml:"-"` fields (not in the file) left out.
func configFields() []configField {
	var out []configField
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			name, opts, _ := strings.Cut(tag, ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			idx := append(slices.Clone(index), i)
			if opts == "inline" {
				walk(f.Type, prefix, idx)
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == reflect.TypeFor[Config]().PkgPath() {
				walk(f.Type, prefix+name+".", idx)
				continue
			}
			out = append(out, configField{key: prefix + name, index: idx})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}

// ConfigKeys lists every YAML key with how it reloads (KeyLive or
// KeyRestart) and why, in declaration order (for documentation).
func ConfigKeys() [][3]string {
	var out [][3]string
	for _, f := range configFields() {
		c := configKeys[f.key]
		out = append(out, [3]string{f.key, c.how, c.why})
	}
	return out
}

// diffConfig returns the keys whose values differ between old and new.
func diffConfig(old, new *Config) []configField {
	vo, vn := reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem()
	var out []configField
	for _, f := range configFields() {
		if !reflect.DeepEqual(vo.FieldByIndex(f.index).Interface(), vn.FieldByIndex(f.index).Interface()) {
			out = append(out, f)
		}
	}
	return out
}
