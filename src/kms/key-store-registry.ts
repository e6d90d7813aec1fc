import type { NamedHsm } from '../config.js';
import { Errors, KmsError } from '../errors.js';
import { ckrOf, isGeneralError, isSessionLost, loginRefusalOf } from '../hsm/ckr.js';
import { loadModule, reinitializeModule } from '../hsm/module.js';
import { probeToken } from '../hsm/token-probe.js';
import { describeReason, Token, TokenOpenError, type TokenOptions } from '../hsm/token.js';
import { Secret } from '../secret.js';
import type { ConnectionTransition, CustomKeyStoreRecord } from '../store/key-stores.js';
import type { KmsDeps } from './context.js';
import {
  sharedStatus, type ConnectionErrorCode, type ConnectionState, type KeyStoreConnections, type KeyStoreSummary, type LocalConnectionState,
} from './key-store-connections.js';
import { reconcileKeyStore } from './reconcile.js';
import type { SecretBox } from './secret-box.js';
import { notConnected } from './token-for.js';

/**
 * The token registry for custom key stores (issue #6): the default token lives in KmsDeps; each
 * store this node serves has one more Token here, opened with the store's KeyStorePassword (the
 * token's user PIN, unsealed only to log in).
 *
 * Connection states follow AWS's CloudHSM key stores:
 *   DISCONNECTED ─Connect→ CONNECTING ─ok→ CONNECTED ─Disconnect→ DISCONNECTING → DISCONNECTED
 *                              └─fails→ FAILED (ConnectionErrorCode) ─Disconnect→ DISCONNECTED
 * The state is one per store and lives in its row (src/store/key-stores.ts), so that with several
 * daemons on one database (issue #11) every node reports the same state. Each node follows it
 * with sessions of its own (the change feed tells it of every change): CONNECTED → it opens the
 * store's token; CONNECTING, DISCONNECTING, DISCONNECTED, FAILED → it closes its sessions and
 * refuses the store's keys. The node that gets ConnectCustomKeyStore runs the attempt and writes
 * its outcome; the leader finishes a CONNECTING or DISCONNECTING step whose node died.
 *
 * A connection attempt the operator asked for (ConnectCustomKeyStore) is not retried: as in AWS,
 * a FAILED store must be disconnected, fixed and connected again. A node that loses (or cannot
 * open) the token of a CONNECTED store refuses its keys, reports it (health, metrics: `local`)
 * and reopens with backoff; the shared state stays CONNECTED while another live node still
 * reaches the token (AWS: a CONNECTED store whose HSMs are unreachable stays CONNECTED). Only when
 * no node reaches it (a single node: at once) does it go to FAILED with the error code; every
 * node keeps retrying and the first one back sets CONNECTED again, unless the token refused the
 * PIN (INVALID_CREDENTIALS, USER_LOCKED_OUT: retrying could lock the user out).
 *
 * A node's connects, retries and closes of one store run one after another (a per-store chain),
 * each with a generation that any newer step bumps: older work gives up and closes what it opened.
 * The other stores and the default token are never touched, except that a module shared by
 * several tokens must be reinitialized (src/hsm/module.ts) to see a token that came back.
 */

export type { ConnectionErrorCode, ConnectionState };

interface Runtime {
  /** This node's own view: its sessions to the store's token. */
  local: LocalConnectionState;
  errorCode?: ConnectionErrorCode | undefined;
  token?: Token | undefined;
  /** The shared epoch that the token (or the attempt in progress) belongs to. */
  sharedEpoch: number;
  /** Bumped by every step that makes older work obsolete. */
  gen: number;
  /** Generation of the open attempt in progress, if any. */
  attempt?: number | undefined;
  /** This node stopped retrying in this shared epoch (the token refused the PIN). */
  gaveUp?: number | undefined;
  /** The shared state this node last followed. */
  seen?: ConnectionState | undefined;
  /** The store's open/close work, one step after another. */
  chain: Promise<void>;
  retry?: NodeJS.Timeout | undefined;
  retryDelayMs: number;
}

