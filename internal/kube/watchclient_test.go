package kube

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// A watch through the run's client carries the request timeout, which the
// API server obeys (timeout=30s: a new watch every 30 s); through
// WatchDynamic only the informer's timeoutSeconds.
func TestWatchDynamicCarriesNoRequestTimeout(t *testing.T) {
	var mu sync.Mutex
	var queries []map[string][]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.Query())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
	}))
	defer srv.Close()
	c, err := New(Options{Kubeconfig: writeKubeconfig(t, t.TempDir(), "kubeconfig", srv.URL)})
	if err != nil {
		t.Fatal(err)
	}
	wd, err := c.WatchDynamic()
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "image.toolkit.fluxcd.io", Version: "v1", Resource: "imagepolicies"}
	secs := int64(300)
	for _, dc := range []dynamic.Interface{c.Dynamic, wd} {
		w, err := dc.Resource(gvr).Namespace("flux-system").Watch(context.Background(), metav1.ListOptions{TimeoutSeconds: &secs})
		if err != nil {
			t.Fatal(err)
		}
		w.Stop()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(queries) != 2 {
		t.Fatalf("%d requests, want 2", len(queries))
	}
	if got := queries[0]["timeout"]; len(got) != 1 || got[0] != "30s" {
		t.Errorf("the run's client watched with timeout %v, want 30s (the premise of WatchDynamic)", got)
	}
	if got, ok := queries[1]["timeout"]; ok {
		t.Errorf("WatchDynamic watched with timeout %v, want none", got)
	}
	if got := queries[1]["timeoutSeconds"]; len(got) != 1 || got[0] != "300" {
		t.Errorf("WatchDynamic watched with timeoutSeconds %v, want 300", got)
	}
}
