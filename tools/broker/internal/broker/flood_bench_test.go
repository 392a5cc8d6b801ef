package broker_test

// BenchmarkBootsUnderFlood: 128 genuine relays boot at once, each from an
// address of its own (127.1.x.y, as relays in many data centres), while
// one address (127.2.0.1) sends challenges for invented relays and for a
// real one, and junk attests, as fast as four connections let it. The
// broker runs with its default per-source limits and a real clock.
// Reported: the genuine relays' time to keys (p50/p99), every one of which
// must get its keys; what the flood sent and how it was answered; and how
// much the broker's heap grew.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"diskless-relays/tools/broker/internal/broker"
	"diskless-relays/tools/broker/internal/protocol"
)

func BenchmarkBootsUnderFlood(b *testing.B) {
	const relays = 128
	bb := newBenchBrokerWith(b, relays, envOptions{sourceRate: broker.DefaultSourceRate, sourceBurst: broker.DefaultSourceBurst, realClock: true})
	var lat latencies
	var sent, limited, refused, challenged, other atomic.Int64
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	stop := make(chan struct{})
	var flood sync.WaitGroup
	for w := range 4 {
		flood.Go(func() {
			c, done := bb.clientFrom(net.IPv4(127, 2, 0, 1))
			defer done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var path string
				var body []byte
				switch i % 3 {
				case 0:
					path = fmt.Sprintf("/v1/relays/invented-%d-%d/challenge", w, i)
					body, _ = json.Marshal(protocol.ChallengeRequest{ImageDigest: bb.relays[0].digest, Purpose: "boot"})
				case 1:
					path = "/v1/relays/" + bb.relays[0].name + "/challenge"
					body, _ = json.Marshal(protocol.ChallengeRequest{ImageDigest: bb.relays[0].digest, Purpose: "boot"})
				default:
					path = "/v1/relays/" + bb.relays[0].name + "/attest"
					body, _ = json.Marshal(protocol.AttestRequest{Session: "junk", Evidence: protocol.Evidence{Kind: "snp", Report: make([]byte, 1184)}})
				}
				resp, err := c.Post(bb.url+path, "application/json", bytes.NewReader(body))
				sent.Add(1)
				if err != nil {
					other.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusTooManyRequests:
					limited.Add(1)
				case http.StatusForbidden, http.StatusBadRequest:
					refused.Add(1)
				case http.StatusOK: // a challenge for the real relay, within the burst
					challenged.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	time.Sleep(time.Second) // the flood is on before the relays come
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		var wg sync.WaitGroup
		var failed atomic.Pointer[error]
		for i, r := range bb.relays {
			wg.Go(func() {
				t0 := time.Now()
				if _, err := bb.bootFrom(r, net.IPv4(127, 1, byte(i/256), byte(1+i%256))); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				lat.add(time.Since(t0))
			})
		}
		wg.Wait()
		if err := failed.Load(); err != nil {
			b.Fatalf("a genuine relay got no keys under the flood: %v", *err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	flood.Wait()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	lat.report(b, elapsed, "releases/s")
	b.ReportMetric(float64(sent.Load())/(elapsed.Seconds()+1), "flood-req/s")
	b.ReportMetric(float64(limited.Load()), "flood-429")
	b.ReportMetric(float64(refused.Load()), "flood-403/400")
	b.ReportMetric(float64(challenged.Load()), "flood-200")
	b.ReportMetric(float64(other.Load()), "flood-other")
	b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/(1<<20), "heap-growth-MiB")
}
