import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { join } from 'node:path';
import type { Clock } from '../clock.js';
import type { Principal } from '../model/identity.js';
import type { Logger } from '../log.js';
import { auditEvents, auditSeals, auditWriteDuration } from '../metrics/metrics.js';
import {
  AUDIT_FILE, auditFileName, GENESIS, RECORD_SEAL, RECORD_START, SEAL_KEY_LABEL, splitHash, withHash, withMac, type Anchor,
} from './chain.js';
import { isReadOnly, sanitize } from './sanitize.js';
import type { Sealer } from './sealer.js';
import { AuditUnavailable, type Audit, type AuditActor, type AuditEventInput, type AuditStatus } from './types.js';

export interface AuditTrailOptions {
  dir: string;
  /** 'fsync': fdatasync before an event's promise resolves; 'write': write(2) before, fdatasync every fsyncIntervalMs. */
  durability: 'fsync' | 'write';
  fsyncIntervalMs: number;
  failClosed: boolean;
  maxFileBytes: number;
  rotateIntervalMs: number;
  sealEveryEvents: number;
  sealIntervalMs: number;
  region: string;
  accountId: string;
  sealer: Sealer;
  clock: Clock;
  log: Logger;
  /** With several daemons (README, High availability): this node's id, in every record of its own chain. */
  nodeId?: string | undefined;
}

/** Why a file's start record says the previous file did not end cleanly (see README, "Audit trail"). */
export type RecoveryReason =
  | 'unclean-shutdown' // the previous file ends without a final seal, at most with a partial last line
  | 'write-failure' // a write failed; records after validBytes in the previous file were abandoned
  | 'corrupt-tail' // complete lines at the end of the previous file do not verify
  | 'anchor-mismatch' // the token's chain head is not in the files found
  | 'files-missing' // the token has a chain head but no audit file was found
  | 'no-anchor'; // audit files exist but the token has no chain head

export interface Recovery {
  reason: RecoveryReason;
  previousFile?: string | undefined;
  lastSeq: number;
  lastHash: string;
  /** Bytes of the previous file that are part of the chain; anything after them is not. */
  validBytes?: number | undefined;
  anchor?: { seq: number; hash: string; file: string } | undefined;
}

interface EventEntry {
  kind: 'event';
  /** The record's JSON text, serialized once when it is queued (see chain). */
  json: string;
  done(error?: Error): void;
}
interface ProbeEntry {
  kind: 'probe';
  done(healthy: boolean): void;
}
type Entry = EventEntry | ProbeEntry;

interface Tail {
  file: string;
  seq: number;
  hash: string;
  validBytes: number;
  totalBytes: number;
  final: boolean;
  /** Complete lines after the last valid record (not just a torn last line). */
  corrupt: boolean;
  anchorHash?: string | undefined;
}

const RECOVERY_RETRY_MS = 1000;

// Thin wrappers looked up at call time (tests replace fs.write to simulate a failing disk).
const write = (fd: number, b: Buffer) =>
  new Promise<void>((resolve, reject) => {
    let off = 0;
    const next = () =>
      fs.write(fd, b, off, b.length - off, null, (err, n) => {
        if (err) return reject(err);
        off += n;
        if (off < b.length) return next();
        resolve();
      });
    next();
  });
const fdatasync = (fd: number) => new Promise<void>((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())));
/**
 * New files only ('ax'). With `dsync` (durability 'fsync') the file is opened O_DSYNC: each
 * write(2) returns once its data is on disk, as write + fdatasync would, in one system call and
 * one threadpool job instead of two (each job costs the event loop a completion wake-up; the
 * disk cost is the same: p50 3.7–4.1 ms either way for 900-byte appends on this machine's
 * shared ext4, two alternating runs each). File start, rotation and shutdown still call
 * fdatasync, which then has nothing left to flush.
 */
const APPEND_DSYNC = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_APPEND | fs.constants.O_DSYNC;
const openAppend = (path: string, dsync: boolean) =>
  new Promise<number>((resolve, reject) => fs.open(path, dsync ? APPEND_DSYNC : 'ax', 0o600, (e, fd) => (e ? reject(e) : resolve(fd))));
const closeFd = (fd: number) => new Promise<void>((resolve) => fs.close(fd, () => resolve()));
/** Closes a new file that could not be started, and removes it if it got no byte (nothing in it to verify or lose). */
const abandonFile = (fd: number, path: string) =>
  new Promise<void>((resolve) => {
    fs.fstat(fd, (e, st) => {
      fs.close(fd, () => (!e && st.size === 0 ? fs.unlink(path, () => resolve()) : resolve()));
    });
  });

