package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestCommandName(t *testing.T) {
	tests := []struct {
		name, argv0, want string
	}{
		{name: "plain", argv0: "autodeploy", want: "autodeploy"},
		{name: "path", argv0: "/usr/bin/autodeploy", want: "autodeploy"},
		{name: "go run", argv0: "/tmp/go-build123/b001/exe/autodeploy", want: "autodeploy"},
		{name: "kubectl plugin", argv0: "/usr/bin/kubectl-autodeploy", want: "kubectl autodeploy"},
		{name: "kubectl plugin, relative", argv0: "kubectl-autodeploy", want: "kubectl autodeploy"},
		{name: "renamed binary", argv0: "/opt/bin/autodeploy-v2", want: "autodeploy"},
		{name: "empty", argv0: "", want: "autodeploy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := commandName(tt.argv0); got != tt.want {
				t.Errorf("commandName(%q) = %q, want %q", tt.argv0, got, tt.want)
			}
		})
	}
}

// TestKubectlPluginHelp: run as kubectl-autodeploy, help, usage and error
// hints name the command as the user types it.
func TestKubectlPluginHelp(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantOut  []string
		wantErr  []string
		code     ExitCode
		notInOut string
	}{
		{
			name:     "root help",
			args:     []string{"--help"},
			wantOut:  []string{"Usage:\n  kubectl autodeploy [command]", `Use "kubectl autodeploy [command] --help"`},
			notInOut: "\n  autodeploy [command]",
		},
		{
			name:    "subcommand help",
			args:    []string{"status", "--help"},
			wantOut: []string{"Usage:\n  kubectl autodeploy status [service...] [flags]"},
		},
		{
			name:    "usage error",
			args:    []string{"run", "extra"},
			wantErr: []string{"kubectl autodeploy run takes no arguments", "See 'kubectl autodeploy run --help'."},
			code:    ExitUsage,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			f := NewFactory(IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, func(string) string { return "" })
			f.Name = "kubectl autodeploy"
			if code := Execute(context.Background(), f, tt.args); code != tt.code {
				t.Fatalf("exit code %d, want %d; stderr: %s", code, tt.code, errOut.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			if tt.notInOut != "" && strings.Contains(out.String(), tt.notInOut) {
				t.Errorf("stdout has %q:\n%s", tt.notInOut, out.String())
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut.String())
				}
			}
		})
	}
}
