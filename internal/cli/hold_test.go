package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
)

func TestHoldEnd(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 20, 30, 0, 0, time.UTC) // 21:30 in Paris
	tests := []struct {
		name    string
		o       HoldOptions
		forSet  bool
		want    time.Time
		errPart string
	}{
		{name: "no end", want: time.Time{}},
		{name: "for 2h", o: HoldOptions{For: 2 * time.Hour}, forSet: true, want: now.Add(2 * time.Hour)},
		{name: "for zero", o: HoldOptions{For: 0}, forSet: true, errPart: "--for must be greater than zero (such as 2h or 30m)"},
		{name: "for negative", o: HoldOptions{For: -time.Hour}, forSet: true, errPart: "--for must be greater than zero"},
		// A hold that ends before any run could see it holds nothing
		// (issue 18, third pass: --for 1ns was accepted).
		{name: "for 1ns", o: HoldOptions{For: time.Nanosecond}, forSet: true, errPart: "--for must be at least 1m0s (a shorter hold ends before a run sees it), got 1ns"},
		{name: "for 1m", o: HoldOptions{For: time.Minute}, forSet: true, want: now.Add(time.Minute)},
		{name: "RFC3339", o: HoldOptions{Until: "2026-12-03T18:00:00+01:00"}, want: time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)},
		{name: "local date and time", o: HoldOptions{Until: "2026-12-03 18:00"}, want: time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)},
		{name: "local time later today", o: HoldOptions{Until: "23:00"}, want: time.Date(2026, 12, 2, 22, 0, 0, 0, time.UTC)},
		{name: "local time already passed is tomorrow", o: HoldOptions{Until: "09:00"}, want: time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)},
		{name: "in the past", o: HoldOptions{Until: "2026-12-01 18:00"}, errPart: "--until 2026-12-01 18:00 is in the past (now 2026-12-02 21:30 CET): give a later time, or --for"},
		{name: "unreadable", o: HoldOptions{Until: "tomorrow"}, errPart: `invalid --until "tomorrow": use RFC 3339 (2026-12-03T18:00:00+01:00), or "2026-12-03 18:00" or "18:00" in the local time zone`},
		{name: "both", o: HoldOptions{For: time.Hour, Until: "23:00"}, forSet: true, errPart: "give --for or --until, not both"},
		// --until agrees with --for: an end less than a minute away ends
		// before a run sees it (issue 18, sixth pass: 30 s was accepted).
		{name: "until 30s away", o: HoldOptions{Until: "2026-12-02T20:30:30Z"}, errPart: "--until 2026-12-02T20:30:30Z must be at least 1m0s away (a shorter hold ends before a run sees it), got 30s"},
		{name: "until 59s away", o: HoldOptions{Until: "2026-12-02T21:30:59+01:00"}, errPart: "must be at least 1m0s away"},
		{name: "until 1m away", o: HoldOptions{Until: "2026-12-02T20:31:00Z"}, want: now.Add(time.Minute)},
		// Past time.Duration's 292 years status said "in 106751d" for
		// 9999 (the saturated duration; issue 18, sixth pass).
		{name: "until beyond a duration", o: HoldOptions{Until: "9999-12-31 23:59"}, errPart: "--until 9999-12-31 23:59 is more than 290 years away: for a hold without an end, give neither --for nor --until"},
		{name: "until in 250 years", o: HoldOptions{Until: "2276-12-02 21:30"}, want: time.Date(2276, 12, 2, 20, 30, 0, 0, time.UTC)},
	}
	// time.Local is named "Local": the past-time error named that zone
	// (issue 18, sixth pass); it says the abbreviation date shows.
	t.Run("past in time.Local names the zone as date does", func(t *testing.T) {
		_, err := holdEnd(0, false, "2026-12-01 18:00", now, time.Local)
		zone, _ := now.In(time.Local).Zone()
		want := "(now " + now.In(time.Local).Format("2006-01-02 15:04") + " " + zone + ")"
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "Local") {
			t.Errorf("holdEnd in time.Local: %v; want an error with %q and no \"Local\"", err, want)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := holdEnd(tt.o.For, tt.forSet, tt.o.Until, now, paris)
			if tt.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("holdEnd = %v, %v; want an error with %q", got, err, tt.errPart)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Errorf("holdEnd = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// hold --all (and resume --all) printed a service's failure twice: its
// "error: web: ..." line as it went, then the same error again as the
// command's "Error:" line (issue 18, fifth pass). The last line sums up
// instead, keeping the first failure's exit code.
func TestAllSaysEachFailureOnce(t *testing.T) {
	api := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "api", Image: "ghcr.io/x/api:1"}},
		}}},
	}
	cfgPath, _ := writeConfig(t, "services:\n  - name: api\n  - name: web\n  - name: db\n")
	for _, args := range [][]string{{"hold", "--all", "--reason", "freeze"}, {"resume", "--all"}} {
		var out, errOut strings.Builder
		f := NewFactory(IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, func(string) string { return "" })
		cs := fake.NewSimpleClientset(api)
		f.Clients = func() (*kube.Clients, error) {
			return &kube.Clients{Kube: cs, Dynamic: dynamicfake.NewSimpleDynamicClient(runtime.NewScheme()), Source: "test"}, nil
		}
		code := Execute(context.Background(), f, append([]string{"--config", cfgPath}, args...))
		stderr := errOut.String()
		if code != ExitServiceProblem {
			t.Errorf("%v: exit %d, want %d; stderr %q", args, code, ExitServiceProblem, stderr)
		}
		for _, missing := range []string{"default/web not found", "default/db not found"} {
			if n := strings.Count(stderr, missing); n != 1 {
				t.Errorf("%v: %q said %d times, want once:\n%s", args, missing, n, stderr)
			}
		}
		if !strings.Contains(stderr, "Error: "+args[0]+" failed for 2 of 3 services (web, db)") {
			t.Errorf("%v: no summary line:\n%s", args, stderr)
		}
	}
}

