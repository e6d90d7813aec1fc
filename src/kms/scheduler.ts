import type { KmsDeps } from './context.js';
import { runDueDeletions } from './deletion.js';
import { runExpiredImportTokens, runExpiredMaterials } from './import.js';
import { runDueRotations } from './rotation.js';

export interface TickReport {
  keysDeleted: number;
  materialsExpired: number;
  keysRotated: number;
  importTokensExpired: number;
}

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
    if (this.stopped) return { keysDeleted: 0, materialsExpired: 0, keysRotated: 0, importTokensExpired: 0 };
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
    const report: TickReport = {
      keysDeleted: await runDueDeletions(deps, now, BATCH),
      materialsExpired: await runExpiredMaterials(deps, now, BATCH),
      keysRotated: await runDueRotations(deps, now, BATCH),
      importTokensExpired: await runExpiredImportTokens(deps, now, BATCH),
    };
    if (report.keysDeleted || report.materialsExpired || report.keysRotated || report.importTokensExpired) {
      deps.log.info({ ...report }, 'key lifecycle tick');
    }
    return report;
  }
}
