// Package gitops owns every lever autodeploy pulls on Flux, and the record
// that says a lever is autodeploy's. Flux's own API (the objects, their
// fields, reconcile requests) is internal/flux's; what autodeploy does with
// it when it shares a Deployment with Flux GitOps is here, in one place:
//
//	lever                                   set by                          cleared by                                     record                                       follows kubectl rollout undo
//	ImageRepository spec.exclusionList      a rollback (automatic, manual)   a run, once the policy ranks a deployed image  autodeploy.dev/exclusions on the              no: it is not on the Deployment
//	  pattern ^tag$                                                          above it; resume --forget-failed; forget       ImageRepository (Exclusion JSON)
//	kustomize.toolkit.fluxcd.io/reconcile:  a manual rollback of a           resume, forget (every copy); a run, once the   autodeploy.dev/reconcile-disabled on the     yes: the rollback copies both onto every
//	  disabled on the Deployment            Deployment Flux applies          service is no longer held (every copy)         same object, beside the lever                 ReplicaSet, as the hold: an undo keeps them
//	ImagePolicy of a promoted service       a deploy of a promoted service   a rollback (pointed back at the image before,  label app.kubernetes.io/managed-by:          no: it is not on the Deployment
//	  applied from git (config              Flux applies from git (created,  automatic or manual); forget (deleted)          autodeploy and annotation
//	  promote.imagePolicy): filterTags      pointed at the target's tag)                                                    autodeploy.dev/promotion-of: <service>
//	  ^tag$ over the root policy's                                                                                          on the ImagePolicy (promote.go)
//	  ImageRepository (PointPolicy)
//	Kustomization spec.suspend (legacy)     rollback --suspend-flux of       resume, forget (ResumeSuspended)               the hold's kustomization field               no
//	                                        autodeploy 1.x; nothing since
//	reconcile.fluxcd.io/requestedAt on      a run (rescan, bring git         nothing: a request, answered once             none: it holds no state                      no
//	  ImageRepository, ImagePolicy,         along, after an exclusion:
//	  GitRepository (fetches)               Rescan, Follows)
//
// A record lives on the object that carries its lever, never inside
// another mark (a hold): a lever is autodeploy's exactly when its record
// is beside it, wherever the lever travels. The one exception is the 1.x
// suspend, which nothing sets any more: its record stays the hold's
// kustomization field it came with, kept by a new rollback. Before, the reconcile lever's
// record was a field of the hold: a hold rewritten by `hold` racing a
// rollback, a hold annotation deleted by hand, or a ReplicaSet copy revived
// by `kubectl rollout undo --to-revision` left Flux never applying that
// Deployment again, invisible to status and cleared by no command (issue
// 17, item 7).
package gitops
