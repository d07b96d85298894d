package manifests

import (
	"fmt"
	"io"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

// Promotion writes what git needs for each promoted service whose
// Deployment Flux applies from git (README, "Promotion under Flux
// GitOps"): the container's image line with the setter marker naming the
// ImagePolicy autodeploy owns for it, and that this ImagePolicy must not
// be in git (Flux would apply and prune it as git's, undoing each
// promotion). image is the image each line shows, by service name ("" or
// absent: a placeholder). It returns how many services it wrote about.
func Promotion(w io.Writer, cfg *config.Config, image map[string]string) int {
	n := 0
	for _, s := range cfg.Services {
		p := s.Promote
		if p == nil {
			continue
		}
		if n == 0 {
			fmt.Fprintln(w, "# What git needs for a promotion under Flux GitOps (autodeploy manifests promotion).")
			fmt.Fprintln(w, "# For each promoted service whose Deployment a Flux Kustomization applies:")
		}
		n++
		img := image[s.Name]
		if img == "" {
			img = "<the image it runs>"
		}
		container := s.Container
		if container == "" {
			container = "<its only container>"
		}
		fmt.Fprintf(w, "#\n# %s: Deployment %s/%s, promoted from %s; in container %s, the image line:\n", s.Name, s.Namespace, s.Deployment, p.From, container)
		fmt.Fprintf(w, "          image: %s # {\"$imagepolicy\": \"%s:%s\"}\n", img, p.PolicyNamespace, p.PolicyName)
		fmt.Fprintf(w, "#   ImagePolicy %s/%s must NOT be in git: autodeploy creates it at the first promotion\n", p.PolicyNamespace, p.PolicyName)
		fmt.Fprintf(w, "#   (label app.kubernetes.io/managed-by: autodeploy) over the ImageRepository of ImagePolicy %s/%s,\n", p.RootPolicyNamespace, p.RootPolicyName)
		fmt.Fprintf(w, "#   and points it at each promoted tag; an ImageUpdateAutomation in namespace %s must update this file.\n", p.PolicyNamespace)
	}
	return n
}
