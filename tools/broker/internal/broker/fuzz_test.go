package broker_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"diskless-relays/tools/broker/internal/protocol"
)

// rawPost sends body as it is, JSON or not.
func rawPost(t *testing.T, e *env, path string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := e.ts.Client().Post(e.ts.URL+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// The relay protocol's two handlers, as anyone on the internet reaches them:
// the challenge with any body, and the attest against a live session of an
// enrolled relay ("SESSION" in the body becomes its id), which reaches the
// KDS cache's preparation outside the lock (its KDS is a closed loopback
// port). Nothing may be released, accepted or answered with an internal
// error.
func FuzzRelayProtocol(f *testing.F) {
	e := newEnv(f, envOptions{kdsURL: "http://127.0.0.1:1", fetchVCEK: true, checkRevocations: true})
	d := randDigest(f)
	e.uploadKeys("r", relayFiles(f))
	e.registerSNP("r", d, measurement(f))
	f.Add([]byte(`{"imageDigest":"`+d+`","purpose":"boot"}`), []byte(`{"session":"SESSION","recipient":"age1x","evidence":{"kind":"snp","report":"AAAA"}}`))
	f.Add([]byte(`{"imageDigest":"`+d+`","purpose":"push"}`), []byte(`{"session":"SESSION","payload":"AAAA","evidence":{"kind":"token","token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}`))
	f.Add([]byte(`{}`), []byte(`{"session":"SESSION","unknown":1}`))
	f.Fuzz(func(t *testing.T, challenge, attest []byte) {
		e.t = t // the harness reports through the running input's T
		// Challenges an input left open expire, so the per-relay cap never fills across inputs.
		e.clock.Advance(2 * protocol.ChallengeLifetime)
		status, _ := rawPost(t, e, "/v1/relays/r/challenge", challenge)
		if status == http.StatusInternalServerError {
			t.Fatalf("challenge %q: 500", challenge)
		}
		ch := e.challenge("r", d, "boot")
		body := bytes.ReplaceAll(attest, []byte("SESSION"), []byte(ch.Session))
		status, data := rawPost(t, e, "/v1/relays/r/attest", body)
		if status == http.StatusOK || status == http.StatusInternalServerError {
			t.Fatalf("attest %q: %d %s", body, status, data)
		}
		var eb protocol.ErrorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error.Code == "" {
			t.Fatalf("attest %q: no refusal code in %s", body, data)
		}
	})
}
