package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/manifests"
	"github.com/autodeploy-dev/autodeploy/internal/version"
)

func newCmdManifests(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifests",
		Short: "Print what to install next to autodeploy: RBAC, CronJob, Deployment, cron, systemd, Receiver",
		Long: `Print manifests derived from the config: least-privilege RBAC for the
namespaces and Flux objects it names, a CronJob to run autodeploy inside the
cluster or a Deployment to run its watch there, the crontab line and systemd
units to run it (or its watch) on a host, or the Flux Receiver that turns
GitHub's package webhook into a rescan.
Nothing is applied: pipe to 'kubectl apply -f -' or into /etc.`,
	}
	var rbac manifests.RBACOptions
	rbacCmd := &cobra.Command{
		Use:   "rbac",
		Short: "ServiceAccount, Roles and RoleBindings with exactly the permissions autodeploy uses",
		Example: `  autodeploy manifests rbac | kubectl apply -f -
  autodeploy manifests rbac --read-only   # for monitoring that only runs status`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.Config()
			if err != nil {
				return err
			}
			if rbac.Namespace == "" {
				rbac.Namespace = cfg.Flux.Namespace
			}
			if err := manifests.RBAC(f.IO.Out, cfg, rbac); err != nil {
				return &flagError{err}
			}
			return nil
		},
	}
	rbacCmd.Flags().StringVar(&rbac.ServiceAccount, "service-account", "autodeploy", "ServiceAccount name")
	rbacCmd.Flags().StringVarP(&rbac.Namespace, "namespace", "n", "", "namespace of the ServiceAccount (default: flux.namespace)")
	rbacCmd.Flags().BoolVar(&rbac.ReadOnly, "read-only", false, "only what status and history need, for a ServiceAccount <service-account>-read-only")

	cronJobCmd := newCmdInCluster(f, inClusterCmd{
		Use:     "cronjob",
		Short:   "A CronJob running autodeploy in the cluster (config in a ConfigMap, Lease lock, logs to stdout)",
		Example: `  autodeploy manifests cronjob --image registry.local/autodeploy:v1 | kubectl apply -f -`,
		what:    "CronJob",
		write:   manifests.CronJob,
	})
	deploymentCmd := newCmdInCluster(f, inClusterCmd{
		Use:   "deployment",
		Short: "A Deployment running 'autodeploy watch' in the cluster: 2 replicas electing a leader on a Lease, probes",
		Long: `Print the Secret and ConfigMap of 'manifests cronjob' and a Deployment running
'autodeploy watch --probe-address :8080' in the CronJob's pod: two replicas
that elect a leader on a Lease named lock.leaseName plus "-watch"
(autodeploy-watch by default; the other replica takes over within
lock.leaseDuration), probed on /healthz and /readyz. The config must
use lock.type: lease, as every host running it must then: the pods act under
the Lease. The CronJob may stay, as the safety net: its run skips while the
watch acts, or makes the same pass.`,
		Example: `  autodeploy manifests rbac | kubectl apply -f -
  autodeploy manifests deployment --image registry.local/autodeploy:v1 | kubectl apply -f -`,
		what:  "Deployment",
		write: manifests.Deployment,
	})

	var host manifests.HostOptions
	cronCmd := &cobra.Command{
		Use:   "cron",
		Short: "The /etc/cron.d line running autodeploy on the configured schedule",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.Config()
			if err != nil {
				return err
			}
			if err := manifests.Cron(f.IO.Out, cfg, host); err != nil {
				return &flagError{err}
			}
			return nil
		},
	}
	var watch bool
	systemdCmd := &cobra.Command{
		Use:   "systemd",
		Short: "autodeploy.service and autodeploy.timer, the alternative to cron; --watch: autodeploy-watch.service",
		Example: `  autodeploy manifests systemd --binary /usr/bin/autodeploy
  autodeploy manifests systemd --watch | sudo tee /etc/systemd/system/autodeploy-watch.service
  sudo systemctl daemon-reload && sudo systemctl enable --now autodeploy-watch`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.Config()
			if err != nil {
				return err
			}
			write := manifests.Systemd
			if watch {
				write = manifests.SystemdWatch
			}
			if err := write(f.IO.Out, cfg, host); err != nil {
				return &flagError{err}
			}
			return nil
		},
	}
	for _, c := range []*cobra.Command{cronCmd, systemdCmd} {
		c.Flags().StringVar(&host.Binary, "binary", "/usr/local/bin/autodeploy", "path of the autodeploy binary")
		c.Flags().StringVar(&host.User, "user", "root", "user the job runs as (it needs the kubeconfig, the log and the lock)")
	}
	systemdCmd.Flags().BoolVar(&watch, "watch", false, "the service that keeps 'autodeploy watch' running instead of the timer's service and timer")
	cronCmd.Flags().BoolVar(&host.IfInstalled, "if-installed", false, "run only while the binary exists (for a package's cron.d file, which outlives a removal)")
	cmd.AddCommand(rbacCmd, cronJobCmd, deploymentCmd, cronCmd, systemdCmd, newCmdManifestsReceiver(f, nil), newCmdManifestsPromotion(f, nil))
	return cmd
}