export interface KeyStoreRegistryOptions {
  hsms: Record<string, NamedHsm>;
  secretBox: SecretBox;
  /** How often a connected store's token is checked for presence (ms). */
  healthIntervalMs?: number;
  /** Reconnect backoff after a fault: first and longest delay (ms). */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** How long DisconnectCustomKeyStore lets in-flight requests finish before closing the sessions (ms). */
  drainMs?: number;
  /** Token call metrics for the stores' tokens (TokenOptions.observe), as for the default token. */
  observe?: TokenOptions['observe'];
}

/** How an attempt came about: ConnectCustomKeyStore (or the leader finishing one), following the shared state, or a retry. */
type ConnectTrigger = 'connect' | 'start-up' | 'follow' | 'retry';

type Outcome = { token: Token } | { code: ConnectionErrorCode; detail: string } | { cancelled: true };

const CREDENTIAL_CODES = new Set<ConnectionErrorCode>(['INVALID_CREDENTIALS', 'USER_LOCKED_OUT']);

/** The shared state asks every node for sessions: CONNECTED, or FAILED after a loss everywhere (being retried). */
const wantsSessions = (rec: CustomKeyStoreRecord) =>
  rec.connectionState === 'CONNECTED' || (rec.connectionState === 'FAILED' && rec.wantConnected);

/** The AAD context of a sealed KeyStorePassword: ':' never occurs in access key ids, so it cannot collide with credentials. */
export const passwordContext = (storeId: string) => `custom-key-store:${storeId}`;

export class KeyStoreRegistry implements KeyStoreConnections {
  private readonly runtimes = new Map<string, Runtime>();
  private readonly monitor: NodeJS.Timeout;
  private stopped = false;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private readonly drainMs: number;
  /** This daemon instance, as connection_owner (SQLite: the only one). */
  private readonly me: string;
  /** State writes that ended a step of this node but failed (database away): retried every monitor tick. */
  private readonly unfinished = new Map<string, { epoch: number; from: readonly ConnectionState[]; to: ConnectionTransition }>();

  constructor(
    private readonly deps: KmsDeps,
    private readonly opts: KeyStoreRegistryOptions,
  ) {
    this.retryInitialMs = opts.retryInitialMs ?? 250;
    this.retryMaxMs = opts.retryMaxMs ?? 15_000;
    this.drainMs = opts.drainMs ?? 10_000;
    this.me = deps.store.shared?.instanceId ?? 'local';
    this.monitor = setInterval(() => this.checkTokens(), opts.healthIntervalMs ?? 1000);
    this.monitor.unref();
    // Another node's Connect, Disconnect, outcome or delete: follow it at once.
    deps.store.shared?.onChange((c) => {
      if (c.entity === 'custom_key_stores') this.followSafely(c.ref);
      else if (c.entity === '*') for (const rec of this.deps.store.keyStores.all()) this.followSafely(rec.id);
    });
  }

  get hsms(): Record<string, NamedHsm> {
    return this.opts.hsms;
  }

  private runtime(id: string): Runtime {
    let rt = this.runtimes.get(id);
    if (!rt) {
      rt = { local: 'DISCONNECTED', sharedEpoch: -1, gen: 0, chain: Promise.resolve(), retryDelayMs: this.retryInitialMs };
      this.runtimes.set(id, rt);
    }
    return rt;
  }

  /** The shared ConnectionState and ConnectionErrorCode (only when FAILED) of a store. */
  status(id: string): { state: ConnectionState; errorCode?: ConnectionErrorCode | undefined } {
    const rec = this.deps.store.keyStores.get(id);
    return rec ? sharedStatus(rec) : { state: 'DISCONNECTED' };
  }

  /** For /health/ready and metrics: every store with its shared state and this node's own (no secrets). */
  summary(): KeyStoreSummary[] {
    return this.deps.store.keyStores.all().map((rec) => {
      const rt = this.runtimes.get(rec.id);
      const local = rt?.local ?? 'DISCONNECTED';
      return { id: rec.id, ...sharedStatus(rec), local: { state: local, errorCode: local === 'UNREACHABLE' ? rt?.errorCode : undefined } };
    });
  }

  /** This node serves the store's keys: it has sessions to its token. */
  isConnected(id: string): boolean {
    return this.runtimes.get(id)?.local === 'CONNECTED';
  }

  /** The store's token while this node serves it; undefined otherwise. */
  connectedToken(id: string): Token | undefined {
    const rt = this.runtimes.get(id);
    return rt?.local === 'CONNECTED' ? rt.token : undefined;
  }

