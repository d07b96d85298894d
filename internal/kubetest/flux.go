package kubetest

import (
	"context"
	"fmt"
	"strings"

	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CreateImageRepository creates an ImageRepository scanning image.
func (e *Env) CreateImageRepository(v fluxsim.Version, ns, name, image string) {
	e.T.Helper()
	if err := fluxsim.CreateRepository(context.Background(), e.Dynamic, v, ns, name, image); err != nil {
		e.T.Fatal(err)
	}
}

// CreateImagePolicy creates an alphabetical ImagePolicy over repo.
func (e *Env) CreateImagePolicy(v fluxsim.Version, ns, name, repo string) {
	e.T.Helper()
	if err := fluxsim.CreatePolicy(context.Background(), e.Dynamic, v, ns, name, repo); err != nil {
		e.T.Fatal(err)
	}
}

// SetPolicyImage writes an ImagePolicy's status as after selecting image.
func (e *Env) SetPolicyImage(v fluxsim.Version, ns, name, image string) {
	e.T.Helper()
	if err := fluxsim.SetPolicy(context.Background(), e.Dynamic, v, ns, name, image, ""); err != nil {
		e.T.Fatal(err)
	}
}

// StartReflector plays image-reflector-controller in ns until the test ends.
func (e *Env) StartReflector(v fluxsim.Version, ns string) *fluxsim.Reflector {
	e.T.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.T.Cleanup(cancel)
	r, err := fluxsim.Start(ctx, e.Dynamic, v, ns, func(err error) { e.T.Errorf("reflector: %v", err) })
	if err != nil {
		e.T.Fatal(err)
	}
	return r
}

// StartGitOps plays source-controller, kustomize-controller and
// image-automation-controller (fluxsim.StartGitOps) until the test ends.
// Namespace defaults to the Env's, Dir to a fresh t.TempDir(), OnError to
// failing the test.
func (e *Env) StartGitOps(o fluxsim.GitOptions) *fluxsim.GitOps {
	e.T.Helper()
	if o.Namespace == "" {
		o.Namespace = e.Namespace
	}
	if o.Dir == "" {
		o.Dir = e.T.TempDir()
	}
	if o.OnError == nil {
		o.OnError = func(err error) { e.T.Errorf("gitops: %v", err) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	g, err := fluxsim.StartGitOps(ctx, e.Config, o)
	if err != nil {
		cancel()
		e.T.Fatal(err)
	}
	// Cleanups run last-registered first: the stand-ins stop before the
	// TempDir holding their repository is removed.
	e.T.Cleanup(func() {
		cancel()
		<-g.Done()
	})
	return g
}

// CreateIdleServices creates n services svc-000... in the Env's namespace,
// each a Deployment of zero replicas on <reg><name>:<tag> with its
// ImageRepository and ImagePolicy tracked by refl, and returns their
// config lines ("  - name: svc-000\n"...). Zero replicas: what benchmarks
// of reads and patches measure, without n fake pods adding noise.
func (e *Env) CreateIdleServices(refl *fluxsim.Reflector, n int, reg, tag string) string {
	e.T.Helper()
	ctx := context.Background()
	var lines strings.Builder
	for i := range n {
		name := fmt.Sprintf("svc-%03d", i)
		img := reg + name + ":" + tag
		d := Deployment{Name: name, Image: img, Replicas: 1}.Object(e.Namespace)
		zero := int32(0)
		d.Spec.Replicas = &zero
		if _, err := e.Kube.AppsV1().Deployments(e.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			e.T.Fatal(err)
		}
		e.CreateImageRepository(fluxsim.V1, e.Namespace, name, reg+name)
		e.CreateImagePolicy(fluxsim.V1, e.Namespace, name, name)
		if err := refl.Track(ctx, name, name, img); err != nil {
			e.T.Fatal(err)
		}
		fmt.Fprintf(&lines, "  - name: %s\n", name)
	}
	return lines.String()
}
