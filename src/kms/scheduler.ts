import type { JobResult } from '../audit/service-event.js';
import { jobFailures, jobRuns } from '../metrics/metrics.js';
import type { KmsDeps } from './context.js';
import { runDueDeletions } from './deletion.js';
import { runExpiredImportTokens, runExpiredMaterials } from './import.js';
import { syncAll } from './replica-sync.js';
import { runDueRotations } from './rotation.js';

export interface TickReport {
  keysDeleted: number;
  materialsExpired: number;
  keysRotated: number;
  importTokensExpired: number;
  /** Multi-Region primaries of this region brought to their replicas again (a replica that lagged catches up). */
  replicasSynced: number;
}

/** The `job` label of p11kms_job_runs_total / p11kms_job_failures_total. */
export type LifecycleJob = 'deletion' | 'material-expiry' | 'rotation' | 'import-token-expiry' | 'replica-sync';

/** Work items of one kind handled per tick; the rest waits for the next tick. */
const BATCH = 100;

/**
 * The key-lifecycle scheduler: on every tick it deletes keys whose deletion date has passed,
 * destroys imported material whose ValidTo has passed, runs automatic rotations that are due,
 * and removes expired import wrapping keys. What is due is decided from the metadata store and
 * the injected clock, so the schedule survives restarts: the daemon runs one tick at start-up,
 * which catches up after downtime. A key whose rotation is overdue by several periods rotates
 * once and its next rotation is one period after that (never a burst of rotations).
 *
 * Every action is audited as an AwsServiceEvent (DeleteKey, DeleteExpiredKeyMaterial, RotateKey,
 * DeleteExpiredImportToken) and every job run is counted in p11kms_job_runs_total{job} (and
 * p11kms_job_failures_total{job} when an item failed).
 *
 * The tick interval is real time (setInterval, unref'd); the clock decides what is due. Nothing
 * exposed to API callers moves the clock or triggers a tick.
 */
export class LifecycleScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<TickReport> | undefined;
  private stopped = false;

  constructor(
    private readonly deps: KmsDeps,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => {
      this.runOnce().catch((e: unknown) => this.deps.log.error({ err: (e as Error).message }, 'lifecycle tick failed'));
    }, this.intervalMs);
    this.timer.unref();
  }

  /** Runs one tick now, after any tick in progress (ticks never overlap). */
  async runOnce(): Promise<TickReport> {
    while (this.running) await this.running.catch(() => undefined);
    // With a shared store (several daemons) only the leader runs jobs: src/cluster/leader.ts.
    if (this.stopped || (this.deps.store.shared && !this.deps.store.shared.isLeader())) {
      return { keysDeleted: 0, materialsExpired: 0, keysRotated: 0, importTokensExpired: 0, replicasSynced: 0 };
    }
    const tick = this.tick();
    this.running = tick;
    try {
      return await tick;
    } finally {
      this.running = undefined;
    }
  }

  /** Stops the timer and waits for a tick in progress, before the token and store close. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  private async tick(): Promise<TickReport> {
    const { deps } = this;
    const now = deps.clock.now().getTime();
    // Each job counts one run per tick, and one failure when any item failed or the job threw;
    // a job that throws does not keep the others from running.
    const run = async (job: LifecycleJob, fn: () => Promise<JobResult>): Promise<number> => {
      jobRuns.inc({ job });
      try {
        const r = await fn();
        if (r.failed) jobFailures.inc({ job });
        return r.done;
      } catch (e) {
        jobFailures.inc({ job });
        deps.log.error({ job, err: (e as Error).message }, 'lifecycle job failed');
        return 0;
      }
    };
    const report: TickReport = {
      keysDeleted: await run('deletion', () => runDueDeletions(deps, now, BATCH)),
      materialsExpired: await run('material-expiry', () => runExpiredMaterials(deps, now, BATCH)),
      keysRotated: await run('rotation', () => runDueRotations(deps, now, BATCH)),
      importTokensExpired: await run('import-token-expiry', () => runExpiredImportTokens(deps, now, BATCH)),
      replicasSynced: (deps.regions && deps.regions.names().length > 1) || deps.peers ? await run('replica-sync', () => syncAll(deps)) : 0,
    };
    if (report.keysDeleted || report.materialsExpired || report.keysRotated || report.importTokensExpired) {
      deps.log.info({ ...report }, 'key lifecycle tick');
    }
    return report;
  }
}