// inClusterCmd is what differs between the commands that print autodeploy
// in the cluster (cronjob, deployment): the rest, the image, namespace and
// ServiceAccount flags included, is newCmdInCluster's.
type inClusterCmd struct {
	Use, Short, Long, Example string
	what                      string // the object, in the help
	write                     func(io.Writer, *config.Config, manifests.CronJobOptions) error
}

// InClusterOptions are the inputs of `manifests cronjob` and `manifests
// deployment`.
type InClusterOptions struct {
	manifests.CronJobOptions

	f        *Factory
	cfg      *config.Config
	imageSet bool // --image given, if blank: manifests says why that is no image
	write    func(io.Writer, *config.Config, manifests.CronJobOptions) error
}

// Complete reads the config, whose flux.namespace is the default namespace.
func (o *InClusterOptions) Complete(f *Factory, cmd *cobra.Command, args []string) error {
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	o.f, o.cfg, o.imageSet = f, cfg, cmd.Flags().Changed("image")
	if o.Namespace == "" {
		o.Namespace = cfg.Flux.Namespace
	}
	return nil
}

// Validate asks a development build for the image it has none of.
func (o *InClusterOptions) Validate() error {
	if o.Image == "" && !o.imageSet {
		return &flagError{fmt.Errorf("this development build (%s) has no published image: pass --image (make release writes one to dist/, see the README's Install)", version.Version)}
	}
	return nil
}

// Run prints the manifests; what the config or flags make impossible is a
// usage error.
func (o *InClusterOptions) Run(context.Context) error {
	if err := o.write(o.f.IO.Out, o.cfg, o.CronJobOptions); err != nil {
		return &flagError{err}
	}
	return nil
}

func newCmdInCluster(f *Factory, c inClusterCmd) *cobra.Command {
	o := &InClusterOptions{write: c.write}
	cmd := &cobra.Command{
		Use:     c.Use,
		Short:   c.Short,
		Long:    c.Long,
		Example: c.Example,
		Args:    exactArgs(0, "no arguments"),
		RunE:    runE(f, o, nil),
	}
	// A release names its own image, whose autodeploy reads the same config
	// format; a development build has none to name.
	cmd.Flags().StringVar(&o.Image, "image", version.Image(), "container image of autodeploy; a release defaults to its own, "+version.ImageRepository+" tagged with its version, a development build needs this flag")
	cmd.Flags().StringVarP(&o.Namespace, "namespace", "n", "", "namespace of the "+c.what+" (default: flux.namespace)")
	cmd.Flags().StringVar(&o.ServiceAccount, "service-account", "autodeploy", "ServiceAccount of 'manifests rbac', which the "+c.what+" runs as")
	return cmd
}
