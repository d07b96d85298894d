package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
	"github.com/autodeploy-dev/autodeploy/internal/manifests"
)

// ReceiverOptions are the inputs of `autodeploy manifests receiver`.
type ReceiverOptions struct {
	Name, Namespace string
	TokenFile       string

	cfg *config.Config
	f   *Factory
}

// Complete reads the config (for its services and flux.namespace) and the
// token file; the cluster is read in Run.
func (o *ReceiverOptions) Complete(f *Factory, _ *cobra.Command, _ []string) error {
	o.f = f
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	o.cfg = cfg
	if o.Namespace == "" {
		o.Namespace = cfg.Flux.Namespace
	}
	return nil
}

// Validate checks the names; the token file is read in Run, so that an
// unreadable one is reported as such and not as a usage error.
func (o *ReceiverOptions) Validate() error {
	if err := (manifests.ReceiverOptions{Name: o.Name, Namespace: o.Namespace}).ValidateNames(); err != nil {
		return &flagError{err}
	}
	return nil
}

func newCmdManifestsReceiver(f *Factory, runF func(context.Context, *ReceiverOptions) error) *cobra.Command {
	o := &ReceiverOptions{Name: "autodeploy"}
	cmd := &cobra.Command{
		Use:   "receiver",
		Short: "A Flux Receiver (and its token's Secret) that rescans the configured ImageRepositories on GitHub's package webhook",
		Long: `Print a Flux Receiver (notification.toolkit.fluxcd.io/v1, type github, events
ping and package) listing the ImageRepositories the configured ImagePolicies
select from (read from the cluster), and the Secret with its token: generated
with crypto/rand, or read from --token-file. An existing Secret is left out,
since the webhook's path derives from its token. stderr says which webhook to
create on GitHub and where its URL comes from; the token is never printed
there.`,
		Example: `  autodeploy manifests receiver | kubectl apply --server-side -f -
  autodeploy manifests receiver --token-file /etc/autodeploy/receiver-token`,
		Args: exactArgs(0, "no arguments"),
		RunE: runE(f, o, runF),
	}
	cmd.Flags().StringVar(&o.Name, "name", o.Name, "name of the Receiver; its Secret is <name>-token")
	cmd.Flags().StringVarP(&o.Namespace, "namespace", "n", "", "namespace of the Receiver and its Secret (default: flux.namespace)")
	cmd.Flags().StringVar(&o.TokenFile, "token-file", "", "file holding the webhook's token (default: a new random one, unless the Secret exists)")
	return cmd
}

// Run reads the ImagePolicies, then prints the manifests on stdout and the
// GitHub setup on stderr.
func (o *ReceiverOptions) Run(ctx context.Context) error {
	c, err := o.f.Clients()
	if err != nil {
		return err
	}
	mo := manifests.ReceiverOptions{Name: o.Name, Namespace: o.Namespace}
	if o.TokenFile != "" {
		if mo.Token, err = (config.Secret{File: o.TokenFile}).Resolve(nil, config.ReadFile); err != nil {
			return &flagError{fmt.Errorf("--token-file: %w", err)}
		}
	}
	api, err := flux.Detect(ctx, c.Kube.Discovery())
	if err != nil {
		return o.unread(c, err)
	}
	mo.RepositoryAPIVersion = flux.ImageGroup + "/" + api.Version
	if mo.Repositories, err = o.repositories(ctx, c, api); err != nil {
		return err
	}
	// A token given replaces the Secret's, whether there is one or not;
	// without one, an existing Secret is kept, and a new one gets 32 bytes
	// of crypto/rand (256 bits, hex: GitHub's secret field takes text).
	if o.TokenFile == "" {
		if mo.SecretExists, err = o.secretExists(ctx, c, mo.SecretName()); err != nil {
			return err
		}
		if !mo.SecretExists {
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			mo.Token = hex.EncodeToString(b)
		}
	}
	if err := manifests.Receiver(o.f.IO.Out, o.cfg, mo); err != nil {
		return &flagError{err}
	}
	manifests.ReceiverSetup(o.f.IO.ErrOut, mo)
	return nil
}

// repositories reads each configured ImagePolicy for the ImageRepository
// it selects from: a GET each, so that a missing one is named with its
// service (a command run by hand, once, can afford a request per service).
func (o *ReceiverOptions) repositories(ctx context.Context, c *kube.Clients, api flux.API) ([]flux.Ref, error) {
	var policies []flux.Policy
	for _, s := range o.cfg.Services {
		if s.PolicyName == "" {
			continue // promoted from another service: no policy of its own
		}
		u, err := c.Dynamic.Resource(api.Policies()).Namespace(s.PolicyNamespace).Get(ctx, s.PolicyName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, withCode(ExitServiceProblem, fmt.Errorf("service %s: ImagePolicy %s/%s not found, so the ImageRepository it selects from is unknown: create it (flux create image policy), or fix imagePolicy in %s", s.Name, s.PolicyNamespace, s.PolicyName, o.cfg.Path))
		}
		if err != nil {
			return nil, o.unread(c, err)
		}
		p := flux.ParsePolicy(u)
		if p.RepoName == "" {
			return nil, withCode(ExitServiceProblem, fmt.Errorf("service %s: ImagePolicy %s has no spec.imageRepositoryRef", s.Name, p.Key()))
		}
		policies = append(policies, p)
	}
	return flux.RepositoriesOf(policies), nil
}

// secretExists asks whether the token's Secret is there. Forbidden is
// not an answer: printing a new token then could break a working
// webhook, so it asks for --token-file instead.
func (o *ReceiverOptions) secretExists(ctx context.Context, c *kube.Clients, name string) (bool, error) {
	_, err := c.Kube.CoreV1().Secrets(o.Namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	case apierrors.IsForbidden(err):
		return false, fmt.Errorf("cannot tell whether Secret %s/%s exists (%w): a new token would change the webhook's path if it does; pass --token-file with its token, or a new one", o.Namespace, name, err)
	}
	return false, o.unread(c, err)
}

// unread says that the Receiver could not be written because the cluster
// could not be read: its resources come from the ImagePolicies there. The
// cause keeps its exit code (3 unreachable or no Flux, 9 forbidden).
func (o *ReceiverOptions) unread(c *kube.Clients, err error) error {
	return fmt.Errorf("cannot write the Receiver: it lists the ImageRepositories the configured ImagePolicies select from, read from the cluster: %w", c.Classify(err))
}
