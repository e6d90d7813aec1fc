import type { NamedHsm } from '../config.js';
import { Errors, KmsError } from '../errors.js';
import { ckrOf, isGeneralError, isSessionLost, loginRefusalOf } from '../hsm/ckr.js';
import { loadModule, reinitializeModule } from '../hsm/module.js';
import { probeToken } from '../hsm/token-probe.js';
import { describeReason, Token, TokenOpenError, type TokenOptions } from '../hsm/token.js';
import { Secret } from '../secret.js';
import type { CustomKeyStoreRecord } from '../store/key-stores.js';
import type { KmsDeps } from './context.js';
import type { ConnectionErrorCode, ConnectionState, KeyStoreConnections } from './key-store-connections.js';
import { reconcileKeyStore } from './reconcile.js';
import type { SecretBox } from './secret-box.js';
import { notConnected } from './token-for.js';

/**
 * The token registry for custom key stores (issue #6): the default token lives in KmsDeps; each
 * connected store has one more Token here, opened with the store's KeyStorePassword (the
 * token's user PIN, unsealed only to log in).
 *
 * Connection states follow AWS's CloudHSM key stores:
 *   DISCONNECTED ─Connect→ CONNECTING ─ok→ CONNECTED ─Disconnect→ DISCONNECTING → DISCONNECTED
 *                              └─fails→ FAILED (ConnectionErrorCode) ─Disconnect→ DISCONNECTED
 * A connection attempt the operator asked for (ConnectCustomKeyStore) is not retried: as in AWS,
 * a FAILED store must be disconnected, fixed and connected again. A store that was CONNECTED
 * and lost its token (a fault, or a token missing at start-up) goes to FAILED with an error code
 * and is reconnected with backoff until the token is back, unless the token refuses the PIN
 * (INVALID_CREDENTIALS, USER_LOCKED_OUT: retrying could lock the user out).
 *
 * Connects, disconnects and retries of one store run one after another (a per-store chain), and
 * each carries the store's epoch: Disconnect bumps it, and older work gives up and closes what it
 * opened. The other stores and the default token are never touched, except that a module shared
 * by several tokens must be reinitialized (src/hsm/module.ts) to see a token that came back.
 */

export type { ConnectionErrorCode, ConnectionState };

interface Runtime {
  state: ConnectionState;
  errorCode?: ConnectionErrorCode | undefined;
  token?: Token | undefined;
  epoch: number;
  /** The store's connect/disconnect/retry work, one step after another. */
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

/** How a connection attempt came about: ConnectCustomKeyStore, start-up, or a retry after a fault. */
type ConnectTrigger = 'connect' | 'start-up' | 'retry';

type Outcome = { token: Token } | { code: ConnectionErrorCode; detail: string } | { cancelled: true };

const CREDENTIAL_CODES = new Set<ConnectionErrorCode>(['INVALID_CREDENTIALS', 'USER_LOCKED_OUT']);

/** The AAD context of a sealed KeyStorePassword: ':' never occurs in access key ids, so it cannot collide with credentials. */
export const passwordContext = (storeId: string) => `custom-key-store:${storeId}`;

export class KeyStoreRegistry implements KeyStoreConnections {
  private readonly runtimes = new Map<string, Runtime>();
  private readonly monitor: NodeJS.Timeout;
  private stopped = false;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private readonly drainMs: number;

  constructor(
    private readonly deps: KmsDeps,
    private readonly opts: KeyStoreRegistryOptions,
  ) {
    this.retryInitialMs = opts.retryInitialMs ?? 250;
    this.retryMaxMs = opts.retryMaxMs ?? 15_000;
    this.drainMs = opts.drainMs ?? 10_000;
    this.monitor = setInterval(() => this.checkTokens(), opts.healthIntervalMs ?? 1000);
    this.monitor.unref();
  }

  get hsms(): Record<string, NamedHsm> {
    return this.opts.hsms;
  }

  private runtime(id: string): Runtime {
    let rt = this.runtimes.get(id);
    if (!rt) {
      rt = { state: 'DISCONNECTED', epoch: 0, chain: Promise.resolve(), retryDelayMs: this.retryInitialMs };
      this.runtimes.set(id, rt);
    }
    return rt;
  }

  /** ConnectionState and ConnectionErrorCode (only when FAILED) of a store. */
  status(id: string): { state: ConnectionState; errorCode?: ConnectionErrorCode | undefined } {
    const rt = this.runtime(id);
    return { state: rt.state, errorCode: rt.state === 'FAILED' ? rt.errorCode : undefined };
  }

  /** For /health/ready: every store this process knows of, with its state (no secrets). */
  summary(): { id: string; state: ConnectionState; errorCode?: ConnectionErrorCode | undefined }[] {
    return this.deps.store.keyStores.all().map((r) => ({ id: r.id, ...this.status(r.id) }));
  }

  isConnected(id: string): boolean {
    return this.runtimes.get(id)?.state === 'CONNECTED';
  }

