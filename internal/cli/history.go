package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
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
	// Promotion says whence a promoted service's revision came (config
	// promote), and who asked and why for `autodeploy promote`.
	Promotion *deploy.Promotion `json:"promotion,omitempty"`
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
as failed; for a promoted service, whence each revision was promoted, and
who asked and why for 'autodeploy promote'. 'autodeploy rollback <service>
--to-revision N' restores one.`,
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
		return writeJSON(f.IO.Out, revs)
	}
	return writeHistory(f.IO.Out, revs)
}

// writeHistory prints revs (newest first) as a table, oldest first as
// kubectl lists them, with a PROMOTED column when a revision was promoted.
func writeHistory(w io.Writer, revs []Revision) error {
	// Change causes are annotations, anyone's who may annotate: escaped.
	revs = ui.Escaped(revs)
	promoted := slices.ContainsFunc(revs, func(r Revision) bool { return r.Promotion != nil })
	head := []string{"REVISION", "IMAGE", "CREATED", "CHANGE-CAUSE"}
	if promoted {
		head = []string{"REVISION", "IMAGE", "CREATED", "PROMOTED", "CHANGE-CAUSE"}
	}
	rows := [][]string{head}
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
		row := []string{rev, img, r.Created.UTC().Format("2006-01-02 15:04"), cause}
		if promoted {
			row = slices.Insert(row, 3, promotionText(r.Promotion))
		}
		rows = append(rows, row)
	}
	return ui.Table(w, "", rows)
}

// promotionText is a revision's PROMOTED cell: "from staging", with who
// and why for `autodeploy promote`.
func promotionText(p *deploy.Promotion) string {
	switch {
	case p == nil:
		return "-"
	case p.By == "":
		return "from " + p.From
	case p.Reason == "":
		return fmt.Sprintf("from %s by %s", p.From, p.By)
	}
	return fmt.Sprintf("from %s by %s: %s", p.From, p.By, p.Reason)
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
		r := Revision{
			Revision: rollout.Revision(rs), Image: img, ChangeCause: rs.Annotations[rollout.ChangeCauseAnnotation],
			Created: rs.CreationTimestamp.UTC(), Current: rs == cur, ReplicaSet: rs.Name,
			Failed: hasFailed && image.SameString(img, failed.Image),
		}
		if p, ok := deploy.ParsePromotion(rs.Annotations, img); ok {
			r.Promotion = &p
		}
		out = append(out, r)
	}
	return out
}