// The warning of a hold whose ReplicaSets could not be marked quotes the
// API server's answer: escaped, as every line of the cluster's text is
// (issue 18, item 9; it was printed raw).
func TestWarnOnlyEscapes(t *testing.T) {
	var errOut bytes.Buffer
	f := NewFactory(IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: &errOut}, func(string) string { return "" })
	if err := warnOnly(f, &deploy.ReplicaSetMarksError{Err: errors.New("replicasets \"api-1\": \x1b]0;owned\a")}); err != nil {
		t.Fatalf("warnOnly returned %v, want the warning only", err)
	}
	if got := errOut.String(); strings.ContainsAny(got, "\x1b\a") || !strings.HasPrefix(got, "warning: the ReplicaSets could not be marked") {
		t.Errorf("warning %q: want it escaped", got)
	}
	other := errors.New("refused")
	if err := warnOnly(f, other); err != other {
		t.Errorf("warnOnly(%v) = %v, want it returned", other, err)
	}
}

// resume of a hold naming no one (a garbled annotation) said "was held by :
// unreadable hold annotation: ..." (issue 18, tenth pass).
func TestResumedLine(t *testing.T) {
	for _, tt := range []struct {
		hold deploy.Hold
		want string
	}{
		{deploy.Hold{Reason: "unreadable hold annotation: {garbage"}, "api resumed (was held: unreadable hold annotation: {garbage)\n"},
		{deploy.Hold{By: "ann", Reason: "freeze"}, "api resumed (was held by ann: freeze)\n"},
		{deploy.Hold{By: "\x1b[2J", Reason: "\x1b]0;x\a"}, "api resumed (was held by \\x1b[2J: \\x1b]0;x\\a)\n"},
	} {
		if got := resumedLine("api", tt.hold); got != tt.want {
			t.Errorf("resumedLine(%+v) = %q, want %q", tt.hold, got, tt.want)
		}
	}
}