  /** The store's token while it is CONNECTED; undefined otherwise. */
  connectedToken(id: string): Token | undefined {
    const rt = this.runtimes.get(id);
    return rt?.state === 'CONNECTED' ? rt.token : undefined;
  }

  /** Seals a KeyStorePassword for the metadata store (never kept in clear). */
  sealPassword(storeId: string, password: string): Promise<Buffer> {
    return this.opts.secretBox.seal(passwordContext(storeId), password);
  }

  /**
   * Start-up: stores the operator left connected are connected again, each with its own
   * reconciliation. Waits for those attempts (at most `waitMs`) so that keys work as soon as the
   * daemon listens; a store whose token is missing is FAILED and retried in the background.
   */
  async start(waitMs = 15_000): Promise<void> {
    const attempts: Promise<void>[] = [];
    for (const rec of this.deps.store.keyStores.all()) {
      if (!rec.wantConnected) continue;
      const rt = this.runtime(rec.id);
      rt.state = 'CONNECTING';
      attempts.push(this.enqueue(rec.id, (epoch) => this.connectNow(rec.id, epoch, 'start-up')));
    }
    if (!attempts.length) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(attempts), new Promise<void>((r) => (timer = setTimeout(r, waitMs)))]);
    clearTimeout(timer);
  }

  /** ConnectCustomKeyStore, after its state checks: CONNECTING now, the attempt in the background. */
  connect(id: string): void {
    const rt = this.runtime(id);
    if (rt.state === 'CONNECTED' || rt.state === 'CONNECTING') return;
    rt.state = 'CONNECTING';
    rt.errorCode = undefined;
    this.deps.store.keyStores.update(id, { wantConnected: true });
    void this.enqueue(id, (epoch) => this.connectNow(id, epoch, 'connect'));
  }

  /**
   * DisconnectCustomKeyStore, after its state checks: new requests for the store's keys are
   * refused at once; requests already in the token finish (for up to drainMs); then the
   * sessions close and the token is logged out.
   */
  async disconnect(id: string): Promise<void> {
    const rt = this.runtime(id);
    rt.epoch++;
    clearTimeout(rt.retry);
    rt.retry = undefined;
    rt.state = 'DISCONNECTING';
    rt.errorCode = undefined;
    this.deps.store.keyStores.update(id, { wantConnected: false });
    const token = rt.token;
    rt.token = undefined;
    const epoch = rt.epoch;
    if (token) {
      const drained = await token.drain(this.drainMs);
      if (!drained) this.deps.log.warn({ customKeyStoreId: id }, 'requests still in the token after the drain limit; closing its sessions');
      token.close(() => notConnected(id));
    }
    // A connect attempt in progress notices the new epoch and closes its own token; wait for it
    // (bounded), so that the next login is a fresh one that checks the PIN.
    await this.settle(rt, this.drainMs);
    if (rt.epoch === epoch) rt.state = 'DISCONNECTED';
    this.deps.log.info({ customKeyStoreId: id }, 'custom key store disconnected');
  }

  /** DeleteCustomKeyStore: forget the runtime (the store is DISCONNECTED). */
  forget(id: string): void {
    const rt = this.runtimes.get(id);
    if (rt) {
      rt.epoch++;
      clearTimeout(rt.retry);
    }
    this.runtimes.delete(id);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.monitor);
    for (const [id, rt] of this.runtimes) {
      rt.epoch++;
      clearTimeout(rt.retry);
      rt.token?.close(() => Errors.dependencyTimeout('The key store is shutting down.'));
      rt.token = undefined;
      void id;
    }
    await Promise.all([...this.runtimes.values()].map((rt) => this.settle(rt, 2000)));
  }

  private async settle(rt: Runtime, limitMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([rt.chain, new Promise<void>((r) => (timer = setTimeout(r, limitMs)))]);
    clearTimeout(timer);
  }

  private enqueue(id: string, step: (epoch: number) => Promise<void>): Promise<void> {
    const rt = this.runtime(id);
    const epoch = rt.epoch;
    const next = rt.chain.then(() => (rt.epoch === epoch && !this.stopped ? step(epoch) : undefined));
    rt.chain = next.catch((e: unknown) => {
      this.deps.log.error({ customKeyStoreId: id, err: describeReason(e) }, 'custom key store connection step failed');
    });
    return rt.chain;
  }

  /**
   * One connection attempt. A store that was connected before (start-up, fault) is retried with
   * backoff. Each outcome is audited (an AwsServiceEvent: the attempt runs in the background):
   * CustomKeyStoreConnected, CustomKeyStoreReconnected, or CustomKeyStoreConnectionFailed with
   * the ConnectionErrorCode as errorCode (once per failure streak and code, not every retry).
   */
  private async connectNow(id: string, epoch: number, trigger: ConnectTrigger): Promise<void> {
    const resume = trigger !== 'connect';
    const rt = this.runtime(id);
    const rec = this.deps.store.keyStores.get(id);
    if (!rec) return;
    const outcome = await this.attempt(rec, epoch);
    if ('cancelled' in outcome) return;
    if (rt.epoch !== epoch || this.stopped) {
      if ('token' in outcome) outcome.token.close(() => notConnected(id));
      return;
    }
    if ('code' in outcome) {
      const repeated = rt.state === 'FAILED' && rt.errorCode === outcome.code;
      rt.state = 'FAILED';
      rt.errorCode = outcome.code;
      this.deps.log.warn({ customKeyStoreId: id, hsm: rec.hsmName, code: outcome.code, detail: outcome.detail }, 'custom key store connection failed');
      if (!repeated) {
        await this.recordEvent('CustomKeyStoreConnectionFailed', rec, { trigger }, { code: outcome.code, message: outcome.detail });
      }
      if (resume && !CREDENTIAL_CODES.has(outcome.code)) this.scheduleRetry(id, epoch);
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
    if (rt.epoch !== epoch || this.stopped) {
      token.close(() => notConnected(id));
      return;
    }
    rt.token = token;
    rt.state = 'CONNECTED';
    rt.errorCode = undefined;
    rt.retryDelayMs = this.retryInitialMs;
    this.deps.log.info({ customKeyStoreId: id, hsm: rec.hsmName }, 'custom key store connected');
    await this.recordEvent(trigger === 'connect' ? 'CustomKeyStoreConnected' : 'CustomKeyStoreReconnected', rec, { trigger });
  }

  /** Records a background connection change of a store (never its password). A failed write is logged. */
  private async recordEvent(
    eventName: string,
    rec: CustomKeyStoreRecord,
    details: Record<string, unknown>,
    error?: { code: ConnectionErrorCode; message: string },
  ): Promise<void> {
    const rt = this.runtimes.get(rec.id);
    try {
      await this.deps.audit.record({
        eventName,
        eventType: 'AwsServiceEvent',
        readOnly: false,
        requestParameters: { customKeyStoreId: rec.id },
        errorCode: error?.code,
        errorMessage: error?.message.slice(0, 512),
        additionalEventData: {
          customKeyStoreId: rec.id, customKeyStoreName: rec.name, cloudHsmClusterId: rec.hsmName,
          connectionState: rt?.state, connectionErrorCode: error?.code, ...details,
        },
      });
    } catch (e) {
      this.deps.log.error({ customKeyStoreId: rec.id, event: eventName, err: describeReason(e) }, 'custom key store audit event not written');
    }
  }

  private scheduleRetry(id: string, epoch: number): void {
    const rt = this.runtime(id);
    const delay = rt.retryDelayMs;
    rt.retryDelayMs = Math.min(delay * 2, this.retryMaxMs);
    clearTimeout(rt.retry);
    rt.retry = setTimeout(() => {
      rt.retry = undefined;
      if (rt.epoch === epoch && !this.stopped) void this.enqueue(id, (e) => this.connectNow(id, e, 'retry'));
    }, delay);
    rt.retry.unref();
  }

  /** The token of a CONNECTED store was lost: FAILED with an error code, its keys refused, reconnect with backoff. */
  private onLost(id: string, epoch: number, reason: unknown): void {
    const rt = this.runtimes.get(id);
    if (!rt || rt.epoch !== epoch || rt.state !== 'CONNECTED') return;
    const token = rt.token;
    rt.token = undefined;
    rt.state = 'FAILED';
    rt.errorCode = lossCode(reason);
    this.deps.log.warn({ customKeyStoreId: id, code: rt.errorCode, reason: describeReason(reason) }, 'custom key store lost its token; reconnecting');
    const rec = this.deps.store.keyStores.get(id);
    if (rec) {
      void this.recordEvent('CustomKeyStoreConnectionLost', rec, { reason: describeReason(reason).slice(0, 512) }, {
        code: rt.errorCode, message: 'The store lost its token; reconnecting.',
      });
    }
    // Closing drops the (dead) sessions; requests still waiting for one are refused cleanly.
    token?.close(() => notConnected(id));
    rt.retryDelayMs = this.retryInitialMs;
    this.scheduleRetry(id, epoch);
  }

  private checkTokens(): void {
    for (const rt of this.runtimes.values()) {
      if (rt.state === 'CONNECTED') rt.token?.checkPresent();
    }
  }

  private async attempt(rec: CustomKeyStoreRecord, epoch: number): Promise<Outcome> {
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
          onLost: (reason) => this.onLost(rec.id, epoch, reason),
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
    if (this.runtime(rec.id).epoch !== epoch) return { cancelled: true };
    if (!probe.present) return { code: 'CLUSTER_NOT_FOUND', detail: `token '${hsm.tokenLabel}' not found (${probe.reason})` };
    // It is there: this process's module has not seen it yet (it came back, or was created after start-up).
    this.deps.log.info({ customKeyStoreId: rec.id, token: hsm.tokenLabel }, 'token is back; reinitializing its PKCS#11 module');
    await reinitializeModule(loadModule(hsm.module, hsm.moduleEnv, hsm.libraryParameters));
    if (this.runtime(rec.id).epoch !== epoch) return { cancelled: true };
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