/**
 * The tamper-evident audit trail: CloudTrail-shaped JSON lines in append-only files, each
 * record hash-chained to the previous one, the chain sealed at intervals by an HMAC computed in
 * the token, and the latest seal recorded in the token as the chain head (so truncation shows).
 *
 * One writer: records are chained in the order they are queued and written in batches (group
 * commit): while one write (and fdatasync) is in flight, new records queue up and go out
 * together in the next. Every file operation happens inside that loop.
 */
export class AuditTrail implements Audit {
  readonly failClosed: boolean;
  private queue: Entry[] = [];
  private running = false;
  private drained: (() => void)[] = [];
  private seq = 0;
  private prev = GENESIS;
  private fd = -1;
  private file = '';
  private fileBytes = 0;
  private fileOpenedAt = 0;
  private sinceSeal = 0;
  private sealWanted = false;
  private syncWanted = false;
  private unsynced = false;
  private healthy = true;
  private lastRecoveryAt = 0;
  private closed = false;
  private timers: NodeJS.Timeout[] = [];

  private constructor(private readonly opts: AuditTrailOptions) {
    this.failClosed = opts.failClosed;
  }

  /**
   * Opens the trail: finds where the chain stands (the last file and the token's chain head),
   * starts a new file whose first record links to it and says how the previous file ended, and
   * seals at once.
   */
  static async open(opts: AuditTrailOptions): Promise<AuditTrail> {
    fs.mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    const trail = new AuditTrail(opts);
    const anchor = await opts.sealer.readAnchor();
    const tail = findTail(opts.dir, anchor);
    let recovery: Recovery | undefined;
    if (tail) {
      trail.seq = tail.seq;
      trail.prev = tail.hash;
      const base = { previousFile: tail.file, lastSeq: tail.seq, lastHash: tail.hash, validBytes: tail.validBytes };
      const anchorRef = anchor && { seq: anchor.seq, hash: anchor.hash, file: anchor.file };
      if (!anchor) recovery = { reason: 'no-anchor', ...base };
      else if (tail.corrupt) recovery = { reason: 'corrupt-tail', ...base, anchor: anchorRef };
      else if (anchor.seq > tail.seq || (tail.anchorHash !== undefined && tail.anchorHash !== anchor.hash)) {
        recovery = { reason: 'anchor-mismatch', ...base, anchor: anchorRef };
      } else if (!tail.final || tail.validBytes !== tail.totalBytes) recovery = { reason: 'unclean-shutdown', ...base };
    } else if (anchor) {
      trail.seq = anchor.seq;
      trail.prev = anchor.hash;
      recovery = { reason: 'files-missing', lastSeq: anchor.seq, lastHash: anchor.hash, anchor: { seq: anchor.seq, hash: anchor.hash, file: anchor.file } };
    }
    if (recovery && recovery.reason !== 'unclean-shutdown') {
      opts.log.error({ audit: recovery }, 'audit trail: the previous files do not end where the token says; recorded in the new file');
    } else if (recovery) {
      opts.log.warn({ audit: recovery }, 'audit trail: the previous file did not end cleanly; recorded in the new file');
    }
    await trail.startFile(tail?.file, recovery);
    trail.timers.push(
      setInterval(() => {
        if (trail.sinceSeal > 0) trail.wake('seal');
      }, opts.sealIntervalMs).unref(),
    );
    if (opts.durability === 'write') {
      trail.timers.push(setInterval(() => trail.unsynced && trail.wake('sync'), opts.fsyncIntervalMs).unref());
    }
    return trail;
  }

  status(): AuditStatus {
    return { enabled: true, healthy: this.healthy, seq: this.seq, file: this.file };
  }

