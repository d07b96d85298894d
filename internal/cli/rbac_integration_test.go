//go:build integration

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/autodeploy-dev/autodeploy/internal/access"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
	"github.com/autodeploy-dev/autodeploy/internal/status"
)

// rbacEnv is a namespace holding a service, its Flux objects, a
// Kustomization that manages it, and a lease-locked config, so that every
// rule of internal/access applies in this one namespace.
type rbacEnv struct {
	e       *kubetest.Env
	refl    *fluxsim.Reflector
	cfg     string
	deploys int
}

func newRBACEnv(t *testing.T) *rbacEnv {
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, "lock: {type: lease, leaseNamespace: "+e.Namespace+"}\n")
	ctx := context.Background()
	// prod is promoted from api under GitOps (its Deployment applied by
	// the same Kustomization): the promotion lever's rules. promote.after
	// keeps runs from promoting it: only the scenarios that need it do.
	if err := appendFile(cfg, "  - name: prod\n    promote: {from: api, after: 24h}\n"); err != nil {
		t.Fatal(err)
	}
	// It runs what api is deployed to, so that status, which counts a
	// promotion still waiting as not up to date (exit 8), finds it up to
	// date once api runs sha-2.
	e.CreateDeployment(kubetest.Deployment{Name: "prod", Image: reg + "api:sha-2"})
	ks := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
		"metadata": map[string]any{"name": "apps", "namespace": e.Namespace},
		"spec":     map[string]any{"interval": "10m", "path": "./apps", "prune": true, "sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}},
	}}
	if _, err := e.Dynamic.Resource(flux.KustomizationGVR).Namespace(e.Namespace).Create(ctx, ks, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := []byte(`{"metadata":{"labels":{"kustomize.toolkit.fluxcd.io/name":"apps","kustomize.toolkit.fluxcd.io/namespace":"` + e.Namespace + `"}}}`)
	for _, d := range []string{"api", "prod"} {
		if _, err := e.Kube.AppsV1().Deployments(e.Namespace).Patch(ctx, d, types.MergePatchType, labels, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The automation that writes the policy's tag to git: without it,
	// status rightly reports that Flux reverts every deploy.
	automations := fluxsim.V1.GVR("imageupdateautomations")
	ua := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageUpdateAutomation",
		"metadata": map[string]any{"name": "flux-system", "namespace": e.Namespace},
		"spec": map[string]any{"interval": "1m", "sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"},
			"git":    map[string]any{"commit": map[string]any{"author": map[string]any{"name": "fluxcdbot", "email": "fluxcdbot@users.noreply.github.com"}}},
			"update": map[string]any{"path": "./apps", "strategy": "Setters"}},
	}}
	created, err := e.Dynamic.Resource(automations).Namespace(e.Namespace).Create(ctx, ua, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Object["status"] = map[string]any{"observedGeneration": created.GetGeneration(), "conditions": []any{map[string]any{
		"type": "Ready", "status": "True", "reason": "Succeeded", "message": "repository up-to-date", "lastTransitionTime": "2026-11-25T10:00:00Z", "observedGeneration": created.GetGeneration()}}}
	if _, err := e.Dynamic.Resource(automations).Namespace(e.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	settledName(t, e, "api")
	return &rbacEnv{e: e, refl: refl, cfg: cfg}
}

// setObserved writes the automation's status.observedPolicies (nil: the
// field goes, as with Flux < 2.3, and runs do not wait for it).
func (r *rbacEnv) setObserved(t *testing.T, observed map[string]any) {
	t.Helper()
	res := r.e.Dynamic.Resource(fluxsim.V1.GVR("imageupdateautomations")).Namespace(r.e.Namespace)
	u, err := res.Get(context.Background(), "flux-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if observed == nil {
		unstructured.RemoveNestedField(u.Object, "status", "observedPolicies")
	} else if err := unstructured.SetNestedMap(u.Object, observed, "status", "observedPolicies"); err != nil {
		t.Fatal(err)
	}
	if _, err := res.UpdateStatus(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// apply creates what `autodeploy manifests rbac` prints, and returns a
// kubeconfig authenticating as its ServiceAccount with a bound token, as a
// pod or a cron host would.
func (r *rbacEnv) apply(t *testing.T, args ...string) (kubeconfig string, roles []*rbacv1.Role) {
	t.Helper()
	ctx := context.Background()
	e := r.e
	code, out, stderr := execute(t, nil, append([]string{"manifests", "rbac", "--config", r.cfg, "-n", e.Namespace}, args...)...)
	if code != ExitOK {
		t.Fatalf("manifests rbac: %d %s", code, stderr)
	}
	sa := ""
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(out)), 4096)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			break
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(raw, nil, nil)
		if err != nil {
			t.Fatalf("decode %s: %v", raw, err)
		}
		switch o := obj.(type) {
		case *rbacv1.Role:
			if _, err = e.Kube.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{}); err == nil {
				roles = append(roles, o)
			}
		case *rbacv1.RoleBinding:
			_, err = e.Kube.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ServiceAccount:
			sa = o.Name
			_, err = e.Kube.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("unexpected object %T in the RBAC manifests", o)
		}
		if err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("apply: %v", err)
		}
	}
	tok, err := e.Kube.CoreV1().ServiceAccounts(e.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig = writeTokenKubeconfig(t, e, tok.Status.Token)
	// The API server's RBAC authorizer learns of new Roles through its
	// informers: a request right after the create may still be refused
	// (CI saw the first run's get leases refused on 1.28/kine). Wait
	// until every rule is granted.
	for _, role := range roles {
		for _, rule := range role.Rules {
			name := ""
			if len(rule.ResourceNames) > 0 {
				name = rule.ResourceNames[0]
			}
			for _, res := range rule.Resources {
				for _, verb := range rule.Verbs {
					waitAccessNamed(t, kubeconfig, rule.APIGroups[0], res, verb, role.Namespace, name, true)
				}
			}
		}
	}
	return kubeconfig, roles
}

