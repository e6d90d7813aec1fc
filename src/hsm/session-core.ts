import pkcs11js from 'pkcs11js';
import { Errors, KmsError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Secret } from '../secret.js';
import { mechanismsFor, type Capability, type KeyKind } from './asymmetric.js';
import { ckrName, ckrOf, isModuleLost, isSessionLost, isStaleHandle } from './ckr.js';
import { TokenCallTimeout, TokenExecutor, withCallTimeout } from './executor.js';
import { enterModule, leaveModule, reinitializeModule, type LoadedModule } from './module.js';
import { SessionPool, type Pooled } from './session-pool.js';
import { contradiction, poolSize, probeSlot, type TokenFacts } from './probe.js';
import { CapabilitiesSchema, checkProfile, resolveProfile, type CapabilitiesInput, type ResolvedProfile } from './profile.js';
import { KeyTemplates } from './templates.js';

/** A PKCS#11 session or object handle, as pkcs11js gives it. */
export type Handle = Buffer;

export interface TokenOptions {
  module: string;
  tokenLabel: string;
  pin: Secret;
  maxSessions: number;
  sessionWaitMs: number;
  /** Callers allowed to queue for a session before new ones are throttled. */
  maxWaiters: number;
  /** The module's capability profile (profile.ts); defaults are SoftHSM2's. */
  capabilities?: CapabilitiesInput;
  /** Overrides capabilities.modifiableFalse (older call sites pass it on its own). */
  modifiableFalse?: boolean;
  moduleEnv?: Record<string, string>;
  /** C_Initialize init arguments (NSS softoken's configdir=…); the module is initialized once per process. */
  libraryParameters?: string;
  /** Called after every token call with its mechanism, the time spent in the token and whether it succeeded (metrics). */
  observe?: (mechanism: string, operation: string, seconds: number, ok: boolean) => void;
  /** Called after a successful reconnect (audit trail). */
  onRecovered?: (attempts: number) => void;
  /** Worker threads for AES-GCM calls (see executor.ts); 0 keeps them on the event loop + libuv pool. Default: max(2, CPUs). */
  workerThreads?: number;
  /** A per-request token call (worker thread or libuv pool; not key generation) without an answer after this long fails with 503 (0: wait forever). */
  callTimeoutMs?: number;
  /**
   * Set for tokens whose loss someone else handles (custom key stores): the token then never
   * reinitializes the module itself and never retries with backoff. When its sessions are lost
   * and one plain re-login fails, or when it is found missing, it calls onLost once and refuses
   * further work; the owner closes it and reconnects (src/kms/key-store-registry.ts).
   */
  onLost?: (reason: unknown) => void;
}

/** Token.open failed: carries the PKCS#11 return value (never the PIN) so callers can classify it. */
export class TokenOpenError extends KmsError {
  constructor(
    message: string,
    readonly ckr: number | undefined,
    readonly kind: 'not-found' | 'mechanisms' | 'pkcs11',
  ) {
    super('KMSInternalException', message, 500);
  }
}

export type TokenState = 'ready' | 'recovering' | 'down' | 'closed';

/** Thrown when a ciphertext fails authentication inside the token (wrong key, AAD or tampering). */
export class AuthenticationFailed extends Error {}

/** No token object with the CKA_ID (and class or key type) asked for; `objectKey` names the search. */
class ObjectMissing extends KmsError {
  constructor(readonly objectKey: string) {
    super('KeyUnavailableException', 'The key material for this KMS key is not present in the key store.', 500);
  }
}

/** How long an object still missing after a second look is not looked for again (ms). */
const STILL_MISSING_MS = 60_000;
const STILL_MISSING_MAX = 1024;
/** The pause before a second look on a module whose object list is live (HSM cluster replication). */
const LOOK_AGAIN_PAUSE_MS = 50;

const RW_SESSION = pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION;
/** Session states after C_Login (PKCS#11 CKS_RO_USER_FUNCTIONS, CKS_RW_USER_FUNCTIONS). */
const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;

