package manifests

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
)

// receiverExample is what `manifests receiver` completes to for the
// example config on a Flux 2.7 cluster.
var receiverExample = ReceiverOptions{
	Name: "autodeploy", Namespace: "flux-system", Token: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	RepositoryAPIVersion: "image.toolkit.fluxcd.io/v1",
	Repositories:         []flux.Ref{{Namespace: "flux-system", Name: "api-gateway"}, {Namespace: "apps", Name: "worker"}},
}

func TestReceiverRefuses(t *testing.T) {
	cfg := example(t)
	tests := []struct {
		name    string
		edit    func(*ReceiverOptions)
		errPart string
	}{
		{"bad name", func(o *ReceiverOptions) { o.Name = "Auto_Deploy" }, `--name "Auto_Deploy" is not a valid name`},
		{"bad namespace", func(o *ReceiverOptions) { o.Namespace = "a.b" }, `--namespace "a.b" is not a valid name`},
		{"a name whose Secret's would be too long", func(o *ReceiverOptions) { o.Name = strings.Repeat("a", 250) }, "--name"},
		{"no repository", func(o *ReceiverOptions) { o.Repositories = nil }, "no configured service has an ImagePolicy"},
		{"a token with a line break", func(o *ReceiverOptions) { o.Token = "abc\ndef" }, "line break"},
		{"no token and no Secret", func(o *ReceiverOptions) { o.Token = "" }, "no token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := receiverExample
			tt.edit(&o)
			var b bytes.Buffer
			err := Receiver(&b, cfg, o)
			if err == nil || !strings.Contains(err.Error(), tt.errPart) {
				t.Fatalf("err %v, want %q", err, tt.errPart)
			}
			if strings.Contains(err.Error(), o.Token) && o.Token != "" {
				t.Errorf("the error quotes the token: %v", err)
			}
		})
	}
}

// The token is in the Secret, base64 as data holds it, and nowhere else:
// not in the setup text on stderr, which says how to read it instead.
func TestReceiverTokenOnlyInTheSecret(t *testing.T) {
	cfg := example(t)
	o := receiverExample
	o.Token = "s3cr3t-token-from-a-file"
	var out, setup bytes.Buffer
	if err := Receiver(&out, cfg, o); err != nil {
		t.Fatal(err)
	}
	ReceiverSetup(&setup, o)
	enc := base64.StdEncoding.EncodeToString([]byte(o.Token))
	if strings.Count(out.String(), enc) != 1 || strings.Contains(out.String(), o.Token) {
		t.Errorf("want the token once, encoded, in the Secret:\n%s", out.String())
	}
	if strings.Contains(setup.String(), o.Token) || strings.Contains(setup.String(), enc) {
		t.Errorf("the setup text quotes the token:\n%s", setup.String())
	}
}
