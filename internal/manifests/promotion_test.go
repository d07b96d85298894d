package manifests

import (
	"bytes"
	"strings"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

func TestPromotion(t *testing.T) {
	cfg, err := config.Parse([]byte(`flux: {namespace: flux-system}
services:
  - name: staging
    namespace: staging
    deployment: api
    imagePolicy: flux-system/api
  - name: production
    namespace: production
    deployment: api
    promote: {from: staging}
  - name: canary
    namespace: canary
    deployment: api
    container: app
    promote: {from: staging, imagePolicy: apps/canary-api}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if n := Promotion(&b, cfg, map[string]string{"production": "ghcr.io/acme/api:sha-1"}); n != 2 {
		t.Errorf("wrote %d services, want the 2 promoted", n)
	}
	out := b.String()
	for _, want := range []string{
		`# production: Deployment production/api, promoted from staging; in container <its only container>, the image line:`,
		`          image: ghcr.io/acme/api:sha-1 # {"$imagepolicy": "flux-system:autodeploy-production"}`,
		`#   ImagePolicy flux-system/autodeploy-production must NOT be in git`,
		`over the ImageRepository of ImagePolicy flux-system/api,`,
		`# canary: Deployment canary/api, promoted from staging; in container app, the image line:`,
		`          image: <the image it runs> # {"$imagepolicy": "apps:canary-api"}`,
		`an ImageUpdateAutomation in namespace apps must update this file`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "# staging:") {
		t.Errorf("a service with its own policy is listed:\n%s", out)
	}
	b.Reset()
	if n := Promotion(&b, &config.Config{Services: []config.Service{{Name: "api"}}}, nil); n != 0 || b.Len() != 0 {
		t.Errorf("without promotions: %d, %q", n, b.String())
	}
}
