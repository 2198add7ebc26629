package bench

import (
	"context"
	"net/http"

	"mailarray/node"
	"mailarray/sim"
)

// seesAlive reports whether the node whose /v1/status is at url answers
// and sees at least n members alive.
func seesAlive(ctx context.Context, client *http.Client, url string, n int) bool {
	var st node.Status
	if err := getJSON(ctx, client, url, &st); err != nil {
		return false
	}
	alive := 0
	for _, m := range st.Members {
		if m.Status == "alive" {
			alive++
		}
	}
	return alive >= n
}

// answersOK reports whether a GET of url answers 200 OK.
func answersOK(ctx context.Context, client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// acceptedBy counts rep's accepted messages by the node whose SMTP
// listener took them.
func acceptedBy(rep *sim.Report) map[string]int {
	by := map[string]int{}
	for i := range rep.Records {
		if rep.Records[i].Outcome == sim.Accepted {
			by[rep.Records[i].Node]++
		}
	}
	return by
}
