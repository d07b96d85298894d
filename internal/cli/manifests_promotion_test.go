package cli

import (
	"strings"
	"testing"
)

// manifests promotion: the image line git needs for each promoted
// service; --image fills it in and must name a promoted service.
func TestManifestsPromotion(t *testing.T) {
	cfg, _ := writeConfig(t, `flux: {namespace: flux-system}
services:
  - name: staging
    namespace: staging
    deployment: api
    imagePolicy: flux-system/api
  - name: production
    namespace: production
    deployment: api
    promote: {from: staging}
`)
	noPromotion, _ := writeConfig(t, "services:\n  - name: api\n")
	for _, tt := range []struct {
		name   string
		args   []string
		code   ExitCode
		stdout string
		stderr string
	}{
		{name: "placeholder", args: []string{"--config", cfg}, stdout: `image: <the image it runs> # {"$imagepolicy": "flux-system:autodeploy-production"}`},
		{name: "with the image", args: []string{"--config", cfg, "--image", "production=ghcr.io/acme/api:sha-1"}, stdout: `image: ghcr.io/acme/api:sha-1 # {"$imagepolicy": "flux-system:autodeploy-production"}`},
		{name: "--image of a service with its own policy", args: []string{"--config", cfg, "--image", "staging=x:1"}, code: ExitUsage, stderr: `--image staging=...: "staging" is not a promoted service of the config (promoted: production)`},
		// "--image =...:  is not a promoted service of the config": no
		// name, and nothing said which names are (issue 18, ninth pass).
		{name: "--image without a service", args: []string{"--config", cfg, "--image", "=x:1"}, code: ExitUsage, stderr: `--image =x:1 names no service before "=" (service=image; promoted: production)`},
		{name: "nothing promoted", args: []string{"--config", noPromotion}, stderr: "no service of the config is promoted"},
		// The line is copied into git: an image no runtime pulls, a second
		// setter marker in its comment or a line break (another YAML key)
		// was written as given (issue 18, sixth pass). --image is parsed
		// as every image autodeploy handles.
		{name: "--image no runtime pulls", args: []string{"--config", cfg, "--image", "production=ghcr.io/acme/API:1"}, code: ExitUsage, stderr: `invalid --image production="ghcr.io/acme/API:1"`},
		{name: "--image with a second marker", args: []string{"--config", cfg, "--image", `production=ghcr.io/x:1 # {"$imagepolicy": "evil:p"}`}, code: ExitUsage, stderr: "invalid --image production="},
		{name: "--image with a line break", args: []string{"--config", cfg, "--image", "production=ghcr.io/x:1\n          evil: true"}, code: ExitUsage, stderr: "invalid --image production="},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := execute(t, nil, append([]string{"manifests", "promotion"}, tt.args...)...)
			if code != tt.code || !strings.Contains(out, tt.stdout) || !strings.Contains(errOut, tt.stderr) {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
		})
	}
}