  record(input: AuditEventInput): Promise<void> {
    if (this.closed) return Promise.reject(new AuditUnavailable('The audit trail is closed.'));
    const json = JSON.stringify(this.toRecord(input));
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ kind: 'event', json, done: (e) => (e ? reject(e) : resolve()) });
      this.schedule();
    });
  }

  ready(): Promise<boolean> {
    if (this.healthy) return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      this.queue.push({ kind: 'probe', done: resolve });
      this.schedule();
    });
  }

  /** Writes what is queued, a final seal, and closes the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    await this.idle();
    if (this.healthy && this.fd >= 0) {
      try {
        const seal = await this.sealText(true);
        await write(this.fd, Buffer.from(`${seal.line}\n`));
        await fdatasync(this.fd);
        await this.writeAnchor(seal.hash);
      } catch (e) {
        this.opts.log.error({ err: (e as Error).message }, 'audit trail: final seal failed');
      }
    }
    if (this.fd >= 0) await closeFd(this.fd);
    this.fd = -1;
  }

  // ---- building records ----

  private toRecord(e: AuditEventInput): Record<string, unknown> {
    const service = e.eventType === 'AwsServiceEvent';
    const readOnly = e.readOnly ?? isReadOnly(e.eventName);
    return {
      eventVersion: '1.11',
      userIdentity: identity(e.principal, service),
      eventTime: (e.time ?? this.opts.clock.now()).toISOString(),
      eventSource: e.eventSource ?? 'kms.amazonaws.com',
      eventName: e.eventName,
      awsRegion: e.awsRegion ?? this.opts.region,
      sourceIPAddress: e.sourceIp ?? (service ? 'p11kms' : undefined),
      userAgent: e.userAgent ?? (service ? 'p11kms' : undefined),
      errorCode: e.errorCode,
      errorMessage: e.errorMessage,
      requestParameters: sanitize(e.requestParameters),
      responseElements: sanitize(e.responseElements),
      additionalEventData: sanitize(e.additionalEventData) ?? undefined,
      requestID: e.requestId,
      eventID: e.eventId ?? randomUUID(),
      readOnly,
      resources: e.resources?.length
        ? e.resources.map((r) => ({ accountId: r.accountId, type: r.type, ARN: r.ARN }))
        : undefined,
      eventType: e.eventType ?? 'AwsApiCall',
      managementEvent: true,
      recipientAccountId: (e.principal && 'accountId' in e.principal && e.principal.accountId) || this.opts.accountId,
      eventCategory: 'Management',
    };
  }

  /**
   * Chains a record given as its JSON text (a non-empty object without seq/prev): assigns the
   * next seq, links it to the previous hash, appends its hash. The text is extended, not
   * re-serialized: the same bytes as JSON.stringify({ ...record, seq, prev }) without copying
   * the record into a new object and serializing it inside the writer loop.
   */
  private chain(json: string): string {
    const seq = this.seq + 1;
    // With several daemons every record names its node (its own chain): README, High availability.
    const node = this.opts.nodeId ? `,"nodeId":${JSON.stringify(this.opts.nodeId)}` : '';
    const { line, hash } = withHash(`${json.slice(0, -1)}${node},"seq":${seq},"prev":"${this.prev}"}`);
    this.seq = seq;
    this.prev = hash;
    return line;
  }

  /** A seal record for the current chain position; the token computes its MAC. */
  private async sealText(final: boolean, nextFile?: string): Promise<{ line: string; hash: string }> {
    const body = JSON.stringify({
      eventType: RECORD_SEAL,
      eventTime: this.opts.clock.now().toISOString(),
      nodeId: this.opts.nodeId,
      sealedThrough: this.seq,
      final,
      nextFile,
      key: SEAL_KEY_LABEL,
      seq: this.seq + 1,
      prev: this.prev,
    });
    let text: string;
    try {
      text = withMac(body, await this.opts.sealer.mac(body));
      auditSeals.inc({ outcome: 'ok' });
    } catch (e) {
      // The token is away: record an unsealed marker; the next seal covers everything before it.
      auditSeals.inc({ outcome: 'failed' });
      this.opts.log.warn({ err: (e as Error).message }, 'audit trail: seal failed (token unavailable?)');
      text = `${body.slice(0, -1)},"macError":"token unavailable"}`;
    }
    const { line, hash } = withHash(text);
    this.seq += 1;
    this.prev = hash;
    this.sinceSeal = 0;
    this.sealWanted = false;
    return { line, hash };
  }

  private async writeAnchor(hash: string): Promise<void> {
    const anchor: Anchor = { v: 1, seq: this.seq, hash, file: this.file, time: this.opts.clock.now().toISOString() };
    try {
      await this.opts.sealer.writeAnchor(anchor);
    } catch (e) {
      this.opts.log.warn({ err: (e as Error).message }, 'audit trail: could not record the chain head in the token');
    }
  }

  // ---- the writer loop ----

  private wake(what: 'seal' | 'sync'): void {
    if (this.closed) return;
    if (what === 'seal') this.sealWanted = true;
    else this.syncWanted = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.running) return;
    this.running = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    try {
      while (this.queue.length || this.sealWanted || this.syncWanted) await this.step();
    } catch (e) {
      this.opts.log.error({ err: (e as Error).message }, 'audit trail: writer failed');
    } finally {
      this.running = false;
      for (const d of this.drained.splice(0)) d();
    }
  }

  private idle(): Promise<void> {
    return this.running ? new Promise((resolve) => this.drained.push(resolve)) : Promise.resolve();
  }

  private async step(): Promise<void> {
    if (!this.healthy) await this.recover();
    const batch = this.queue.splice(0);
    const events = batch.filter((e): e is EventEntry => e.kind === 'event');
    const probes = batch.filter((e): e is ProbeEntry => e.kind === 'probe');
    if (!this.healthy) {
      this.sealWanted = this.syncWanted = false;
      const err = new AuditUnavailable('The audit trail cannot be written.');
      for (const e of events) e.done(err);
      for (const p of probes) p.done(false);
      if (events.length) auditEvents.inc({ outcome: 'failed' }, events.length);
      return;
    }
    const saved = { seq: this.seq, prev: this.prev, sinceSeal: this.sinceSeal };
    let text = '';
    for (const e of events) text += `${this.chain(e.json)}\n`;
    this.sinceSeal += events.length;
    let seal: { line: string; hash: string } | undefined;
    if (this.sinceSeal > 0 && (this.sealWanted || this.sinceSeal >= this.opts.sealEveryEvents)) {
      seal = await this.sealText(false);
      text += `${seal.line}\n`;
    }
    this.sealWanted = false;
    const sync = this.opts.durability === 'fsync' || seal !== undefined || this.syncWanted;
    this.syncWanted = false;
    if (text) {
      const bytes = Buffer.from(text, 'utf8');
      const started = process.hrtime.bigint();
      try {
        await write(this.fd, bytes);
        // Under 'fsync' the file is O_DSYNC (see openAppend): the write above was the sync.
        if (sync && this.opts.durability !== 'fsync') await fdatasync(this.fd);
      } catch (e) {
        // The chain goes back to the last record known written; the next file says so.
        Object.assign(this, saved);
        this.healthy = false;
        this.lastRecoveryAt = Date.now();
        this.opts.log.error({ err: (e as Error).message, file: this.file, lastSeq: this.seq }, 'audit trail: write failed');
        const err = new AuditUnavailable('The audit trail could not be written.');
        for (const ev of events) ev.done(err);
        for (const p of probes) p.done(false);
        if (events.length) auditEvents.inc({ outcome: 'failed' }, events.length);
        return;
      }
      auditWriteDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
      this.fileBytes += bytes.length;
      this.unsynced = !sync;
    } else if (sync && this.unsynced) {
      await fdatasync(this.fd).catch(() => undefined);
      this.unsynced = false;
    }
    for (const ev of events) ev.done();
    for (const p of probes) p.done(true);
    if (events.length) auditEvents.inc({ outcome: 'written' }, events.length);
    if (seal) await this.writeAnchor(seal.hash);
    if (this.fileBytes >= this.opts.maxFileBytes || Date.now() - this.fileOpenedAt >= this.opts.rotateIntervalMs) {
      await this.rotate();
    }
  }

  /** Final seal naming the next file, then a new file whose first record links back. */
  private async rotate(): Promise<void> {
    const previous = this.file;
    const nextName = auditFileName(this.opts.clock.now(), this.seq + 2);
    const saved = { seq: this.seq, prev: this.prev, sinceSeal: this.sinceSeal };
    const seal = await this.sealText(true, nextName);
    try {
      await write(this.fd, Buffer.from(`${seal.line}\n`));
      await fdatasync(this.fd);
    } catch (e) {
      Object.assign(this, saved);
      this.healthy = false;
      this.lastRecoveryAt = Date.now();
      this.opts.log.error({ err: (e as Error).message }, 'audit trail: rotation failed');
      return;
    }
    await this.writeAnchor(seal.hash);
    const oldFd = this.fd;
    this.fileBytes += Buffer.byteLength(seal.line) + 1;
    try {
      await this.startFile(previous, undefined, nextName);
      await closeFd(oldFd);
    } catch (e) {
      this.healthy = false;
      this.lastRecoveryAt = Date.now();
      this.opts.log.error({ err: (e as Error).message }, 'audit trail: cannot start the next file');
    }
  }

  /** After a write failure: at most once a second, try a new file whose start record says what was lost. */
  private async recover(): Promise<void> {
    if (Date.now() - this.lastRecoveryAt < RECOVERY_RETRY_MS) return;
    this.lastRecoveryAt = Date.now();
    const oldFd = this.fd;
    const recovery: Recovery = {
      reason: 'write-failure', previousFile: this.file, lastSeq: this.seq, lastHash: this.prev, validBytes: this.fileBytes,
    };
    try {
      await this.startFile(this.file, recovery);
      this.healthy = true;
      if (oldFd >= 0 && oldFd !== this.fd) await closeFd(oldFd);
      this.opts.log.warn({ file: this.file, seq: this.seq }, 'audit trail: writing again after a failure');
    } catch (e) {
      this.opts.log.error({ err: (e as Error).message }, 'audit trail: still cannot write');
    }
  }

  /** Opens a new file, writes its start record and a seal, fdatasyncs, records the chain head. */
  private async startFile(previousFile: string | undefined, recovery: Recovery | undefined, name?: string): Promise<void> {
    const saved = { seq: this.seq, prev: this.prev, sinceSeal: this.sinceSeal };
    const file = name ?? auditFileName(this.opts.clock.now(), this.seq + 1);
    const path = join(this.opts.dir, file);
    const fd = await openAppend(path, this.opts.durability === 'fsync');
    try {
      const start = this.chain(JSON.stringify({
        eventType: RECORD_START,
        eventTime: this.opts.clock.now().toISOString(),
        file,
        previousFile: previousFile ?? null,
        recovery,
      }));
      this.sinceSeal = 1;
      const seal = await this.sealText(false);
      const bytes = Buffer.from(`${start}\n${seal.line}\n`);
      await write(fd, bytes);
      await fdatasync(fd);
      // The directory entry too, so the new file survives a crash.
      try {
        const dfd = fs.openSync(this.opts.dir, 'r');
        fs.fsyncSync(dfd);
        fs.closeSync(dfd);
      } catch {
        /* not supported everywhere */
      }
      this.fd = fd;
      this.file = file;
      this.fileBytes = bytes.length;
      this.fileOpenedAt = Date.now();
      this.unsynced = false;
      await this.writeAnchor(seal.hash);
    } catch (e) {
      Object.assign(this, saved);
      // Retried once a second while the disk is full: without this, one empty file per retry.
      await abandonFile(fd, path);
      throw e;
    }
  }
}

