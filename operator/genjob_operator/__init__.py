"""genjob_operator: the kopf operator that turns GenerationJob CRs into queued, tracked work.

Modules, one job each: `handlers` (kopf glue), `runtime` (wires clients and loops),
`kube` (every API write, counted), `cache` (the operator's view of all GenerationJobs),
`finalizers` (the finalizer admitted jobs carry),
`quota` and `admission_flow` (admission, per-tenant quota, enqueue), `status_sync` (the
event-stream consumer that patches status), `status_patches` (the pure event -> status
mapping), `reaper`, `ttl`, `leader` (Lease leader election), `health` (liveness and
/metrics), `metrics`, `cli`. See docs/operator.md.

kopf is used as a watch only: leader election (`leader`), finalizers (`finalizers`) and the
object cache (`cache`) are the operator's own, each module saying why kopf's is not used.
"""
