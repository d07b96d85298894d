package deploy

import (
	appsv1 "k8s.io/api/apps/v1"

	"github.com/autodeploy-dev/autodeploy/internal/image"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// Ownership is whose rollout a Deployment shows for one container: the one
// place a run decides whether the image live now is autodeploy's own
// (issue 17). It is read from the Deployment alone: the managedFields
// owner of the container's image and autodeploy's deployed-image mark.
type Ownership struct {
	// Image is the container's image in the Deployment's template.
	Image string
	// Writer is the field manager that owns the image (rollout.ImageOwner):
	// "" when managedFields do not tell (stripped, or a client that sends
	// no field manager).
	Writer string
	// Deployed is the image autodeploy's last patch set (AnnDeployedImage),
	// "" when it never deployed here.
	Deployed string
}

// Ours reads whose rollout d shows for container. Decoding managedFields is
// the costliest part of a plan: callers that may not need it read it once,
// lazily (plan).
func Ours(d *appsv1.Deployment, container string) Ownership {
	img, _ := rollout.ContainerImage(&d.Spec.Template, container)
	return Ownership{Image: img, Writer: rollout.ImageOwner(d, container), Deployed: d.Annotations[AnnDeployedImage]}
}

// Ours reports whether the rollout is autodeploy's own: its mark names the
// image running, and no other manager wrote the image since. An unknown
// writer counts as autodeploy when the mark matches: kubectl rollout undo
// copies a ReplicaSet's annotations back, but it also takes the image
// field, so an undo always shows its writer when managedFields exist.
func (o Ownership) Ours() bool {
	return o.Deployed != "" && image.SameString(o.Deployed, o.Image) && (o.Writer == "" || o.Writer == rollout.FieldManager)
}

// By names whoever else set the image: "" when autodeploy did, or when
// nothing tells.
func (o Ownership) By() string {
	if o.Writer == rollout.FieldManager {
		return ""
	}
	return o.Writer
}
