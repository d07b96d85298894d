package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/manifests"
	"github.com/autodeploy-dev/autodeploy/internal/version"
)

func newCmdManifests(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifests",
		Short: "Print what to install next to autodeploy: RBAC, CronJob, cron, systemd, Receiver",
		Long: `Print manifests derived from the config: least-privilege RBAC for the
namespaces and Flux objects it names, a CronJob to run autodeploy inside the
cluster, the crontab line and systemd units to run it on a host, or the
Flux Receiver that turns GitHub's package webhook into a rescan.
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

	var cj manifests.CronJobOptions
	cronJobCmd := &cobra.Command{
		Use:     "cronjob",
		Short:   "A CronJob running autodeploy in the cluster (config in a ConfigMap, Lease lock, logs to stdout)",
		Example: `  autodeploy manifests cronjob --image registry.local/autodeploy:v1 | kubectl apply -f -`,
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.Config()
			if err != nil {
				return err
			}
			if cj.Namespace == "" {
				cj.Namespace = cfg.Flux.Namespace
			}
			if !cmd.Flags().Changed("image") && cj.Image == "" {
				return &flagError{fmt.Errorf("this development build (%s) has no published image: pass --image (make release writes one to dist/, see the README's Install)", version.Version)}
			}
			if err := manifests.CronJob(f.IO.Out, cfg, cj); err != nil {
				return &flagError{err}
			}
			return nil
		},
	}
	// A release names its own image, whose autodeploy reads the same config
	// format; a development build has none to name.
	cronJobCmd.Flags().StringVar(&cj.Image, "image", version.Image(), "container image of autodeploy; a release defaults to its own, "+version.ImageRepository+" tagged with its version, a development build needs this flag")
	cronJobCmd.Flags().StringVarP(&cj.Namespace, "namespace", "n", "", "namespace of the CronJob (default: flux.namespace)")
	cronJobCmd.Flags().StringVar(&cj.ServiceAccount, "service-account", "autodeploy", "ServiceAccount of 'manifests rbac', which the CronJob runs as")

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
	systemdCmd := &cobra.Command{
		Use:   "systemd",
		Short: "autodeploy.service and autodeploy.timer, the alternative to cron",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.Config()
			if err != nil {
				return err
			}
			if err := manifests.Systemd(f.IO.Out, cfg, host); err != nil {
				return &flagError{err}
			}
			return nil
		},
	}
	for _, c := range []*cobra.Command{cronCmd, systemdCmd} {
		c.Flags().StringVar(&host.Binary, "binary", "/usr/local/bin/autodeploy", "path of the autodeploy binary")
		c.Flags().StringVar(&host.User, "user", "root", "user the job runs as (it needs the kubeconfig, the log and the lock)")
	}
	cronCmd.Flags().BoolVar(&host.IfInstalled, "if-installed", false, "run only while the binary exists (for a package's cron.d file, which outlives a removal)")
	cmd.AddCommand(rbacCmd, cronJobCmd, cronCmd, systemdCmd, newCmdManifestsReceiver(f, nil))
	return cmd
}