  /** Seals a KeyStorePassword for the metadata store (never kept in clear). */
  sealPassword(storeId: string, password: string): Promise<Buffer> {
    return this.opts.secretBox.seal(passwordContext(storeId), password);
  }

  /**
   * Start-up: this node opens its sessions to every store whose shared state wants them. Waits
   * for those attempts (at most `waitMs`) so that keys work as soon as the daemon listens; a store
   * whose token is missing is retried in the background. On one node (no shared store) a step
   * left unfinished by a crash is finished here; with several, the leader finishes it.
   */
  async start(waitMs = 15_000): Promise<void> {
    if (!this.deps.store.shared) await this.finishAbandoned();
    const attempts: Promise<void>[] = [];
    for (const rec of this.deps.store.keyStores.all()) {
      const rt = this.runtimes.get(rec.id);
      // (A connect finished just above has its token already.)
      if (wantsSessions(rec) && !rt?.token && rt?.attempt === undefined) attempts.push(this.open(rec.id, rec.connectionEpoch, 'start-up'));
    }
    if (!attempts.length) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(attempts), new Promise<void>((r) => (timer = setTimeout(r, waitMs)))]);
    clearTimeout(timer);
  }

  /**
   * ConnectCustomKeyStore, after its state checks (the store was DISCONNECTED): CONNECTING now,
   * cluster-wide, and the attempt in the background on this node. A concurrent Connect on
   * another node that came first makes this one a no-op, as on one node.
   */
  connect(id: string): void {
    const rec = this.deps.store.keyStores.get(id);
    if (!rec || rec.connectionState === 'CONNECTED' || rec.connectionState === 'CONNECTING') return;
    const next = this.deps.store.keyStores.transition(id, rec.connectionEpoch, ['DISCONNECTED'], {
      state: 'CONNECTING', owner: this.me, bumpEpoch: true, wantConnected: false,
    });
    if (!next) {
      const now = this.status(id).state;
      if (now === 'CONNECTED' || now === 'CONNECTING') return;
      throw Errors.customKeyStoreInvalidState(`Custom key store ${id} is ${now}; it can be connected when it is DISCONNECTED.`);
    }
    this.follow(id);
    void this.open(id, next.connectionEpoch, 'connect');
  }

  /**
   * DisconnectCustomKeyStore, after its state checks: DISCONNECTING cluster-wide, so that every
   * node refuses the store's keys at once; requests already in this node's token finish (for up
   * to drainMs); then its sessions close, and the store is DISCONNECTED.
   */
  async disconnect(id: string): Promise<void> {
    let next: CustomKeyStoreRecord | undefined;
    for (let i = 0; !next && i < 5; i++) {
      const rec = this.deps.store.keyStores.get(id);
      if (!rec || rec.connectionState === 'DISCONNECTED' || rec.connectionState === 'DISCONNECTING') return;
      next = this.deps.store.keyStores.transition(id, rec.connectionEpoch, ['CONNECTED', 'CONNECTING', 'FAILED'], {
        state: 'DISCONNECTING', owner: this.me, bumpEpoch: true, wantConnected: false,
      });
    }
    if (!next) throw Errors.customKeyStoreInvalidState(`Custom key store ${id} is changing on another node; try again.`);
    const rt = this.runtime(id);
    this.closeInTurn(id, rt, this.release(rt, 'DISCONNECTED'));
    // Requests in the token finish, and a connect attempt in progress notices the new generation
    // and closes its own token; wait for both (bounded), so that the next login checks the PIN.
    await this.settle(rt, this.drainMs + 1000);
    this.finishStep(id, next.connectionEpoch, ['DISCONNECTING'], { state: 'DISCONNECTED' });
    this.deps.log.info({ customKeyStoreId: id }, 'custom key store disconnected');
  }

  /** DeleteCustomKeyStore: forget the runtime (the store is DISCONNECTED). */
  forget(id: string): void {
    const rt = this.runtimes.get(id);
    if (rt) this.release(rt, 'DISCONNECTED')?.close(() => notConnected(id));
    this.runtimes.delete(id);
    this.unfinished.delete(id);
  }

  /**
   * Ends a step this node owns (CONNECTING or DISCONNECTING). If the database is away the write
   * is kept and tried again every monitor tick, so that the store is not left in the step while
   * this node lives (if it dies, the leader finishes the step).
   */
  private finishStep(id: string, epoch: number, from: readonly ConnectionState[], to: ConnectionTransition): void {
    try {
      this.deps.store.keyStores.transition(id, epoch, from, to);
      this.unfinished.delete(id);
    } catch (e) {
      this.deps.log.warn({ customKeyStoreId: id, state: to.state, err: describeReason(e) }, 'custom key store state not written; trying again');
      this.unfinished.set(id, { epoch, from, to });
    }
  }

  /**
   * Steps whose node is gone (the leader; on one node, start-up): a DISCONNECTING store becomes
   * DISCONNECTED; a CONNECTING one is taken over and its attempt runs here, once.
   */
  async finishAbandoned(): Promise<void> {
    const shared = this.deps.store.shared;
    const ids = shared
      ? shared.abandonedKeyStoreSteps()
      : this.deps.store.keyStores.all().filter((r) => r.connectionState === 'CONNECTING' || r.connectionState === 'DISCONNECTING').map((r) => r.id);
    for (const id of ids) {
      const rec = this.deps.store.keyStores.get(id);
      if (!rec) continue;
      if (rec.connectionState === 'DISCONNECTING') {
        this.deps.store.keyStores.transition(id, rec.connectionEpoch, ['DISCONNECTING'], { state: 'DISCONNECTED' });
        this.deps.log.info({ customKeyStoreId: id, from: rec.connectionOwner }, 'finished a disconnect whose node is gone');
      } else if (rec.connectionState === 'CONNECTING') {
        const mine = this.deps.store.keyStores.transition(id, rec.connectionEpoch, ['CONNECTING'], {
          state: 'CONNECTING', owner: this.me, wantConnected: false,
        });
        if (!mine) continue;
        this.deps.log.info({ customKeyStoreId: id, from: rec.connectionOwner }, 'taking over a connect whose node is gone');
        await this.open(id, mine.connectionEpoch, 'connect');
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.monitor);
    for (const rt of this.runtimes.values()) {
      rt.gen++;
      clearTimeout(rt.retry);
      rt.token?.close(() => Errors.dependencyTimeout('The key store is shutting down.'));
      rt.token = undefined;
      rt.local = 'DISCONNECTED';
    }
    await Promise.all([...this.runtimes.values()].map((rt) => this.settle(rt, 2000)));
  }

  private followSafely(id: string): void {
    if (this.stopped) return;
    try {
      this.follow(id);
    } catch (e) {
      // The database is away: the next notification or poll brings the change again.
      this.deps.log.warn({ customKeyStoreId: id, err: describeReason(e) }, 'could not follow a custom key store change');
    }
  }

  /**
   * Brings this node's sessions in line with the shared state: closes them (refusing the store's
   * keys at once) when the state no longer wants them or belongs to an older epoch; opens them
   * when it does and nothing is open, opening or waiting to retry.
   */
  private follow(id: string): void {
    const rec = this.deps.store.keyStores.get(id);
    const rt = this.runtimes.get(id);
    if (!rec) {
      if (rt) this.forget(id);
      return;
    }
    const wanted = wantsSessions(rec);
    if (rt && rt.sharedEpoch !== rec.connectionEpoch && (rt.token || rt.attempt !== undefined || rt.retry)) {
      this.closeInTurn(id, rt, this.release(rt, wanted ? 'CONNECTING' : 'DISCONNECTED'));
    } else if (rt && !wanted && rt.local !== 'DISCONNECTED' && rec.connectionState !== 'CONNECTING') {
      this.closeInTurn(id, rt, this.release(rt, 'DISCONNECTED'));
    }
    const now = this.runtime(id);
    const cameBack = now.seen === 'FAILED' && rec.connectionState === 'CONNECTED';
    now.seen = rec.connectionState;
    if (!wanted) return;
    if (cameBack && now.retry && now.local === 'UNREACHABLE') {
      // Another node reached the token again: try now rather than at the end of a long backoff.
      clearTimeout(now.retry);
      now.retry = undefined;
      now.retryDelayMs = this.retryInitialMs;
    }
    if (now.token || now.attempt !== undefined || now.retry || now.gaveUp === rec.connectionEpoch) return;
    void this.open(id, rec.connectionEpoch, 'follow');
  }

  /** Stops this node's work on the store: refuses its keys from now on; returns the token to drain and close. */
  private release(rt: Runtime, local: LocalConnectionState): Token | undefined {
    rt.gen++;
    clearTimeout(rt.retry);
    rt.retry = undefined;
    rt.attempt = undefined;
    const token = rt.token;
    rt.token = undefined;
    rt.local = local;
    rt.errorCode = undefined;
    rt.retryDelayMs = this.retryInitialMs;
    return token;
  }

  /**
   * Drains and closes a released token as the next step of the store's chain: closing logs the
   * token out (PKCS#11: every session of this process on it), so a token opened for a newer
   * epoch must not be opened before the old one is closed.
   */
  private closeInTurn(id: string, rt: Runtime, token: Token | undefined): void {
    if (!token) return;
    rt.chain = rt.chain.then(async () => {
      const drained = await token.drain(this.drainMs);
      if (!drained) this.deps.log.warn({ customKeyStoreId: id }, 'requests still in the token after the drain limit; closing its sessions');
      token.close(() => notConnected(id));
    }).catch((e: unknown) => {
      this.deps.log.warn({ customKeyStoreId: id, err: describeReason(e) }, 'closing a custom key store token failed');
    });
  }

  private async settle(rt: Runtime, limitMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([rt.chain, new Promise<void>((r) => (timer = setTimeout(r, limitMs)))]);
    clearTimeout(timer);
  }

  /** Queues an attempt to open the store's token on this node for shared epoch `sharedEpoch`. */
  private open(id: string, sharedEpoch: number, trigger: ConnectTrigger): Promise<void> {
    const rt = this.runtime(id);
    if (rt.sharedEpoch !== sharedEpoch) rt.gaveUp = undefined;
    rt.sharedEpoch = sharedEpoch;
    const gen = ++rt.gen;
    rt.attempt = gen;
    if (rt.local !== 'UNREACHABLE') rt.local = 'CONNECTING';
    const next = rt.chain.then(async () => {
      if (rt.gen === gen && !this.stopped) await this.openNow(id, rt, gen, sharedEpoch, trigger);
    });
    rt.chain = next
      .catch((e: unknown) => {
        this.deps.log.error({ customKeyStoreId: id, err: describeReason(e) }, 'custom key store connection step failed');
        // A Connect whose outcome could not be written (the database went away) must not stay CONNECTING.
        if (trigger === 'connect' && rt.gen === gen) {
          rt.local = 'UNREACHABLE';
          rt.errorCode = 'INTERNAL_ERROR';
          this.finishStep(id, sharedEpoch, ['CONNECTING'], { state: 'FAILED', errorCode: 'INTERNAL_ERROR', wantConnected: false });
        } else if (rt.gen === gen && !this.stopped) {
          this.scheduleRetry(id, gen, sharedEpoch);
        }
      })
      .finally(() => {
        if (rt.attempt === gen) rt.attempt = undefined;
      });
    return rt.chain;
  }

  /**
   * One attempt to open the store's token on this node. Its outcome is audited (an
   * AwsServiceEvent, since the attempt runs in the background): CustomKeyStoreConnected,
   * CustomKeyStoreReconnected, or CustomKeyStoreConnectionFailed with the ConnectionErrorCode as
   * errorCode (once per failure streak and code, not every retry). For ConnectCustomKeyStore the
   * outcome is the shared state; otherwise it is this node's, and the shared state changes only as
   * the class comment says.
   */
  private async openNow(id: string, rt: Runtime, gen: number, sharedEpoch: number, trigger: ConnectTrigger): Promise<void> {
    const rec = this.deps.store.keyStores.get(id);
    if (!rec) return;
    const outcome = await this.attempt(rec, gen);
    if ('cancelled' in outcome) return;
    if (rt.gen !== gen || this.stopped) {
      if ('token' in outcome) outcome.token.close(() => notConnected(id));
      return;
    }
    if ('code' in outcome) {
      const repeated = rt.local === 'UNREACHABLE' && rt.errorCode === outcome.code;
      rt.local = 'UNREACHABLE';
      rt.errorCode = outcome.code;
      this.deps.log.warn({ customKeyStoreId: id, hsm: rec.hsmName, code: outcome.code, detail: outcome.detail, trigger }, 'custom key store connection failed');
      if (trigger === 'connect') {
        this.finishStep(id, sharedEpoch, ['CONNECTING'], { state: 'FAILED', errorCode: outcome.code, wantConnected: false });
      } else {
        this.reportUnreachable(id, sharedEpoch, outcome.code);
      }
      if (!repeated) await this.recordEvent('CustomKeyStoreConnectionFailed', rec, { trigger }, { code: outcome.code, message: outcome.detail });
      if (trigger === 'connect' || CREDENTIAL_CODES.has(outcome.code)) rt.gaveUp = sharedEpoch;
      else if (rt.gen === gen) this.scheduleRetry(id, gen, sharedEpoch);
      return;
    }
    const { token } = outcome;
    try {
      const report = await reconcileKeyStore(this.deps, id, token);
      this.deps.log.info({ customKeyStoreId: id, ...report }, 'custom key store reconciliation done');
    } catch (e) {
      // Reconciliation is housekeeping: a failure is logged, the store still connects.
      this.deps.log.warn({ customKeyStoreId: id, err: describeReason(e) }, 'custom key store reconciliation failed');
    }
    if (rt.gen !== gen || this.stopped) {
      token.close(() => notConnected(id));
      return;
    }
    // Reported before the state is written, so that a node failing to open the store once it is
    // CONNECTED finds this one reaching it.
    let written: boolean;
    try {
      this.reportReach(id, true);
      written = this.settleShared(id, sharedEpoch, trigger);
    } catch (e) {
      token.close(() => notConnected(id));
      throw e;
    }
    if (rt.gen !== gen || this.stopped || !written) {
      // A Disconnect (here or on another node) came first.
      token.close(() => notConnected(id));
      if (!written && !this.stopped) this.followSafely(id);
      return;
    }
    const wasUnreachable = rt.local === 'UNREACHABLE';
    rt.token = token;
    rt.local = 'CONNECTED';
    rt.errorCode = undefined;
    rt.retryDelayMs = this.retryInitialMs;
    this.deps.log.info({ customKeyStoreId: id, hsm: rec.hsmName, trigger }, 'custom key store connected');
    if (trigger === 'connect') await this.recordEvent('CustomKeyStoreConnected', rec, { trigger });
    else if (trigger === 'start-up' || wasUnreachable || rec.connectionState === 'FAILED') await this.recordEvent('CustomKeyStoreReconnected', rec, { trigger });
  }

  /**
   * The shared state once this node has opened the token: the outcome of a Connect (CONNECTING →
   * CONNECTED); back from FAILED when no node had reached the token; otherwise only a check that
   * the state still wants sessions in this epoch (no write: nodes following do not write the row).
   */
  private settleShared(id: string, sharedEpoch: number, trigger: ConnectTrigger): boolean {
    const table = this.deps.store.keyStores;
    if (trigger === 'connect') return !!table.transition(id, sharedEpoch, ['CONNECTING'], { state: 'CONNECTED', wantConnected: true });
    const now = table.get(id);
    if (!now || now.connectionEpoch !== sharedEpoch || !wantsSessions(now)) return false;
    if (now.connectionState === 'CONNECTED') return true;
    return !!table.transition(id, sharedEpoch, ['FAILED'], { state: 'CONNECTED', wantConnected: true });
  }

  /** Tells the other nodes whether this one reaches the store (several nodes only); true when another live node does. */
  private reportReach(id: string, reachable: boolean, code?: ConnectionErrorCode): boolean {
    const shared = this.deps.store.shared;
    if (!shared) return false;
    try {
      return shared.reportKeyStoreReach(id, reachable, code);
    } catch (e) {
      this.deps.log.warn({ customKeyStoreId: id, err: describeReason(e) }, 'could not report custom key store reachability');
      // Unknown: do not flip the shared state on a guess.
      return true;
    }
  }

  /**
   * This node cannot reach a store that the shared state wants connected. While another node
   * reaches it the shared state stays CONNECTED; otherwise the store is FAILED with the code
   * (and stays wanted, so that every node keeps retrying, unless the token refused the PIN).
   */
  private reportUnreachable(id: string, sharedEpoch: number, code: ConnectionErrorCode): void {
    if (this.reportReach(id, false, code)) return;
    const credential = CREDENTIAL_CODES.has(code);
    this.deps.store.keyStores.transition(id, sharedEpoch, credential ? ['CONNECTED', 'FAILED'] : ['CONNECTED'], {
      state: 'FAILED', errorCode: code, wantConnected: !credential,
    });
  }

  /** Records a background connection change of a store (never its password). A failed write is logged. */
  private async recordEvent(
    eventName: string,
    rec: CustomKeyStoreRecord,
    details: Record<string, unknown>,
    error?: { code: ConnectionErrorCode; message: string },
  ): Promise<void> {
    try {
      const shared = this.deps.store.keyStores.get(rec.id);
      await this.deps.audit.record({
        eventName,
        eventType: 'AwsServiceEvent',
        readOnly: false,
        requestParameters: { customKeyStoreId: rec.id },
        errorCode: error?.code,
        errorMessage: error?.message.slice(0, 512),
        additionalEventData: {
          customKeyStoreId: rec.id, customKeyStoreName: rec.name, cloudHsmClusterId: rec.hsmName,
          connectionState: shared?.connectionState, localConnectionState: this.runtimes.get(rec.id)?.local,
          connectionErrorCode: error?.code, ...details,
        },
      });
    } catch (e) {
      this.deps.log.error({ customKeyStoreId: rec.id, event: eventName, err: describeReason(e) }, 'custom key store audit event not written');
    }
  }

  private scheduleRetry(id: string, gen: number, sharedEpoch: number): void {
    const rt = this.runtime(id);
    const delay = rt.retryDelayMs;
    rt.retryDelayMs = Math.min(delay * 2, this.retryMaxMs);
    clearTimeout(rt.retry);
    const timer = setTimeout(() => {
      if (rt.retry === timer) rt.retry = undefined;
      if (rt.gen !== gen || this.stopped) return;
      let rec: CustomKeyStoreRecord | undefined;
      try {
        rec = this.deps.store.keyStores.get(id);
      } catch {
        this.scheduleRetry(id, gen, sharedEpoch);
        return;
      }
      if (rec && wantsSessions(rec) && rec.connectionEpoch === sharedEpoch) void this.open(id, sharedEpoch, 'retry');
      else this.followSafely(id);
    }, delay);
    timer.unref();
    rt.retry = timer;
  }

  /** The token of a store this node served was lost: its keys refused here, reported, reopened with backoff. */
  private onLost(id: string, gen: number, reason: unknown): void {
    const rt = this.runtimes.get(id);
    if (!rt || rt.gen !== gen || rt.local !== 'CONNECTED') return;
    const token = rt.token;
    rt.token = undefined;
    rt.local = 'UNREACHABLE';
    rt.errorCode = lossCode(reason);
    rt.gen++;
    this.deps.log.warn({ customKeyStoreId: id, code: rt.errorCode, reason: describeReason(reason) }, 'custom key store lost its token; reconnecting');
    try {
      this.reportUnreachable(id, rt.sharedEpoch, rt.errorCode);
    } catch (e) {
      this.deps.log.warn({ customKeyStoreId: id, err: describeReason(e) }, 'could not record the loss of a custom key store');
    }
    const rec = this.deps.store.keyStores.get(id);
    if (rec) {
      void this.recordEvent('CustomKeyStoreConnectionLost', rec, { reason: describeReason(reason).slice(0, 512) }, {
        code: rt.errorCode, message: 'The store lost its token; reconnecting.',
      });
    }
    // Closing drops the (dead) sessions; requests still waiting for one are refused cleanly.
    token?.close(() => notConnected(id));
    rt.retryDelayMs = this.retryInitialMs;
    this.scheduleRetry(id, rt.gen, rt.sharedEpoch);
  }

  private checkTokens(): void {
    for (const rt of this.runtimes.values()) {
      if (rt.local === 'CONNECTED') rt.token?.checkPresent();
    }
    for (const [id, step] of this.unfinished) this.finishStep(id, step.epoch, step.from, step.to);
  }

  private async attempt(rec: CustomKeyStoreRecord, gen: number): Promise<Outcome> {
    const hsm = this.opts.hsms[rec.hsmName];
    if (!hsm) return { code: 'CLUSTER_NOT_FOUND', detail: `HSM ${rec.hsmName} is not in the configuration` };
    let pin: Secret;
    try {
      pin = new Secret(await this.opts.secretBox.open(passwordContext(rec.id), rec.sealedPassword));
    } catch (e) {
      return { code: 'INTERNAL_ERROR', detail: `cannot unseal the key store password: ${describeReason(e)}` };
    }
    const open = () =>
      Token.open(
        {
          module: hsm.module,
          tokenLabel: hsm.tokenLabel,
          pin,
          maxSessions: hsm.maxSessions,
          sessionWaitMs: hsm.sessionWaitMs,
          maxWaiters: hsm.maxWaiters,
          callTimeoutMs: hsm.callTimeoutMs,
          capabilities: hsm.capabilities,
          moduleEnv: hsm.moduleEnv,
          libraryParameters: hsm.libraryParameters,
          observe: this.opts.observe,
          onLost: (reason) => this.onLost(rec.id, gen, reason),
        },
        this.deps.log,
      );
    try {
      return { token: open() };
    } catch (e) {
      const first = classify(e);
      if (first !== 'probe') return first;
    }
    // Not visible to this process: ask a fresh process whether the token is there at all.
    const probe = await probeToken(hsm.module, hsm.tokenLabel, hsm.moduleEnv, undefined, hsm.libraryParameters);
    if (this.runtime(rec.id).gen !== gen) return { cancelled: true };
    if (!probe.present) return { code: 'CLUSTER_NOT_FOUND', detail: `token '${hsm.tokenLabel}' not found (${probe.reason})` };
    // It is there: this process's module has not seen it yet (it came back, or was created after start-up).
    this.deps.log.info({ customKeyStoreId: rec.id, token: hsm.tokenLabel }, 'token is back; reinitializing its PKCS#11 module');
    await reinitializeModule(loadModule(hsm.module, hsm.moduleEnv, hsm.libraryParameters));
    if (this.runtime(rec.id).gen !== gen) return { cancelled: true };
    try {
      return { token: open() };
    } catch (e) {
      const again = classify(e);
      return again === 'probe' ? { code: 'NETWORK_ERRORS', detail: describeReason(e) } : again;
    }
  }
}