/**
 * The session core of one PKCS#11 token: the module, a persistent logged-in session, a pool of
 * operation sessions, a cache of object handles, and recovery when the token or its sessions
 * are lost. The verbs (src/hsm/verbs/*) run their calls through run() and find objects through
 * handleFor()/objectFor(); the members they use are public for them, never for code outside
 * src/hsm, which sees only the Token facade (token.ts).
 */
export class TokenCore {
  private slot: Handle;
  private loginSession: Handle | undefined;
  private readonly pool: SessionPool<Handle>;
  /** Object handles by CKA_ID (hex), or CKA_ID/class for key pairs' halves; cleared on recovery. */
  readonly handles = new Map<string, Handle>();
  /** DER SubjectPublicKeyInfo by CKA_ID (public data; object ids are never reused). */
  readonly publicKeys = new Map<string, Buffer>();
  /** Key templates with this module's adjustments. */
  readonly templates: KeyTemplates;
  /** The token's mechanism list, read when the slot is found. */
  mechanismSet: Set<number> | undefined;
  /** What the start-up probe found (refreshed on every reconnect). */
  facts!: TokenFacts;
  /** The module's capability profile, resolved to numbers. */
  readonly profile: ResolvedProfile;
  private recovering: Promise<void> | undefined;
  private _state: TokenState = 'ready';
  private _recoveries = 0;
  readonly exec: TokenExecutor | undefined;
  /** Operations of this token in flight (drain() waits for them). */
  private inflight = 0;
  private drained: (() => void) | undefined;
  private closedError: () => KmsError = () => Errors.dependencyTimeout('The key store is shutting down.');
  private lostReported = false;
  private readonly onReinitialized = () => this.afterModuleReinitialized();
  /** Objects not found after a second look, and when (mayLookAgain). */
  private readonly stillMissing = new Map<string, number>();
  /** The module with the per-call timeout on its asynchronous (libuv pool) calls. */
  private timedModule: { target: pkcs11js.PKCS11; proxy: pkcs11js.PKCS11 } | undefined;

  protected constructor(
    private readonly mod: LoadedModule,
    readonly opts: TokenOptions,
    readonly log: Logger,
  ) {
    const caps = CapabilitiesSchema.parse(opts.capabilities ?? {});
    if (opts.modifiableFalse !== undefined) caps.modifiableFalse = opts.modifiableFalse;
    const wrong = checkProfile(caps);
    if (wrong) throw new TokenOpenError(`Token '${opts.tokenLabel}': the profile contradicts itself: ${wrong}`, undefined, 'mechanisms');
    this.profile = resolveProfile(caps);
    this.templates = new KeyTemplates(caps);
    this.slot = this.findSlot();
    this.login();
    const sessions = poolSize(opts.maxSessions, this.facts, this.profile);
    if (sessions < opts.maxSessions) {
      log.warn({ token: opts.tokenLabel, configured: opts.maxSessions, sessions, tokenLimit: this.facts.maxRwSessions }, 'session pool reduced to the token limit');
    }
    this.pool = new SessionPool<Handle>({
      max: sessions,
      waitMs: opts.sessionWaitMs,
      maxWaiters: opts.maxWaiters,
      open: () => this.p.C_OpenSession(this.slot, RW_SESSION),
      close: (s) => this.p.C_CloseSession(s),
    });
    // Worker threads pay off for in-process software tokens (CPU work); a network HSM's calls are
    // waits, better spread over the libuv pool than queued behind a few workers.
    this.exec =
      opts.workerThreads === 0 || !caps.softwareToken ? undefined : new TokenExecutor(mod.path, opts.workerThreads, opts.callTimeoutMs);
    mod.listeners.add(this.onReinitialized);
  }

  /** RFC 5649 key wrap with padding, under the number this module's profile gives it. */
  get kwpMechanism(): number {
    return this.profile.keyWrapPad;
  }