function identity(p: Principal | AuditActor | undefined, service: boolean): Record<string, unknown> {
  if (!p) return service ? { type: 'AWSService', invokedBy: 'p11kms' } : { type: 'Unknown' };
  if (!('arn' in p)) return { type: p.type, invokedBy: p.invokedBy, accountId: p.accountId, accessKeyId: p.accessKeyId };
  const principalId = (p as { principalId?: string }).principalId ?? (p.type === 'Root' ? p.accountId : p.accessKeyId || p.arn);
  // A sidecar socket's principal has no access key (the socket authenticated it).
  return { type: p.type, principalId, arn: p.arn, accountId: p.accountId, accessKeyId: p.accessKeyId || undefined };
}

/**
 * Where the chain ends on disk: the newest audit file with a valid record, checked from its
 * first line (the hash of each line and the links between them).
 */
function findTail(dir: string, anchor: Anchor | undefined): Tail | undefined {
  const files = fs.readdirSync(dir).filter((f) => AUDIT_FILE.test(f)).sort();
  for (let i = files.length - 1; i >= 0; i--) {
    const file = files[i]!;
    const data = fs.readFileSync(join(dir, file));
    let offset = 0;
    let last: { seq: number; hash: string; final: boolean } | undefined;
    let validBytes = 0;
    let anchorHash: string | undefined;
    let corrupt = false;
    while (offset < data.length) {
      const nl = data.indexOf(0x0a, offset);
      if (nl < 0) break; // a torn last line: the write was cut short
      const line = data.subarray(offset, nl).toString('utf8');
      offset = nl + 1;
      const parts = splitHash(line);
      let rec: { seq?: unknown; prev?: unknown; eventType?: unknown; final?: unknown } | undefined;
      try {
        rec = parts && (JSON.parse(line) as typeof rec);
      } catch {
        rec = undefined;
      }
      const ok =
        parts &&
        rec &&
        withHash(parts.text).hash === parts.hash &&
        typeof rec.seq === 'number' &&
        (last === undefined || (rec.seq === last.seq + 1 && rec.prev === last.hash));
      if (!ok) {
        corrupt = true;
        break;
      }
      last = { seq: rec!.seq as number, hash: parts!.hash, final: rec!.eventType === RECORD_SEAL && rec!.final === true };
      validBytes = offset;
      if (anchor && anchor.file === file && last.seq === anchor.seq) anchorHash = last.hash;
    }
    if (last) return { file, ...last, validBytes, totalBytes: data.length, corrupt, anchorHash };
  }
  return undefined;
}
