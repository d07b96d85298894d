package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/image"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
	"github.com/autodeploy-dev/autodeploy/internal/ui"
)

// Revision is one line of `autodeploy history`, and its JSON form.
type Revision struct {
	Revision    int64     `json:"revision"`
	Image       string    `json:"image"`
	ChangeCause string    `json:"changeCause,omitempty"`
	Created     time.Time `json:"created"`
	Current     bool      `json:"current"`
	Failed      bool      `json:"failed"`
	ReplicaSet  string    `json:"replicaSet"`
}

// HistoryOptions are the inputs of `autodeploy history`.
type HistoryOptions struct {
	Service string
	Output  string

	f *Factory
}

// Complete fills what the arguments give.
func (o *HistoryOptions) Complete(f *Factory, cmd *cobra.Command, args []string) error {
	o.f, o.Service = f, args[0]
	return nil
}

// Validate checks the inputs before anything is read.
func (o *HistoryOptions) Validate() error {
	if err := validServiceArg(o.Service); err != nil {
		return err
	}
	if o.Output != "" && o.Output != "json" {
		return &flagError{fmt.Errorf("invalid --output %q: only json is supported", o.Output)}
	}
	return nil
}

func newCmdHistory(f *Factory, runF func(context.Context, *HistoryOptions) error) *cobra.Command {
	o := &HistoryOptions{}
	cmd := &cobra.Command{
		Use:   "history <service>",
		Short: "List a service's revisions as 'kubectl rollout history' sees them",
		Long: `List the revisions of a service's Deployment, from the ReplicaSets it controls,
as 'kubectl rollout history' sees them: revision, image, change-cause, when
it was created, which one is current, and which image autodeploy remembers
as failed. 'autodeploy rollback <service> --to-revision N' restores one.`,
		Args:              exactArgs(1, "exactly one service name"),
		ValidArgsFunction: serviceCompletion(f),
		RunE:              runE(f, o, runF),
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "json")
	_ = cmd.RegisterFlagCompletionFunc("output", fixedValues("json"))
	return cmd
}

// Run prints the revisions.
func (o *HistoryOptions) Run(ctx context.Context) error {
	f, output := o.f, o.Output
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	s, err := lookupService(cfg, o.Service)
	if err != nil {
		return err
	}
	clients, err := f.Clients()
	if err != nil {
		return err
	}
	d, err := clients.Kube.AppsV1().Deployments(s.Namespace).Get(ctx, s.Deployment, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return withCode(ExitServiceProblem, &deploy.ErrNotFound{Namespace: s.Namespace, Name: s.Deployment})
	}
	if err != nil {
		return clients.Classify(fmt.Errorf("deployment %s/%s: %w", s.Namespace, s.Deployment, err))
	}
	owned, err := rollout.ListOwned(ctx, clients.Kube, d)
	if err != nil {
		return clients.Classify(err)
	}
	container, err := deploy.ResolveContainer(d, s.Container)
	if err != nil {
		return withCode(ExitServiceProblem, err)
	}
	revs := revisions(d, owned, container)
	if output == "json" {
		enc := json.NewEncoder(f.IO.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(revs)
	}
	// Change causes are annotations, anyone's who may annotate: escaped.
	revs = ui.Escaped(revs)
	rows := [][]string{{"REVISION", "IMAGE", "CREATED", "CHANGE-CAUSE"}}
	for i := len(revs) - 1; i >= 0; i-- { // oldest first, as kubectl lists
		r := revs[i]
		rev := fmt.Sprint(r.Revision)
		if r.Current {
			rev = ui.Green.Sprintf("%s (current)", rev)
		}
		img := r.Image
		if r.Failed {
			img = ui.Red.Sprintf("%s (failed)", img)
		}
		cause := r.ChangeCause
		if cause == "" {
			cause = "<none>"
		}
		rows = append(rows, []string{rev, img, r.Created.UTC().Format("2006-01-02 15:04"), cause})
	}
	return ui.Table(f.IO.Out, "", rows)
}

// revisions lists d's ReplicaSets newest first, marking the current one and
// the one whose image autodeploy remembers as failed.
func revisions(d *appsv1.Deployment, owned []*appsv1.ReplicaSet, container string) []Revision {
	cur := rollout.Current(d, owned)
	failed, hasFailed := deploy.ParseFailedImage(d.Annotations)
	var out []Revision
	for _, rs := range owned {
		name := container
		if name == "" && len(rs.Spec.Template.Spec.Containers) > 0 {
			name = rs.Spec.Template.Spec.Containers[0].Name
		}
		img, _ := rollout.ContainerImage(&rs.Spec.Template, name)
		out = append(out, Revision{
			Revision: rollout.Revision(rs), Image: img, ChangeCause: rs.Annotations[rollout.ChangeCauseAnnotation],
			Created: rs.CreationTimestamp.UTC(), Current: rs == cur, ReplicaSet: rs.Name,
			Failed: hasFailed && image.SameString(img, failed.Image),
		})
	}
	return out
}
