package kubetest

import (
	"context"

	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
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
