"""When and where a worker writes, reads and deletes its jobs' denoising checkpoints.

- **On preemption** (`worker.checkpoint_on_preempt`, on by default): a job stopped at a
  step boundary because the worker drains is checkpointed before it is requeued, and the
  requeue carries the reference: the next worker continues from that step.
- **Periodically**, so a worker killed without notice loses at most an interval: once a
  job's estimated run time (measured seconds per step x its steps) reaches
  `worker.checkpoint_min_job_seconds` (short jobs are not worth it), every
  `worker.checkpoint_interval_seconds` of denoising. The pipeline loop only pays for the
  copy of the latents and the scheduler's state (`StepTracker.capture`); encoding and the
  store write run on a background thread (one write at a time: a snapshot that arrives
  while one is written waits, and a newer one replaces it). The next heartbeat or progress
  report carries the reference to the queue, so a reaped job resumes from it.
- **Reading** at claim time (`load`): a checkpoint that cannot be read, is corrupted, has
  another format version or belongs to another job or spec is refused
  (`CheckpointRefusedError`); another model is refused when the run starts
  (`generate._continue`, which knows the pipeline). The job then runs from step 0.
- **Deleting**: when a job ends for good (succeeded, cancelled, failed for the last time)
  the worker deletes its checkpoints (`JobOutcomes`). A job that ends away from any worker
  (cancelled while queued, cancelled or dead-lettered by the reaper) is listed by the queue
  as orphaned (`JobQueue.orphaned_checkpoints`): every worker loop iteration deletes what
  is listed (`delete_orphaned`), since only workers can write to the store.

Files: `checkpoints/<job id>/<lease>.ckpt` in the result store, one per attempt (a later
write of the same attempt replaces it), so a worker that lost its lease never overwrites the
checkpoint of the job's new holder.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import structlog

from genjob.queue import Checkpointed, ClaimedJob, JobQueue
from genjob.result_store import ResultStore
from genjob.settings import WorkerSettings
from genjob_worker.checkpoint import Checkpoint, CheckpointRefusedError, decode, encode, spec_digest
from genjob_worker.denoise_state import DenoiseSnapshot

log = structlog.get_logger()

LATENT_SCALE = 8  # pixels per latent of SD 1.x/2.x and SDXL VAEs


@dataclass
class CheckpointTarget:
    """What a checkpoint of one job needs besides the snapshot."""

    job: ClaimedJob
    model: str
    model_fingerprint: str
    seed: int


class Checkpointer:
    """Writes, reads and deletes checkpoints in the result store (see the module docstring)."""

    def __init__(self, store: ResultStore, settings: WorkerSettings) -> None:
        self.store = store
        self.on_preempt = settings.checkpoint_on_preempt
        self.interval = settings.checkpoint_interval_seconds
        self.min_job_seconds = settings.checkpoint_min_job_seconds
        self._pending: list[tuple[CheckpointTarget, DenoiseSnapshot, Any]] | None = None
        self._cond = threading.Condition()
        self._writer: threading.Thread | None = None

    # -- writing -------------------------------------------------------------------------

    def periodic_due(self, seconds_per_step: float, total: int, since_last: float) -> bool:
        """Whether a periodic checkpoint is due now (see the module docstring)."""
        if self.interval <= 0 or seconds_per_step * total < self.min_job_seconds:
            return False
        return since_last >= self.interval

    def write(self, target: CheckpointTarget, snapshot: DenoiseSnapshot) -> Checkpointed:
        """Encode and store a checkpoint now; its reference for the queue."""
        checkpoint = Checkpoint(
            job_id=target.job.id,
            spec_sha256=spec_digest(target.job.spec),
            model=target.model,
            model_fingerprint=target.model_fingerprint,
            seed=target.seed,
            width=snapshot.latents.shape[-1] * LATENT_SCALE,
            height=snapshot.latents.shape[-2] * LATENT_SCALE,
            snapshot=snapshot,
        )
        uri = self.store.put_checkpoint(target.job.id, f"lease-{target.job.lease}", encode(checkpoint))
        return Checkpointed(uri, snapshot.step)

    def write_in_background(self, items: list[tuple[CheckpointTarget, DenoiseSnapshot, Any]]) -> None:
        """Queue snapshots for the writer thread (a newer batch replaces one not yet started).
        Each item's third element is the `HeldJob` whose `checkpoint` is set once written."""
        with self._cond:
            self._pending = items
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_pending, name="checkpoints", daemon=True)
                self._writer.start()
            self._cond.notify()

    def _write_pending(self) -> None:
        while True:
            with self._cond:
                items, self._pending = self._pending, None
            if not items:
                return
            for target, snapshot, held in items:
                try:
                    written = self.write(target, snapshot)
                except Exception as exc:
                    log.warning("periodic checkpoint failed", job_id=target.job.id, error=str(exc)[:300])
                    continue
                if getattr(held, "active", False):
                    held.checkpoint = written
                    log.info(
                        "checkpoint written", job_id=target.job.id, step=written.step, trigger="periodic"
                    )

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for the background writer (tests, benchmarks, before a job ends)."""
        writer = self._writer
        if writer is not None:
            writer.join(timeout)

    # -- reading and deleting ------------------------------------------------------------

    def load(self, job: ClaimedJob, model: str) -> Checkpoint:
        """The job's checkpoint, checked against the job; CheckpointRefusedError otherwise."""
        try:
            data = self.store.open(job.checkpoint)
        except Exception as exc:  # missing, outside the store, or the store failing: start over
            raise CheckpointRefusedError(f"checkpoint cannot be read: {exc}") from None
        checkpoint = decode(data)
        checkpoint.check_for(job_id=job.id, spec_sha256=spec_digest(job.spec), model=model)
        return checkpoint

    def delete(self, job_id: str) -> bool:
        """Delete every checkpoint of a job; False when that failed (logged: retention cleans up)."""
        try:
            self.store.delete_checkpoints(job_id)
        except Exception as exc:
            log.warning("deleting checkpoints failed", job_id=job_id, error=str(exc)[:300])
            return False
        return True

    def delete_orphaned(self, queue: JobQueue) -> int:
        """Delete the checkpoints the queue lists as orphaned (one round trip when there are
        none); a failed deletion stays listed for the next try. The number deleted."""
        deleted = [job_id for job_id in queue.orphaned_checkpoints() if self.delete(job_id)]
        queue.checkpoints_deleted(deleted)
        if deleted:
            log.info("deleted checkpoints of jobs that ended away from a worker", jobs=len(deleted))
        return len(deleted)
