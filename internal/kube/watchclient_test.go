package kube

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

var gvr = schema.GroupVersionResource{Group: "image.toolkit.fluxcd.io", Version: "v1", Resource: "imagepolicies"}

// watchClients are the clients of a server at url with a request timeout,
// and the WatchDynamic one.
func watchClients(t *testing.T, url string, timeout time.Duration) (*Clients, dynamic.Interface) {
	t.Helper()
	c, err := New(Options{Kubeconfig: writeKubeconfig(t, t.TempDir(), "kubeconfig", url), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	wd, err := c.WatchDynamic()
	if err != nil {
		t.Fatal(err)
	}
	return c, wd
}

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
	c, wd := watchClients(t, srv.URL, 0)
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

// WatchDynamic's LISTs keep the request timeout: a server that takes the
// request and never answers ends the LIST at the deadline (a re-list of an
// informer would stall for good), while its watches carry none.
func TestWatchDynamicListsKeepTheRequestTimeout(t *testing.T) {
	answered := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done(): // the client gave up: what is tested
		case <-answered:
		}
	}))
	defer srv.Close()
	defer close(answered)
	_, wd := watchClients(t, srv.URL, 50*time.Millisecond)
	done := make(chan error, 1)
	go func() {
		_, err := wd.Resource(gvr).Namespace("flux-system").List(context.Background(), metav1.ListOptions{})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("LIST of a server that never answers: %v, want the request deadline", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the LIST of a server that never answers was still waiting after a minute")
	}
}

// listDeadline: a deadline on everything but a watch, ended when the body
// is closed.
func TestListDeadline(t *testing.T) {
	var got context.Context
	rt := &listDeadline{limit: time.Hour, next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = r.Context()
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("{}"))}, nil
	})}
	for _, tt := range []struct {
		url      string
		deadline bool
	}{
		{"https://k/apis/image.toolkit.fluxcd.io/v1/namespaces/f/imagepolicies", true},
		{"https://k/apis/image.toolkit.fluxcd.io/v1/namespaces/f/imagepolicies?limit=500&resourceVersion=0", true},
		{"https://k/apis/image.toolkit.fluxcd.io/v1/namespaces/f/imagepolicies?watch=true&timeoutSeconds=300", false},
		{"https://k/apis/image.toolkit.fluxcd.io/v1/namespaces/f/imagepolicies?watch=1", false},
	} {
		req, _ := http.NewRequest(http.MethodGet, tt.url, nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got.Deadline(); ok != tt.deadline {
			t.Errorf("%s: deadline %v, want %v", tt.url, ok, tt.deadline)
		}
		resp.Body.Close()
		if tt.deadline && got.Err() == nil {
			t.Errorf("%s: the request's context lives on after its body was closed", tt.url)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