  /** Whether imports may decode OAEP in the daemon (profile: an in-process software token, or the operator's opt-in). */
  get daemonOaepDecode(): boolean {
    return this.profile.caps.softwareToken || this.profile.caps.daemonOaepDecode;
  }

  /** The loaded module this token is on (shared with other tokens of the same library). */
  get module(): LoadedModule {
    return this.mod;
  }

  get p(): pkcs11js.PKCS11 {
    if (!this.opts.callTimeoutMs) return this.mod.pkcs11;
    if (this.timedModule?.target !== this.mod.pkcs11) {
      this.timedModule = { target: this.mod.pkcs11, proxy: withCallTimeout(this.mod.pkcs11, this.opts.callTimeoutMs) };
    }
    return this.timedModule.proxy;
  }

  get state(): TokenState {
    return this._state;
  }
  get recoveries(): number {
    return this._recoveries;
  }
  get label(): string {
    return this.opts.tokenLabel;
  }
  poolStats() {
    return this.pool.stats();
  }

  /** The one slot whose token has our label (slot ids change when tokens are initialised). */
  private findSlot(): Handle {
    // One broken slot (SoftHSM2 answers CKR_GENERAL_ERROR for a token whose files vanished) must
    // not hide the others, which may belong to other tokens on the same module.
    const slots = this.p.C_GetSlotList(true).filter((s) => {
      try {
        return this.p.C_GetTokenInfo(s).label.trim() === this.opts.tokenLabel;
      } catch {
        return false;
      }
    });
    if (slots.length === 0) {
      throw new TokenOpenError(`No token labelled '${this.opts.tokenLabel}' in module ${this.opts.module}`, undefined, 'not-found');
    }
    if (slots.length > 1) throw Errors.internal(`More than one token is labelled '${this.opts.tokenLabel}'; labels must be unique`);
    const slot = slots[0] as Handle;
    const facts = probeSlot(this.p, slot);
    const wrong = contradiction(this.profile, facts, this.opts.tokenLabel);
    if (wrong) throw new TokenOpenError(wrong, undefined, 'mechanisms');
    this.facts = facts;
    this.mechanismSet = new Set(facts.mechanisms.keys());
    return slot;
  }

  private login(): void {
    const s = this.p.C_OpenSession(this.slot, RW_SESSION);
    try {
      this.p.C_Login(s, pkcs11js.CKU_USER, this.opts.pin.reveal());
    } catch (e) {
      // Login state belongs to the token: another session may already have logged it in.
      if (ckrOf(e) !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) {
        try {
          this.p.C_CloseSession(s);
        } catch {
          /* the session is useless either way */
        }
        throw e;
      }
    }
    this.loginSession = s;
  }

  /**
   * Runs one operation on a pooled session. When the session, login or token was lost, the
   * token is recovered and the operation tried once more; a stale cached handle is looked up again.
   */
  async run<T>(op: (session: Handle) => Promise<T> | T, mechanism = 'none', operation = 'other'): Promise<T> {
    this.inflight++;
    try {
      return await this.attempt(op, mechanism, operation);
    } finally {
      this.inflight--;
      if (this.inflight === 0) this.drained?.();
    }
  }

