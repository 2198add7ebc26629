package report

import (
	"math"
	"strconv"
	"strings"
)

// Number formatting for the markdown. Every figure printed goes through
// one of these, so that pages read alike.

// num formats an integer with thousands separators: 24,097.
func num[T ~int | ~int64](v T) string {
	s := strconv.FormatInt(int64(v), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// rate formats messages per second: 401.6, 400 when whole, or 4,800 when
// large.
func rate(v float64) string {
	if math.Abs(v) >= 1000 || v == math.Trunc(v) {
		return num(int64(math.Round(v)))
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// msf formats milliseconds with sensible precision.
func msf(v float64) string {
	switch {
	case v >= 1000:
		return num(int64(math.Round(v))) + " ms"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + " ms"
}

// secs formats seconds.
func secs(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64) + " s"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " s"
}

// pct formats a fraction as a percentage.
func pct(f float64) string {
	v := f * 100
	if v != 0 && math.Abs(v) < 1 {
		return strconv.FormatFloat(v, 'f', 2, 64) + "%"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + "%"
}

// ratio formats a max/mean ratio.
func ratio(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

// bytesSI formats a byte count with SI units (kB, MB, GB).
func bytesSI(v float64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	i := 0
	for math.Abs(v) >= 1000 && i < len(units)-1 {
		v /= 1000
		i++
	}
	if i == 0 {
		return strconv.FormatFloat(v, 'f', 0, 64) + " B"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + units[i]
}

// kib formats a byte count of a message size in KiB.
func kib(v float64) string {
	if v < 1024 {
		return strconv.FormatFloat(v, 'f', 0, 64) + " B"
	}
	if v >= 1<<20 {
		return strconv.FormatFloat(v/(1<<20), 'f', 1, 64) + " MiB"
	}
	return strconv.FormatFloat(v/1024, 'f', 1, 64) + " KiB"
}

// table renders a markdown table; align has one of "l", "r" per column.
func table(b *strings.Builder, head []string, align string, rows [][]string) {
	b.WriteString("| " + strings.Join(head, " | ") + " |\n|")
	for i := range head {
		if i < len(align) && align[i] == 'r' {
			b.WriteString("---:|")
		} else {
			b.WriteString("---|")
		}
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	b.WriteString("\n")
}

// plural returns "n thing" or "n things" ("n copies").
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	if strings.HasSuffix(thing, "y") && !strings.ContainsAny(thing[len(thing)-2:len(thing)-1], "aeiou") {
		return num(n) + " " + thing[:len(thing)-1] + "ies"
	}
	return num(n) + " " + thing + "s"
}

// fmtList joins words as "a, b and c".
func fmtList(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}

// code wraps s in backquotes.
func code(s string) string { return "`" + s + "`" }