/** What a failed Token.open means for ConnectionErrorCode; 'probe' when the token may just be invisible to this process. */
function classify(e: unknown): { code: ConnectionErrorCode; detail: string } | 'probe' {
  const detail = describeReason(e);
  if (e instanceof TokenOpenError) {
    if (e.kind === 'not-found') return 'probe';
    if (e.kind === 'mechanisms') return { code: 'INTERNAL_ERROR', detail };
    switch (loginRefusalOf(e.ckr)) {
      case 'pin-incorrect':
      case 'pin-rejected':
        return { code: 'INVALID_CREDENTIALS', detail };
      case 'pin-locked':
        return { code: 'USER_LOCKED_OUT', detail };
      case 'user-conflict':
        return { code: 'USER_LOGGED_IN', detail };
      default:
        if (isSessionLost(e) || isGeneralError(e.ckr) || e.ckr === undefined) return 'probe';
        if (ckrOf(e) === undefined) return 'probe';
        return { code: 'INTERNAL_ERROR', detail };
    }
  }
  if (e instanceof KmsError && /module not found/.test(e.message)) return { code: 'CLUSTER_NOT_FOUND', detail };
  return { code: 'INTERNAL_ERROR', detail };
}

/** ConnectionErrorCode for a token lost while connected. */
function lossCode(reason: unknown): ConnectionErrorCode {
  if (reason instanceof KmsError || !(reason instanceof Error)) return 'CLUSTER_NOT_FOUND';
  const code = ckrOf(reason);
  if (code === undefined) return 'CLUSTER_NOT_FOUND';
  const refusal = loginRefusalOf(code);
  if (refusal === 'pin-incorrect') return 'INVALID_CREDENTIALS';
  if (refusal === 'pin-locked') return 'USER_LOCKED_OUT';
  if (isSessionLost(reason)) return 'NETWORK_ERRORS';
  return 'INTERNAL_ERROR';
}