  private async attempt<T>(op: (session: Handle) => Promise<T> | T, mechanism: string, operation: string): Promise<T> {
    let lookAgain = false;
    for (let attempt = 0; ; attempt++) {
      if (this._state === 'closed') throw this.closedError();
      if (lookAgain) await this.refreshObjectList();
      if (this._state !== 'ready') await this.awaitRecovery();
      let pooled: Pooled<Handle> | undefined;
      await enterModule(this.mod);
      try {
        pooled = await this.pool.acquire();
        const started = this.opts.observe ? process.hrtime.bigint() : undefined;
        let ok = false;
        let result: T;
        try {
          result = await op(pooled.session);
          ok = true;
        } finally {
          if (started !== undefined) this.opts.observe?.(mechanism, operation, Number(process.hrtime.bigint() - started) / 1e9, ok);
        }
        this.pool.release(pooled);
        return result;
      } catch (e) {
        if (e instanceof TokenCallTimeout) {
          // The call is still inside the module: its session is closed (and the module counted
          // busy, so no C_Finalize runs under it) only once it returns. The request fails now.
          this.mod.inflight++;
          void e.settled.then(() => leaveModule(this.mod));
          if (pooled) this.pool.release(pooled, true, e.settled);
          this.log.warn({ token: this.opts.tokenLabel, timeoutMs: e.timeoutMs }, 'token call timed out');
          throw Errors.dependencyTimeout(`The key store did not answer within ${e.timeoutMs} ms.`);
        }
        if (pooled) this.pool.release(pooled, !(e instanceof AuthenticationFailed || e instanceof KmsError));
        if (this.isClosed()) throw this.closedError();
        if (e instanceof AuthenticationFailed) throw e;
        if (e instanceof KmsError) {
          // A missing object can mean a missing token (SoftHSM2 keeps the session of a token
          // whose files were removed, and finds nothing in it): then it is a token fault, not
          // a permanent state of the key. Only a present token that lacks the object says so.
          if (e.code === 'KeyUnavailableException' && !this.isPresent()) {
            if (this.opts.onLost) throw this.lost(e);
            if (this.tokenAway(attempt)) continue;
            throw this.unavailable();
          }
          if (e instanceof ObjectMissing && this.mayLookAgain(e.objectKey, attempt)) {
            lookAgain = true;
            continue;
          }
          throw e;
        }
        if (isStaleHandle(e) && attempt === 0) {
          this.handles.clear();
          continue;
        }
        if (isSessionLost(e)) {
          this.log.warn({ ckr: ckrName(ckrOf(e)), token: this.opts.tokenLabel }, 'token session lost; recovering');
          void this.recover(isModuleLost(e));
          if (attempt === 0) continue;
          if (this.isClosed()) throw this.closedError();
          throw Errors.dependencyTimeout('The key store is temporarily unavailable; the daemon is reconnecting.');
        }
        if (!this.isPresent()) {
          if (this.opts.onLost) throw this.lost(e);
          if (this.tokenAway(attempt)) continue;
          throw this.unavailable();
        }
        this.log.error({ ckr: ckrName(ckrOf(e)), err: (e as Error).message }, 'token operation failed');
        throw Errors.internal(`The key store failed the operation (${ckrName(ckrOf(e))}).`);
      } finally {
        leaveModule(this.mod);
      }
    }
  }

  /**
   * The token went away under an operation (the default token: nobody else handles it). Starts
   * the recovery loop (with a module reinitialization: SoftHSM2 and network HSM clients only see
   * a returned token after one) and says whether to try once more, which waits for it.
   */
  private tokenAway(attempt: number): boolean {
    this.log.warn({ token: this.opts.tokenLabel }, 'token not present; recovering');
    void this.recover(true);
    return attempt === 0;
  }

  /**
   * Whether a missing object is worth one more look: another process (a node sharing the token)
   * may have created it after this module last listed the token's objects. An object still
   * missing after a look is not looked for again for a while, so a key whose object really is
   * gone costs no reinitialization per request.
   */
  private mayLookAgain(objectKey: string, attempt: number): boolean {
    const now = Date.now();
    if (attempt > 0) {
      if (this.stillMissing.size >= STILL_MISSING_MAX) this.stillMissing.clear();
      this.stillMissing.set(objectKey, now);
      return false;
    }
    const since = this.stillMissing.get(objectKey);
    return since === undefined || now - since > STILL_MISSING_MS;
  }

  /** Looks again after a miss, as the profile says the module needs (Capabilities.objectList). */
  private async refreshObjectList(): Promise<void> {
    if (this.profile.caps.objectList === 'per-process') {
      this.log.info({ token: this.opts.tokenLabel }, 'token object not found; reinitializing the module to see objects other processes created');
      await reinitializeModule(this.mod); // single-flight: misses at once share one
    } else {
      await new Promise((r) => setTimeout(r, LOOK_AGAIN_PAUSE_MS));
    }
  }