func writeTokenKubeconfig(t *testing.T, e *kubetest.Env, token string) string {
	t.Helper()
	admin, err := clientcmd.LoadFromFile(e.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var server string
	var ca []byte
	for _, c := range admin.Clusters {
		server, ca = c.Server, c.CertificateAuthorityData
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "sa", Namespace: e.Namespace}
	cfg.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// The generated RBAC is enough for every command, and the read-only
// variant for status, not run.
func TestRBACIsEnough(t *testing.T) {
	r := newRBACEnv(t)
	kc, _ := r.apply(t)
	as := func(args ...string) (ExitCode, string, string) {
		return execute(t, map[string]string{"AUTODEPLOY_LOCK_IDENTITY": "rbac-test"}, append(args, "--config", r.cfg, "--kubeconfig", kc)...)
	}
	r.refl.Push("api", reg+"api:sha-2")
	steps := []struct {
		args []string
		want ExitCode
	}{
		{[]string{"doctor"}, ExitOK},
		{[]string{"run"}, ExitOK},
		{[]string{"status"}, ExitOK},
		{[]string{"history", "api"}, ExitOK},
		{[]string{"rollback", "api"}, ExitOK},
		{[]string{"resume", "api"}, ExitOK},
		{[]string{"hold", "api", "--reason", "x"}, ExitOK},
		{[]string{"resume", "api", "--forget-failed"}, ExitOK},
		{[]string{"forget", "api", "--dry-run"}, ExitOK},
		{[]string{"forget", "api"}, ExitOK},
		{[]string{"run"}, ExitOK},
	}
	for _, s := range steps {
		// Each command may bump the generation (annotations count): let the
		// controller observe it, so status judges a settled Deployment.
		settledName(t, r.e, "api")
		if code, out, stderr := as(s.args...); code != s.want {
			t.Fatalf("%v as the ServiceAccount: exit %d, want %d\n%s%s", s.args, code, s.want, out, stderr)
		}
	}
	if img := kubetest.Image(r.e.GetDeployment("api")); img != reg+"api:sha-2" {
		t.Fatalf("image = %s", img)
	}

	ro, _ := r.apply(t, "--read-only")
	settledName(t, r.e, "api")
	if code, out, stderr := execute(t, nil, "status", "--config", r.cfg, "--kubeconfig", ro); code != ExitOK {
		t.Fatalf("status read-only: exit %d\n%s%s", code, out, stderr)
	}
	r.refl.Push("api", reg+"api:sha-3")
	code, _, stderr := execute(t, nil, "run", "--config", r.cfg, "--kubeconfig", ro)
	if code != ExitForbidden || !strings.Contains(stderr, "forbidden") || !strings.Contains(stderr, "leases") {
		t.Fatalf("run read-only: exit %d, want %d naming the missing permission: %s", code, ExitForbidden, stderr)
	}
	code, out, _ := execute(t, nil, "doctor", "--config", r.cfg, "--kubeconfig", ro)
	if code != ExitError || !strings.Contains(out, "run cannot: ") || !strings.Contains(out, "patch deployments.apps in "+r.e.Namespace) {
		t.Fatalf("doctor read-only: exit %d\n%s", code, out)
	}
}

// status under the read-only RBAC shows the run that holds the Lease; and
// without get leases it says that it cannot tell, naming the refusal,
// instead of showing no run in progress (issue 18, item 6).
func TestRBACReadOnlyStatusReadsTheLease(t *testing.T) {
	r := newRBACEnv(t)
	ro, roles := r.apply(t, "--read-only")
	if len(roles) != 1 {
		t.Fatalf("roles = %d, want one", len(roles))
	}
	ctx := context.Background()
	holder, secs, now := "host-x/42", int32(300), metav1.NewMicroTime(time.Now())
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "autodeploy", Namespace: r.e.Namespace, Annotations: map[string]string{"autodeploy.dev/lock-command": "autodeploy run r9"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now}}
	if _, err := r.e.Kube.CoordinationV1().Leases(r.e.Namespace).Create(ctx, l, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	settledName(t, r.e, "api")
	readStatus := func() (ExitCode, string, *status.Report) {
		// api alone: prod waits for a promotion from api that no run
		// verified here (exit 8); what this test reads is the Lease.
		code, out, stderr := execute(t, nil, "status", "api", "-o", "json", "--config", r.cfg, "--kubeconfig", ro)
		var rep status.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("status -o json: exit %d %v\n%s%s", code, err, out, stderr)
		}
		return code, out, &rep
	}
	code, out, rep := readStatus()
	if code != ExitOK || rep.RunInProgress == nil || !strings.Contains(rep.RunInProgress.Command, "host-x/42: autodeploy run r9") || rep.RunInProgressError != "" {
		t.Fatalf("status read-only with a held Lease: exit %d\n%s", code, out)
	}

	// The read-only Role of an older autodeploy: no get leases.
	role := roles[0]
	cur, err := r.e.Kube.RbacV1().Roles(role.Namespace).Get(ctx, role.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var kept []rbacv1.PolicyRule
	for _, rule := range cur.Rules {
		if rule.Resources[0] != "leases" {
			kept = append(kept, rule)
		}
	}
	if len(kept) != len(cur.Rules)-1 {
		t.Fatalf("the read-only Role has %d lease rules, want get alone", len(cur.Rules)-len(kept))
	}
	cur.Rules = kept
	if _, err := r.e.Kube.RbacV1().Roles(role.Namespace).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAccess(t, ro, "coordination.k8s.io", "leases", "get", r.e.Namespace, false)
	code, out, rep = readStatus()
	if rep.RunInProgress != nil || !strings.Contains(rep.RunInProgressError, "forbidden") || !strings.Contains(rep.RunInProgressError, `cannot get resource "leases"`) ||
		!strings.Contains(rep.RunInProgressError, "manifests rbac") {
		t.Fatalf("status without get leases: exit %d\n%s", code, out)
	}
	code, text, stderr := execute(t, nil, "status", "api", "--config", r.cfg, "--kubeconfig", ro)
	if !strings.Contains(text, "running    unknown: cannot read Lease "+r.e.Namespace+"/autodeploy") {
		t.Fatalf("status text without get leases: exit %d\n%s%s", code, text, stderr)
	}
}

// Every rule is needed: without it, the command the rule names fails (or,
// for the rescan, warns) and says "forbidden".
func TestRBACEveryRuleIsNeeded(t *testing.T) {
	r := newRBACEnv(t)
	kc, roles := r.apply(t)
	if len(roles) != 1 {
		t.Fatalf("roles = %d, want one (everything lives in one namespace)", len(roles))
	}
	full := roles[0]
	ctx := context.Background()
	// Every scenario starts from the same state: api at sha-1 after one run
	// (so a Lease exists), nothing held.
	as := func(args ...string) (ExitCode, string) {
		code, out, stderr := execute(t, map[string]string{"AUTODEPLOY_LOCK_IDENTITY": "rbac-test"}, append(args, "--config", r.cfg, "--kubeconfig", kc)...)
		return code, out + stderr
	}
	if code, out := as("run"); code != ExitOK {
		t.Fatalf("first run: %d %s", code, out)
	}
	n := 0
	for i, rule := range full.Rules {
		name := fmt.Sprintf("%s/%s", rule.Resources[0], rule.Verbs[0])
		t.Run(name, func(t *testing.T) {
			without := full.DeepCopy()
			without.Rules = append(append([]rbacv1.PolicyRule{}, full.Rules[:i]...), full.Rules[i+1:]...)
			if _, err := r.e.Kube.RbacV1().Roles(full.Namespace).Update(ctx, without, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			// The API server's authorizer sees Role changes through an
			// informer: wait until it refuses the verb to the ServiceAccount.
			waitAccess(t, kc, rule.APIGroups[0], rule.Resources[0], rule.Verbs[0], full.Namespace, false)
			defer func() {
				cur, _ := r.e.Kube.RbacV1().Roles(full.Namespace).Get(ctx, full.Name, metav1.GetOptions{})
				cur.Rules = full.Rules
				if _, err := r.e.Kube.RbacV1().Roles(full.Namespace).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
				waitAccess(t, kc, rule.APIGroups[0], rule.Resources[0], rule.Verbs[0], full.Namespace, true)
				// Back to the common state.
				_, _, _ = execute(t, nil, "resume", "api", "--forget-failed", "--config", r.cfg, "--kubeconfig", r.e.Kubeconfig)
				if img := kubetest.Image(r.e.GetDeployment("api")); img != reg+"api:sha-1" {
					setImage(t, r.e, "api", reg+"api:sha-1")
				}
				r.e.SetPolicyImage(fluxsim.V1, r.e.Namespace, "api", reg+"api:sha-1")
				settledName(t, r.e, "api")
			}()
			code, out := scenario(t, r, as, rule.Resources[0], rule.Verbs[0])
			if !strings.Contains(out, "forbidden") {
				t.Fatalf("without %s: exit %d and no mention of the refusal:\n%s", name, code, out)
			}
			n++
		})
	}
	if n != len(access.Rules) {
		t.Errorf("%d rules proven needed, internal/access has %d", n, len(access.Rules))
	}
}

// scenario runs the command that needs resource/verb.
func scenario(t *testing.T, r *rbacEnv, as func(...string) (ExitCode, string), resource, verb string) (ExitCode, string) {
	t.Helper()
	switch resource + "/" + verb {
	case "deployments/get", "replicasets/list":
		return as("history", "api")
	case "deployments/list", "pods/list", "imagepolicies/list", "imagerepositories/list":
		return as("status")
	case "deployments/patch", "replicasets/patch":
		return as("hold", "api", "--reason", "x")
	case "deployments/watch", "pods/watch":
		// A rollback waits for its rollout with watches; it needs history.
		r.refl.Push("api", reg+"api:sha-2")
		if code, out := as("run", "--no-reconcile"); code != ExitOK && resource != "pods" {
			return code, out
		}
		setImage(t, r.e, "api", reg+"api:sha-2")
		settledName(t, r.e, "api")
		// KWOK's pods are Ready at once: the rolled-back rollout could be
		// complete by the waiter's first read, which then needs no watch
		// (seen on both clusters when this subtest runs alone). Pods that
		// are never Available long enough keep it in progress, so the
		// waiter must watch; the refusal ends it at once.
		ctx := context.Background()
		minReady := func(seconds int) {
			patch := []byte(fmt.Sprintf(`{"spec":{"minReadySeconds":%d}}`, seconds))
			d, err := r.e.Kube.AppsV1().Deployments(r.e.Namespace).Patch(ctx, "api", types.MergePatchType, patch, metav1.PatchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if seconds > 0 {
				return
			}
			// The controller copies minReadySeconds into the ReplicaSet it
			// rolls out and never resets an old one: a later rollback to
			// it would wait the 300 s.
			rss, err := rollout.ListOwned(ctx, r.e.Kube, d)
			if err != nil {
				t.Fatal(err)
			}
			for _, rs := range rss {
				if _, err := r.e.Kube.AppsV1().ReplicaSets(r.e.Namespace).Patch(ctx, rs.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		minReady(300) // below progressDeadlineSeconds (600), as the API requires
		defer minReady(0)
		return as("rollback", "api")
	case "imagepolicies/watch", "imagepolicies/patch", "imagerepositories/watch", "imagerepositories/patch":
		// The rescan is a warning, never the end of the run.
		code, out := as("run", "-o", "json")
		return code, out
	case "receivers/list":
		return as("doctor")
	case "imagepolicies/create":
		// The first promotion of a service applied from git creates the
		// ImagePolicy it owns; a new image, so that there is one to
		// deploy.
		r.deploys++
		return as("promote", "prod", "--image", fmt.Sprintf("%sapi:sha-p%d", reg, r.deploys), "--reason", "rbac")
	case "imagepolicies/delete":
		// forget deletes the ImagePolicy autodeploy created for prod.
		owned := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImagePolicy",
			"metadata": map[string]any{"name": "autodeploy-prod", "namespace": r.e.Namespace,
				"labels": map[string]any{"app.kubernetes.io/managed-by": "autodeploy"}, "annotations": map[string]any{"autodeploy.dev/promotion-of": "prod"}},
			"spec": map[string]any{"imageRepositoryRef": map[string]any{"name": "api"}, "filterTags": map[string]any{"pattern": "^sha-1$"}, "policy": map[string]any{"alphabetical": map[string]any{"order": "asc"}}},
		}}
		res := r.e.Dynamic.Resource(fluxsim.V1.GVR("imagepolicies")).Namespace(r.e.Namespace)
		if _, err := res.Create(context.Background(), owned, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = res.Delete(context.Background(), "autodeploy-prod", metav1.DeleteOptions{}) }()
		return as("forget", "prod")
	case "kustomizations/get", "imageupdateautomations/list":
		// Who writes the service from git.
		return as("status")
	case "gitrepositories/list", "gitrepositories/patch", "gitrepositories/watch", "imageupdateautomations/watch":
		// A deploy under Flux GitOps brings git along: it waits for the
		// automation (which must report what it observed), then asks the
		// GitRepository (which must exist) to fetch.
		ctx := context.Background()
		if resource == "imageupdateautomations" {
			r.setObserved(t, map[string]any{"api": map[string]any{"name": reg + "api", "tag": "sha-0"}})
			defer r.setObserved(t, nil)
		} else {
			gr := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
				"metadata": map[string]any{"name": "flux-system", "namespace": r.e.Namespace},
				"spec":     map[string]any{"interval": "1m", "url": "https://git.example/apps.git", "ref": map[string]any{"branch": "main"}},
			}}
			if _, err := r.e.Dynamic.Resource(flux.GitRepositoryGVR).Namespace(r.e.Namespace).Create(ctx, gr, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := r.e.Dynamic.Resource(flux.GitRepositoryGVR).Namespace(r.e.Namespace).Delete(ctx, "flux-system", metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}()
		}
		// A tag of its own: an earlier scenario's image was rolled back.
		r.deploys++
		r.refl.Push("api", fmt.Sprintf("%sapi:sha-b%d", reg, r.deploys))
		return as("run", "-o", "json")
	case "kustomizations/patch":
		// A hold placed by an earlier version's rollback --suspend-flux.
		hold := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, deploy.AnnHold, `{"by":"old@host","reason":"x","at":"2026-11-25T10:00:00Z","kustomization":"`+r.e.Namespace+`/apps"}`)
		if _, err := r.e.Kube.AppsV1().Deployments(r.e.Namespace).Patch(context.Background(), "api", types.MergePatchType, []byte(hold), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		return as("resume", "api")
	case "imagerepositories/get":
		// A rollback of a Deployment applied from git excludes the tag.
		setImage(t, r.e, "api", reg+"api:sha-2")
		settledName(t, r.e, "api")
		return as("rollback", "api")
	case "imagepolicies/get":
		// The run reads the policy again right before deploying.
		// A tag never deployed: the run reaches the deploy.
		r.refl.Push("api", reg+"api:sha-9")
		return as("run")
	case "events/list":
		// A rollout left unverified whose pod is already in
		// ImagePullBackOff: only the kubelet's event says why.
		bad := reg + "api:fail-2"
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"false",%q:%q}},"spec":{"template":{"spec":{"containers":[{"name":"api","image":%q}]}}}}`,
			deploy.AnnVerified, deploy.AnnDeployedImage, bad, bad)
		// As autodeploy's own patch would (its field manager): an
		// interrupted run's rollout.
		if _, err := r.e.Kube.AppsV1().Deployments(r.e.Namespace).Patch(context.Background(), "api", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: rollout.FieldManager}); err != nil {
			t.Fatal(err)
		}
		kubetest.Eventually(t, 30*time.Second, "a pod in ImagePullBackOff", func(ctx context.Context) (bool, error) {
			pods, err := r.e.Kube.CoreV1().Pods(r.e.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=api"})
			for _, p := range pods.Items {
				for _, cs := range p.Status.ContainerStatuses {
					if cs.Image == bad && cs.State.Waiting != nil && cs.State.Waiting.Reason == "ImagePullBackOff" {
						return true, nil
					}
				}
			}
			return false, err
		})
		return as("run", "--no-reconcile")
	case "leases/get":
		return as("run")
	case "leases/update":
		// Taking a released Lease is an update: make sure one exists.
		empty := ""
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "autodeploy", Namespace: r.e.Namespace}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &empty}}
		if _, err := r.e.Kube.CoordinationV1().Leases(r.e.Namespace).Create(context.Background(), l, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatal(err)
		}
		return as("run")
	case "leases/create":
		if err := r.e.Kube.CoordinationV1().Leases(r.e.Namespace).Delete(context.Background(), "autodeploy", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		return as("run")
	}
	t.Fatalf("no scenario for %s/%s: add one", resource, verb)
	return 0, ""
}

// waitAccess waits until the user of kubeconfig may (or may not) do verb on
// resource in ns, as a SelfSubjectAccessReview answers.
func waitAccess(t *testing.T, kubeconfig, group, resource, verb, ns string, allowed bool) {
	t.Helper()
	waitAccessNamed(t, kubeconfig, group, resource, verb, ns, "", allowed)
}

// waitAccessNamed is waitAccess for the object name (a rule with
// resourceNames grants only those).
func waitAccessNamed(t *testing.T, kubeconfig, group, resource, verb, ns, name string, allowed bool) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kubetest.Eventually(t, 30*time.Second, fmt.Sprintf("%s %s allowed=%v", verb, resource, allowed), func(ctx context.Context) (bool, error) {
		r, err := kc.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Group: group, Resource: resource, Verb: verb, Namespace: ns, Name: name}}}, metav1.CreateOptions{})
		return err == nil && r.Status.Allowed == allowed, err
	})
}

// appendFile appends text to the file at path.
func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
