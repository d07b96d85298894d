package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/image"
	"github.com/autodeploy-dev/autodeploy/internal/manifests"
)

// PromotionManifestOptions are the inputs of `autodeploy manifests
// promotion`.
type PromotionManifestOptions struct {
	// Images are the images the lines show, service=image (default: a
	// placeholder).
	Images map[string]string

	cfg *config.Config
	f   *Factory
}

// Complete reads the config.
func (o *PromotionManifestOptions) Complete(f *Factory, _ *cobra.Command, _ []string) error {
	o.f = f
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	o.cfg = cfg
	return nil
}

// Validate checks that each --image names a promoted service and an image
// reference: the line goes into git, where a second setter marker or a
// line break in it would be read too (issue 18, sixth pass).
func (o *PromotionManifestOptions) Validate() error {
	var promoted []string
	for _, s := range o.cfg.Services {
		if s.Promote != nil {
			promoted = append(promoted, s.Name)
		}
	}
	list := strings.Join(promoted, ", ")
	if list == "" {
		list = "none"
	}
	for name, img := range o.Images {
		// The names that would do are said: a blank one read "--image
		// =...:  is not a promoted service" (issue 18, ninth pass).
		if strings.TrimSpace(name) == "" {
			return &flagError{fmt.Errorf("--image %s=%s names no service before \"=\" (service=image; promoted: %s)", name, img, list)}
		}
		s, ok := o.cfg.Service(name)
		if !ok || s.Promote == nil {
			return &flagError{fmt.Errorf("--image %s=...: %s is not a promoted service of the config (promoted: %s)", name, strconv.Quote(name), list)}
		}
		if _, err := image.Parse(img); err != nil && img != "" {
			return &flagError{fmt.Errorf("invalid --image %s=%q: %v", name, img, err)}
		}
	}
	return nil
}

func newCmdManifestsPromotion(f *Factory, runF func(context.Context, *PromotionManifestOptions) error) *cobra.Command {
	o := &PromotionManifestOptions{}
	cmd := &cobra.Command{
		Use:   "promotion",
		Short: "What git needs for each promoted service that Flux applies from git: its image line's setter marker",
		Long: `Print, for each promoted service (config promote), the image line its
Deployment's manifest in git needs when a Flux Kustomization applies it: the
setter marker naming the ImagePolicy autodeploy owns for the service
(promote.imagePolicy, default autodeploy-<service>), so that the
ImageUpdateAutomation writes each promoted tag to git. That ImagePolicy must
not be in git: autodeploy creates it at the first promotion.`,
		Example: `  autodeploy manifests promotion
  autodeploy manifests promotion --image api-gateway=ghcr.io/acme/api-gateway:sha-1a2b3c4`,
		Args: exactArgs(0, "no arguments"),
		RunE: runE(f, o, runF),
	}
	cmd.Flags().StringToStringVar(&o.Images, "image", nil, "service=image: the image its line shows (default: a placeholder)")
	return cmd
}

// Run prints the lines on stdout; without promoted services, says so on
// stderr.
func (o *PromotionManifestOptions) Run(context.Context) error {
	if manifests.Promotion(o.f.IO.Out, o.cfg, o.Images) == 0 {
		fmt.Fprintln(o.f.IO.ErrOut, "no service of the config is promoted (config promote): git needs nothing more")
	}
	return nil
}