  private unavailable(): KmsError {
    if (this.isClosed()) return this.closedError();
    return Errors.dependencyTimeout('The key store is temporarily unavailable; the daemon is reconnecting.');
  }

  /** A method, so that TypeScript does not narrow the state across awaits. */
  private isClosed(): boolean {
    return this._state === 'closed';
  }

  /** Reports the loss once to the owner (custom key stores) and returns the error for the caller. */
  private lost(reason: unknown): KmsError {
    if (!this.lostReported && this._state !== 'closed') {
      this.lostReported = true;
      this._state = 'down';
      this.log.warn({ token: this.opts.tokenLabel, reason: describeReason(reason) }, 'token lost');
      this.opts.onLost?.(reason);
    }
    return this._state === 'closed' ? this.closedError() : Errors.dependencyTimeout('The key store is unavailable.');
  }

  /**
   * Whether the token is still there and this process is logged in to it: C_GetTokenInfo on
   * its slot answers with its label, and the login session is in a user state.
   */
  isPresent(): boolean {
    if (this._state === 'closed' || !this.loginSession) return false;
    try {
      if (this.p.C_GetTokenInfo(this.slot).label.trim() !== this.opts.tokenLabel) return false;
      const state = this.p.C_GetSessionInfo(this.loginSession).state;
      return state === CKS_RW_USER_FUNCTIONS || state === CKS_RO_USER_FUNCTIONS;
    } catch {
      return false;
    }
  }

  /**
   * For owners that watch the token (custom key stores): reports the loss when the token is gone.
   * Returns whether it is present.
   */
  checkPresent(): boolean {
    if (this._state === 'closed' || this.recovering) return this._state !== 'closed';
    if (this.isPresent()) return true;
    if (this.opts.onLost && this._state === 'ready') this.lost(new Error('token not present'));
    return false;
  }

  /** Waits until no operation of this token is in flight, or the time is up; returns whether it drained. */
  async drain(timeoutMs: number): Promise<boolean> {
    if (this.inflight === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const ok = await new Promise<boolean>((resolve) => {
      this.drained = () => resolve(true);
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    clearTimeout(timer);
    this.drained = undefined;
    return ok;
  }

  /** The module was reinitialized (by this token or another on the same module): log in again. */
  private afterModuleReinitialized(): void {
    if (this._state === 'closed') return;
    this.handles.clear();
    this.pool.invalidate();
    this.loginSession = undefined; // its handle died with C_Finalize
    if (this.recovering) return; // the recovery loop in progress logs in itself
    try {
      this.slot = this.findSlot();
      this.login();
      this._state = 'ready';
    } catch (e) {
      this.log.warn({ token: this.opts.tokenLabel, reason: describeReason(e) }, 'login after module reinitialization failed');
      void this.recover(false);
    }
  }

  private async awaitRecovery(): Promise<void> {
    // A token whose owner handles its loss is not retried here: the owner reconnects it.
    if (this.opts.onLost && this._state === 'down') throw this.lost(new Error('token not available'));
    const pending = this.recovering ?? this.recover(false);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.opts.sessionWaitMs);
    });
    await Promise.race([pending, timeout]);
    clearTimeout(timer);
    if (this._state !== 'ready') {
      throw Errors.dependencyTimeout('The key store is temporarily unavailable; the daemon is reconnecting.');
    }
  }

