package kube

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// An answer without end (a misbehaving server or proxy streaming a body)
// filled the memory: status reached 1.6 GB in 3 s and died "fatal error:
// out of memory" under a 4 GB ulimit, and without one it reads for the
// whole request timeout (issue 18, fourth pass). An answer past
// maxAnswerBytes is refused, naming the server, as one that is not the
// API's; a watch, a stream by design, is not cut.
func TestAnswerWithoutEnd(t *testing.T) {
	defer func(n int64) { maxAnswerBytes = n }(maxAnswerBytes)
	maxAnswerBytes = 1 << 20
	chunk := []byte(strings.Repeat("a", 64<<10))
	var served int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("watch") == "true" {
			// A watch event larger than the bound, then the end.
			w.Write([]byte(`{"type":"ADDED","object":{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"api","namespace":"default","annotations":{"a":"`))
			for i := 0; i < 20; i++ {
				w.Write(chunk)
			}
			w.Write([]byte(`"}}}}` + "\n"))
			return
		}
		w.Write([]byte(`{"kind":"DeploymentList","apiVersion":"apps/v1","items":[{"metadata":{"name":"`))
		for served < 64<<20 { // the bound's 64 times: the client stops first
			if _, err := w.Write(chunk); err != nil {
				return
			}
			served += int64(len(chunk))
		}
	}))
	defer srv.Close()
	kc := writeKubeconfig(t, t.TempDir(), "kubeconfig", srv.URL)
	c, err := New(Options{Kubeconfig: kc})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Kube.AppsV1().Deployments("default").List(context.Background(), metav1.ListOptions{})
	err = c.Classify(err)
	var ue *UnreachableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), srv.URL) || !strings.Contains(err.Error(), "more than 1 MiB") {
		t.Errorf("List = %v, want an UnreachableError naming the server and the bound", err)
	}
	w, err := c.Kube.AppsV1().Deployments("default").Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if ev, ok := <-w.ResultChan(); !ok || ev.Type != "ADDED" {
		t.Errorf("watch event %v (open %v), want the large ADDED event whole", ev.Type, ok)
	}
}
