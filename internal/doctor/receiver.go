package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
	"github.com/autodeploy-dev/autodeploy/internal/status"
)

// receivers checks that a Ready Flux Receiver lists every ImageRepository
// the configured ImagePolicies select from, so that a registry's webhook
// reaches each at once. Runs from cron rescan by themselves: no Receiver
// CRD, or no Receiver for any of them, is a warning. A Receiver that is
// set up but misses a repository or is not Ready fails: its webhook
// silently does nothing for that repository.
func receivers(ctx context.Context, r *Report, cfg *config.Config, c *kube.Clients, api flux.API, objs status.Objects) {
	var policies []flux.Policy
	for _, s := range cfg.Services {
		if u := objs.Policies[s.PolicyNamespace+"/"+s.PolicyName]; u != nil {
			policies = append(policies, flux.ParsePolicy(u))
		}
	}
	repos := flux.RepositoriesOf(policies)
	if len(repos) == 0 {
		return // the services' lines say why
	}
	cov, err := flux.ReceiverCoverage(ctx, c.Dynamic, api, cfg.Flux.Namespace, repos)
	switch {
	case err != nil:
		r.add("receiver", Warn, "cannot check the Receivers: "+c.Classify(err).Error(),
			fmt.Sprintf("grant list on receivers.%s in %s to this kubeconfig's user", flux.NotificationGroup, strings.Join(flux.ReceiverNamespaces(cfg.Flux.Namespace, repos), ", ")))
		return
	case !cov.Installed:
		r.add("receiver", Warn, fmt.Sprintf("the cluster serves no Flux Receiver (%s): a pushed image waits for its ImageRepository's scan interval (fine for runs from cron, which ask for a rescan)", flux.ReceiverGVR.GroupVersion()),
			"install Flux's notification-controller (part of flux install), then "+flux.ReceiverFix)
		return
	case cov.All():
		var names []string
		for _, repo := range repos {
			if n := cov.Covered[repo]; !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		r.add("receiver", OK, fmt.Sprintf("Receiver %s lists every configured ImageRepository (%s) and is Ready: a webhook reaches Flux at once", strings.Join(names, ", "), flux.RefList(repos)), "")
		return
	case len(cov.Covered) == 0 && len(cov.NotReady) == 0:
		r.add("receiver", Warn, fmt.Sprintf("no Receiver lists the ImageRepositories %s: a pushed image waits for their scan interval (fine for runs from cron, which ask for a rescan)", flux.RefList(repos)), flux.ReceiverFix)
		return
	}
	// Set up, but not for everything: one line per Receiver that is not
	// Ready, one for the repositories no Receiver lists.
	notReady := map[string][]flux.Ref{}
	var order, missing []flux.Ref
	var receiversNotReady []string
	for _, repo := range cov.Uncovered {
		keys := cov.NotReady[repo]
		if len(keys) == 0 {
			missing = append(missing, repo)
			continue
		}
		order = append(order, repo)
		for _, k := range keys {
			if !slices.Contains(receiversNotReady, k) {
				receiversNotReady = append(receiversNotReady, k)
			}
			notReady[k] = append(notReady[k], repo)
		}
	}
	msgs := map[string]string{}
	for _, rc := range cov.Receivers {
		msgs[rc.Key()] = rc.Message
	}
	for _, k := range receiversNotReady {
		ref := flux.ParseRef(k)
		r.add("receiver", Fail, fmt.Sprintf("Receiver %s (for %s) is not Ready: %s", k, flux.RefList(notReady[k]), msgs[k]),
			fmt.Sprintf("kubectl -n %s describe receiver %s (its Secret must hold the token; is notification-controller running?)", ref.Namespace, ref.Name))
	}
	if len(missing) > 0 {
		what := "ImageRepository"
		if len(missing) > 1 {
			what = "ImageRepositories"
		}
		r.add("receiver", Fail, fmt.Sprintf("no Ready Receiver lists the %s %s: a webhook does not reach it, and a pushed image waits for its scan interval", what, flux.RefList(missing)), flux.ReceiverFix)
	}
}