  /** Single-flight reconnect with exponential backoff; reinitializes the module when needed. */
  recover(moduleLost: boolean): Promise<void> {
    if (this.recovering) return this.recovering;
    if (this._state === 'closed') return Promise.resolve();
    if (this.opts.onLost) return this.recoverOnce();
    this._state = 'recovering';
    this.handles.clear();
    this.pool.invalidate();
    this.recovering = (async () => {
      let delay = 100;
      for (let attempt = 0; this._state !== 'closed'; attempt++) {
        try {
          this.dropLoginSession();
          // A plain re-login first; if that keeps failing, the module itself may need a restart.
          if (moduleLost || attempt >= 2) {
            await reinitializeModule(this.mod);
            if (this._state === 'ready') return; // logged in again by afterModuleReinitialized
          }
          this.slot = this.findSlot();
          this.login();
          this._state = 'ready';
          this._recoveries++;
          this.log.info({ token: this.opts.tokenLabel, attempt }, 'token recovered');
          this.opts.onRecovered?.(attempt + 1);
          return;
        } catch (e) {
          this._state = 'down';
          const reason = e instanceof KmsError ? e.message : ckrName(ckrOf(e));
          this.log.warn({ token: this.opts.tokenLabel, attempt, reason, retryInMs: delay }, 'token reconnect failed');
          await new Promise((r) => setTimeout(r, delay).unref());
          delay = Math.min(delay * 2, 5000);
        }
      }
    })().finally(() => {
      this.recovering = undefined;
    });
    return this.recovering;
  }

  /**
   * Recovery of a token whose loss its owner handles: one plain re-login (sessions closed under
   * us, as after C_CloseAllSessions), never a module reinitialization; if it fails, onLost.
   */
  private recoverOnce(): Promise<void> {
    this._state = 'recovering';
    this.handles.clear();
    this.pool.invalidate();
    this.recovering = (async () => {
      try {
        this.dropLoginSession();
        this.slot = this.findSlot();
        this.login();
        this._state = 'ready';
        this._recoveries++;
        this.log.info({ token: this.opts.tokenLabel }, 'token recovered');
      } catch (e) {
        this._state = 'down';
        this.lost(e);
      }
    })().finally(() => {
      this.recovering = undefined;
    });
    return this.recovering;
  }

  private dropLoginSession(): void {
    if (!this.loginSession) return;
    try {
      this.p.C_CloseSession(this.loginSession);
    } catch {
      /* already invalid */
    }
    this.loginSession = undefined;
  }

  /** Finds the key object with this CKA_ID, caching its handle until the next recovery. */
  handleFor(session: Handle, id: Buffer): Handle {
    const cacheKey = id.toString('hex');
    const cached = this.handles.get(cacheKey);
    if (cached) return cached;
    const found = this.find(session, [
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_TOKEN, value: true },
    ]);
    const handle = found[0];
    if (!handle) throw new ObjectMissing(cacheKey);
    this.handles.set(cacheKey, handle);
    return handle;
  }

  find(session: Handle, template: pkcs11js.Template): Handle[] {
    this.p.C_FindObjectsInit(session, template);
    try {
      const all: Handle[] = [];
      for (;;) {
        const batch = this.p.C_FindObjects(session, 256);
        if (batch.length === 0) return all;
        all.push(...batch);
      }
    } finally {
      this.p.C_FindObjectsFinal(session);
    }
  }

  /** Readiness probe: the login session answers and the slot still holds the token (see isPresent). */
  isHealthy(): boolean {
    if (this._state !== 'ready' || !this.loginSession) return false;
    try {
      this.p.C_GetSessionInfo(this.loginSession);
    } catch (e) {
      if (isSessionLost(e)) void this.recover(isModuleLost(e));
      return false;
    }
    // A session can outlive its token (SoftHSM2 keeps it when the token's files vanish): ask the
    // slot too. A token found away is recovered here as well, so it comes back without a request.
    if (this.isPresent()) return true;
    if (this.opts.onLost) this.lost(new Error('token not present'));
    else void this.recover(true);
    return false;
  }

  /**
   * Closes every session; closing the last one logs the token out (PKCS#11), so the next login
   * checks the PIN again. The module is finalized by closeModules(). `error` is what calls
   * made from now on (and callers still waiting for a session) get.
   */
  close(error?: () => KmsError): void {
    if (error) this.closedError = error;
    this._state = 'closed';
    void this.exec?.close();
    this.mod.listeners.delete(this.onReinitialized);
    this.pool.close(this.closedError);
    if (this.loginSession) {
      try {
        this.p.C_Logout(this.loginSession);
      } catch {
        /* not logged in, or the token is gone */
      }
    }
    this.dropLoginSession();
  }


  /** Names of the mechanisms a capability needs and the token does not list (empty: supported). */
  missingMechanisms(c: Capability): string[] {
    const have = this.mechanismSet ?? new Set<number>();
    return mechanismsFor(c)
      .filter((alternatives) => !alternatives.some(([, m]) => have.has(m)))
      .map((alternatives) => alternatives.map(([name]) => name).join(' or '));
  }

  forgetObjects(id: Buffer): void {
    const hex = id.toString('hex');
    for (const k of this.handles.keys()) if (k.startsWith(`${hex}/`)) this.handles.delete(k);
    this.publicKeys.delete(hex);
  }

  /** The token object with this CKA_ID and class, cached like handleFor(). */
  objectFor(session: Handle, id: Buffer, cls: number): Handle {
    const cacheKey = `${id.toString('hex')}/${cls}`;
    const cached = this.handles.get(cacheKey);
    if (cached) return cached;
    const handle = this.find(session, [
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_CLASS, value: cls },
      { type: pkcs11js.CKA_TOKEN, value: true },
    ])[0];
    if (!handle) throw new ObjectMissing(cacheKey);
    this.handles.set(cacheKey, handle);
    return handle;
  }

  /** The secret key object with this CKA_ID and key type (an AES-CBC + HMAC key is two objects under one id). */
  secretKeyOfType(session: Handle, id: Buffer, keyType: number): Handle {
    const cacheKey = `${id.toString('hex')}/key-type-${keyType}`;
    const cached = this.handles.get(cacheKey);
    if (cached) return cached;
    const handle = this.find(session, [
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: keyType },
      { type: pkcs11js.CKA_TOKEN, value: true },
    ])[0];
    if (!handle) throw new ObjectMissing(cacheKey);
    this.handles.set(cacheKey, handle);
    return handle;
  }

  keyGenFailed(e: unknown, kind: KeyKind): never {
    const code = ckrOf(e);
    const refused = [
      0x140 /* CKR_CURVE_NOT_SUPPORTED */, pkcs11js.CKR_DOMAIN_PARAMS_INVALID, pkcs11js.CKR_KEY_SIZE_RANGE,
      pkcs11js.CKR_MECHANISM_INVALID, pkcs11js.CKR_MECHANISM_PARAM_INVALID,
    ];
    if (code !== undefined && refused.includes(code)) {
      const what = kind.type === 'rsa' ? `${kind.bits}-bit RSA keys` : kind.type === 'ec' ? `the EC curve ${kind.curve}` : 'HMAC keys';
      throw Errors.unsupported(`Token '${this.opts.tokenLabel}' cannot generate ${what} (${ckrName(code)}).`);
    }
    throw e;
  }

  /** Whether the token lists this mechanism in C_GetMechanismList (read when the slot is found). */
  hasMechanism(mechanism: number): boolean {
    return this.mechanismSet?.has(mechanism) ?? false;
  }

  destroyQuietly(s: Handle, handles: Handle[]): void {
    for (const h of handles) {
      try {
        this.p.C_DestroyObject(s, h);
      } catch {
        /* a session object dies with its session anyway */
      }
    }
  }
}

/** A verification's answer: CKR_SIGNATURE_INVALID and CKR_SIGNATURE_LEN_RANGE are answers, not failures. */
export async function verdict(verify: () => Promise<boolean>): Promise<boolean> {
  try {
    return await verify();
  } catch (e) {
    const code = ckrOf(e);
    if (code === pkcs11js.CKR_SIGNATURE_INVALID || code === pkcs11js.CKR_SIGNATURE_LEN_RANGE) return false;
    throw e;
  }
}

/** A loss reason for logs: a PKCS#11 return value's name or an error message (never secrets). */
export function describeReason(reason: unknown): string {
  if (reason instanceof KmsError) return reason.message;
  const code = ckrOf(reason);
  if (code !== undefined) return ckrName(code);
  return reason instanceof Error ? reason.message : String(reason);
}
