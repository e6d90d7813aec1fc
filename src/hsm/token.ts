import { createDecipheriv, createHash, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { Errors, KmsError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Secret } from '../secret.js';
import {
  CURVES, ecdsaDerToRaw, ecdsaRawToDer, ecSpki, hmacMechanism, keyGenMechanism, mechanismsFor, oaepDecode,
  oaepMechanism, pairKeyType, pairShape, rsaSpki, signMechanism, unwrapEcPoint,
  type Capability, type HashName, type KeyKind, type PairUsage, type SignScheme,
} from './asymmetric.js';
import { ckrName, ckrOf, isModuleLost, isSessionLost, isStaleHandle } from './ckr.js';
import { failedPhase, TokenExecutor } from './executor.js';
import { enterModule, leaveModule, loadModule, reinitializeModule, type LoadedModule } from './module.js';
import { SessionPool, type Pooled } from './session-pool.js';

type Handle = Buffer;

export interface TokenOptions {
  module: string;
  tokenLabel: string;
  pin: Secret;
  maxSessions: number;
  sessionWaitMs: number;
  /** Callers allowed to queue for a session before new ones are throttled. */
  maxWaiters: number;
  /** Whether the module accepts CKA_MODIFIABLE=false on generated keys. */
  modifiableFalse: boolean;
  moduleEnv?: Record<string, string>;
  /** Called after every token call with its mechanism, the time spent in the token and whether it succeeded (metrics). */
  observe?: (mechanism: string, operation: string, seconds: number, ok: boolean) => void;
  /** Called after a successful reconnect (audit trail). */
  onRecovered?: (attempts: number) => void;
  /** Worker threads for AES-GCM calls (see executor.ts); 0 keeps them on the event loop + libuv pool. Default: max(2, CPUs). */
  workerThreads?: number;
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

export interface TokenObjectInfo {
  id: Buffer;
  label: string;
}

const RW_SESSION = pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION;
const GCM_TAG_BYTES = 16;
/** Metric labels for the signing schemes' PKCS#11 mechanisms. */
const SIGN_MECHANISM_NAMES: Record<SignScheme, string> = { 'rsa-pkcs1': 'CKM_RSA_PKCS', 'rsa-pss': 'CKM_RSA_PKCS_PSS', ecdsa: 'CKM_ECDSA' };
/** Session states after C_Login (PKCS#11 CKS_RO_USER_FUNCTIONS, CKS_RW_USER_FUNCTIONS). */
const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;
/** What symmetric KMS keys need from a token; checked once at start-up rather than on first use. */
const REQUIRED_MECHANISMS: [string, number][] = [
  ['CKM_AES_KEY_GEN', pkcs11js.CKM_AES_KEY_GEN],
  ['CKM_AES_GCM', pkcs11js.CKM_AES_GCM],
];

/**
 * One PKCS#11 token: a persistent logged-in session, a pool of operation sessions, a cache of
 * object handles, and recovery when the token or its sessions are lost. Above this class keys
 * are object ids with verbs; raw handles and key material never leave it.
 */
export class Token {
  private slot: Handle;
  private loginSession: Handle | undefined;
  private readonly pool: SessionPool<Handle>;
  private readonly handles = new Map<string, Handle>();
  private recovering: Promise<void> | undefined;
  private _state: TokenState = 'ready';
  private _recoveries = 0;
  private readonly exec: TokenExecutor | undefined;
  /** Operations of this token in flight (drain() waits for them). */
  private inflight = 0;
  private drained: (() => void) | undefined;
  private closedError: () => KmsError = () => Errors.dependencyTimeout('The key store is shutting down.');
  private lostReported = false;
  private readonly onReinitialized = () => this.afterModuleReinitialized();

  private constructor(
    private readonly mod: LoadedModule,
    private readonly opts: TokenOptions,
    private readonly log: Logger,
  ) {
    this.slot = this.findSlot();
    this.login();
    this.pool = new SessionPool<Handle>({
      max: opts.maxSessions,
      waitMs: opts.sessionWaitMs,
      maxWaiters: opts.maxWaiters,
      open: () => this.p.C_OpenSession(this.slot, RW_SESSION),
      close: (s) => this.p.C_CloseSession(s),
    });
    this.exec = opts.workerThreads === 0 ? undefined : new TokenExecutor(mod.path, opts.workerThreads);
    mod.listeners.add(this.onReinitialized);
  }

  /** Connects and logs in; throws a clear error (without the PIN) when that is impossible. */
  static open(opts: TokenOptions, log: Logger): Token {
    const mod = loadModule(opts.module, opts.moduleEnv);
    try {
      return new Token(mod, opts, log);
    } catch (e) {
      if (e instanceof KmsError) throw e;
      throw new TokenOpenError(`Cannot open token '${opts.tokenLabel}': ${ckrName(ckrOf(e))}`, ckrOf(e), 'pkcs11');
    }
  }

  /** The loaded module this token is on (shared with other tokens of the same library). */
  get module(): LoadedModule {
    return this.mod;
  }

  private get p(): pkcs11js.PKCS11 {
    return this.mod.pkcs11;
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
    const mechanisms = new Set(this.p.C_GetMechanismList(slot));
    this.mechanismSet = mechanisms;
    for (const [name, m] of REQUIRED_MECHANISMS) {
      if (!mechanisms.has(m)) throw new TokenOpenError(`Token '${this.opts.tokenLabel}' does not support ${name}`, undefined, 'mechanisms');
    }
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
  private async run<T>(op: (session: Handle) => Promise<T> | T, mechanism = 'none', operation = 'other'): Promise<T> {
    this.inflight++;
    try {
      return await this.attempt(op, mechanism, operation);
    } finally {
      this.inflight--;
      if (this.inflight === 0) this.drained?.();
    }
  }

  private async attempt<T>(op: (session: Handle) => Promise<T> | T, mechanism: string, operation: string): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      if (this._state === 'closed') throw this.closedError();
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
        if (pooled) this.pool.release(pooled, !(e instanceof AuthenticationFailed || e instanceof KmsError));
        if (this.isClosed()) throw this.closedError();
        if (e instanceof AuthenticationFailed) throw e;
        if (e instanceof KmsError) {
          // A missing object can mean a missing token (SoftHSM2 keeps the session of a token
          // whose files were removed, and finds nothing in it).
          if (e.code === 'KeyUnavailableException' && this.opts.onLost && !this.isPresent()) throw this.lost(e);
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
        if (this.opts.onLost && !this.isPresent()) throw this.lost(e);
        this.log.error({ ckr: ckrName(ckrOf(e)), err: (e as Error).message }, 'token operation failed');
        throw Errors.internal(`The key store failed the operation (${ckrName(ckrOf(e))}).`);
      } finally {
        leaveModule(this.mod);
      }
    }
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
  private handleFor(session: Handle, id: Buffer): Handle {
    const cacheKey = id.toString('hex');
    const cached = this.handles.get(cacheKey);
    if (cached) return cached;
    const found = this.find(session, [
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_TOKEN, value: true },
    ]);
    const handle = found[0];
    if (!handle) throw Errors.keyUnavailable('The key material for this KMS key is not present in the key store.');
    this.handles.set(cacheKey, handle);
    return handle;
  }

  private find(session: Handle, template: pkcs11js.Template): Handle[] {
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

  private secretKeyTemplate(id: Buffer, label: string): pkcs11js.Template {
    const t: pkcs11js.Template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_SIGN, value: false },
      { type: pkcs11js.CKA_VERIFY, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ];
    if (this.opts.modifiableFalse) t.push({ type: pkcs11js.CKA_MODIFIABLE, value: false });
    return t;
  }

  /** Generates a non-extractable AES-256 key inside the token. */
  async generateAesKey(id: Buffer, label: string): Promise<void> {
    await this.run(async (s) => {
      const h = await this.p.C_GenerateKeyAsync(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, this.secretKeyTemplate(id, label));
      this.handles.set(id.toString('hex'), h);
    }, 'CKM_AES_KEY_GEN', 'generate');
  }

  private gcm(iv: Buffer, aad: Buffer): pkcs11js.Mechanism {
    return {
      mechanism: pkcs11js.CKM_AES_GCM,
      parameter: {
        type: pkcs11js.CK_PARAMS_AES_GCM,
        iv,
        aad,
        ivBits: iv.length * 8,
        tagBits: GCM_TAG_BYTES * 8,
      } as pkcs11js.AesGCM,
    };
  }

  /** AES-GCM inside the token; returns ciphertext followed by the 16-byte tag. */
  encryptGcm(id: Buffer, iv: Buffer, aad: Buffer, plaintext: Buffer): Promise<Buffer> {
    return this.run((s) => {
      if (this.exec) return this.exec.gcm('gcm-encrypt', s, this.handleFor(s, id), iv, aad, plaintext);
      this.p.C_EncryptInit(s, this.gcm(iv, aad), this.handleFor(s, id));
      return this.p.C_EncryptAsync(s, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BYTES));
    }, 'CKM_AES_GCM', 'encrypt');
  }

  /** Inverse of encryptGcm; throws AuthenticationFailed when the tag does not verify. */
  decryptGcm(id: Buffer, iv: Buffer, aad: Buffer, ciphertextAndTag: Buffer): Promise<Buffer> {
    return this.run(async (s) => {
      const key = this.handleFor(s, id);
      if (!this.exec) this.p.C_DecryptInit(s, this.gcm(iv, aad), key);
      try {
        if (this.exec) return await this.exec.gcm('gcm-decrypt', s, key, iv, aad, ciphertextAndTag);
        return await this.p.C_DecryptAsync(s, ciphertextAndTag, Buffer.alloc(ciphertextAndTag.length));
      } catch (e) {
        const inDecrypt = failedPhase(e) === undefined || failedPhase(e) === 'op';
        if (inDecrypt && ckrOf(e) !== undefined && !isSessionLost(e) && !isStaleHandle(e)) throw new AuthenticationFailed();
        throw e;
      }
    }, 'CKM_AES_GCM', 'decrypt');
  }

  /** Random bytes from the token's RNG. */
  random(n: number): Promise<Buffer> {
    return this.run((s) => this.p.C_GenerateRandom(s, Buffer.alloc(n)), 'rng', 'random');
  }

  /** Destroys every object with this CKA_ID; returns how many there were. */
  destroy(id: Buffer): Promise<number> {
    return this.run((s) => {
      this.handles.delete(id.toString('hex'));
      this.forgetObjects(id);
      const found = this.find(s, [{ type: pkcs11js.CKA_ID, value: id }]);
      for (const h of found) this.p.C_DestroyObject(s, h);
      return found.length;
    });
  }

  /** Token objects whose CKA_LABEL starts with the prefix: used by start-up reconciliation. */
  listObjects(labelPrefix: string): Promise<TokenObjectInfo[]> {
    return this.run((s) =>
      this.find(s, [{ type: pkcs11js.CKA_TOKEN, value: true }]).flatMap((h) => {
        // Label first: objects without CKA_ID (data objects, e.g. the audit chain head) must not fail the listing.
        const [label] = this.p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_LABEL }]);
        const text = (label?.value as Buffer | undefined)?.toString('utf8') ?? '';
        if (!text.startsWith(labelPrefix)) return [];
        const [id] = this.p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_ID }]);
        return [{ id: (id?.value as Buffer) ?? Buffer.alloc(0), label: text }];
      }),
    );
  }

  /** Readiness probe: the token answers C_GetSessionInfo on the login session. */
  isHealthy(): boolean {
    if (this._state !== 'ready' || !this.loginSession) return false;
    try {
      this.p.C_GetSessionInfo(this.loginSession);
      return true;
    } catch (e) {
      if (isSessionLost(e)) void this.recover(isModuleLost(e));
      return false;
    }
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

  // -------------------------------------------------------------------------------------------
  // Asymmetric and HMAC keys. Both halves of a key pair carry the key version's CKA_ID and label;
  // they are told apart by CKA_CLASS. Private and secret parts are sensitive and non-extractable.

  /** The token's mechanism list, read when the slot is found. */
  private mechanismSet: Set<number> | undefined;
  /** DER SubjectPublicKeyInfo by CKA_ID (public data; object ids are never reused). */
  private readonly publicKeys = new Map<string, Buffer>();
  /** Hashes for which the module refused CKM_RSA_PKCS_OAEP's parameters (SoftHSM2: all but SHA-1). */
  private readonly rawOaepHashes = new Set<HashName>();

  /** Names of the mechanisms a capability needs and the token does not list (empty: supported). */
  missingMechanisms(c: Capability): string[] {
    const have = this.mechanismSet ?? new Set<number>();
    return mechanismsFor(c)
      .filter((alternatives) => !alternatives.some(([, m]) => have.has(m)))
      .map((alternatives) => alternatives.map(([name]) => name).join(' or '));
  }

  private forgetObjects(id: Buffer): void {
    const hex = id.toString('hex');
    for (const k of this.handles.keys()) if (k.startsWith(`${hex}/`)) this.handles.delete(k);
    this.publicKeys.delete(hex);
  }

  /** The token object with this CKA_ID and class, cached like handleFor(). */
  private objectFor(session: Handle, id: Buffer, cls: number): Handle {
    const cacheKey = `${id.toString('hex')}/${cls}`;
    const cached = this.handles.get(cacheKey);
    if (cached) return cached;
    const handle = this.find(session, [
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_CLASS, value: cls },
      { type: pkcs11js.CKA_TOKEN, value: true },
    ])[0];
    if (!handle) throw Errors.keyUnavailable('The key material for this KMS key is not present in the key store.');
    this.handles.set(cacheKey, handle);
    return handle;
  }

  private protectedObject(id: Buffer, label: string): pkcs11js.Template {
    const t: pkcs11js.Template = [
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
    ];
    if (this.opts.modifiableFalse) t.push({ type: pkcs11js.CKA_MODIFIABLE, value: false });
    return t;
  }

  private keyGenFailed(e: unknown, kind: KeyKind): never {
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

  /**
   * Generates a key pair inside the token: the private half sensitive, non-extractable and
   * allowed exactly one usage; the public half readable (it is published by GetPublicKey).
   */
  async generateKeyPair(id: Buffer, label: string, kind: KeyKind, usage: PairUsage): Promise<void> {
    const publicTemplate: pkcs11js.Template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
      ...pairShape(kind),
      ...this.protectedObject(id, label),
      { type: pkcs11js.CKA_VERIFY, value: usage === 'sign' },
      { type: pkcs11js.CKA_ENCRYPT, value: usage === 'decrypt' },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ];
    const privateTemplate: pkcs11js.Template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pairKeyType(kind) },
      ...this.protectedObject(id, label),
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: usage === 'sign' },
      { type: pkcs11js.CKA_SIGN_RECOVER, value: false },
      { type: pkcs11js.CKA_DECRYPT, value: usage === 'decrypt' },
      { type: pkcs11js.CKA_DERIVE, value: usage === 'derive' },
      { type: pkcs11js.CKA_UNWRAP, value: false },
    ];
    await this.run(async (s) => {
      let pair: pkcs11js.KeyPair;
      try {
        pair = await this.p.C_GenerateKeyPairAsync(s, keyGenMechanism(kind), publicTemplate, privateTemplate);
      } catch (e) {
        this.keyGenFailed(e, kind);
      }
      const hex = id.toString('hex');
      this.handles.set(`${hex}/${pkcs11js.CKO_PRIVATE_KEY}`, pair.privateKey);
      this.handles.set(`${hex}/${pkcs11js.CKO_PUBLIC_KEY}`, pair.publicKey);
    });
  }

  /** Generates a non-extractable generic secret of `bytes` bytes for HMAC (sign/verify only). */
  async generateHmacKey(id: Buffer, label: string, bytes: number): Promise<void> {
    const template: pkcs11js.Template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
      { type: pkcs11js.CKA_VALUE_LEN, value: bytes },
      ...this.protectedObject(id, label),
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_VERIFY, value: true },
      { type: pkcs11js.CKA_ENCRYPT, value: false },
      { type: pkcs11js.CKA_DECRYPT, value: false },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ];
    await this.run(async (s) => {
      const h = await this.p.C_GenerateKeyAsync(s, { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN }, template);
      this.handles.set(`${id.toString('hex')}/${pkcs11js.CKO_SECRET_KEY}`, h);
    }, 'CKM_GENERIC_SECRET_KEY_GEN', 'generate');
  }

  /** Signs a digest with the private half; ECDSA signatures come back DER-encoded. */
  sign(id: Buffer, scheme: SignScheme, hash: HashName, digest: Buffer): Promise<Buffer> {
    const { mech, input } = signMechanism(scheme, hash, digest);
    return this.run(async (s) => {
      this.p.C_SignInit(s, mech, this.objectFor(s, id, pkcs11js.CKO_PRIVATE_KEY));
      const signature = await this.p.C_SignAsync(s, input, Buffer.alloc(1024));
      return scheme === 'ecdsa' ? ecdsaRawToDer(signature) : signature;
    }, SIGN_MECHANISM_NAMES[scheme], 'sign');
  }

  /** Verifies with the public half inside the token; false for any signature that does not verify. */
  verify(id: Buffer, kind: KeyKind, scheme: SignScheme, hash: HashName, digest: Buffer, signature: Buffer): Promise<boolean> {
    const { mech, input } = signMechanism(scheme, hash, digest);
    let sig: Buffer | undefined = signature;
    if (scheme === 'ecdsa') sig = kind.type === 'ec' ? ecdsaDerToRaw(signature, CURVES[kind.curve].bytes) : undefined;
    if (!sig) return Promise.resolve(false);
    const raw = sig;
    return this.run(async (s) => {
      this.p.C_VerifyInit(s, mech, this.objectFor(s, id, pkcs11js.CKO_PUBLIC_KEY));
      return this.verdict(() => this.p.C_VerifyAsync(s, input, raw));
    }, SIGN_MECHANISM_NAMES[scheme], 'verify');
  }

  /** CKR_SIGNATURE_INVALID and CKR_SIGNATURE_LEN_RANGE are answers, not failures. */
  private async verdict(verify: () => Promise<boolean>): Promise<boolean> {
    try {
      return await verify();
    } catch (e) {
      const code = ckrOf(e);
      if (code === pkcs11js.CKR_SIGNATURE_INVALID || code === pkcs11js.CKR_SIGNATURE_LEN_RANGE) return false;
      throw e;
    }
  }

  /** HMAC inside the token. */
  mac(id: Buffer, hash: HashName, message: Buffer): Promise<Buffer> {
    return this.run((s) => {
      this.p.C_SignInit(s, hmacMechanism(hash), this.objectFor(s, id, pkcs11js.CKO_SECRET_KEY));
      return this.p.C_SignAsync(s, message, Buffer.alloc(64));
    }, `CKM_${hash.toUpperCase()}_HMAC`, 'sign');
  }

  /** HMAC verification inside the token (the module compares); false when the MAC differs. */
  verifyMac(id: Buffer, hash: HashName, message: Buffer, mac: Buffer): Promise<boolean> {
    return this.run((s) => {
      this.p.C_VerifyInit(s, hmacMechanism(hash), this.objectFor(s, id, pkcs11js.CKO_SECRET_KEY));
      return this.verdict(() => this.p.C_VerifyAsync(s, message, mac));
    }, `CKM_${hash.toUpperCase()}_HMAC`, 'verify');
  }

  /**
   * RSAES-OAEP decryption with the private half. Uses CKM_RSA_PKCS_OAEP when the module takes
   * the hash; when it refuses the parameters (SoftHSM2 2.6 only does SHA-1), the token does the
   * raw RSA operation (CKM_RSA_X_509) and the padding is removed here. Throws
   * AuthenticationFailed for any ciphertext that does not decrypt.
   */
  decryptOaep(id: Buffer, hash: HashName, ciphertext: Buffer): Promise<Buffer> {
    const k = ciphertext.length;
    const failed = (e: unknown): never => {
      if (ckrOf(e) !== undefined && !isSessionLost(e) && !isStaleHandle(e)) throw new AuthenticationFailed();
      throw e;
    };
    return this.run(async (s) => {
      const key = this.objectFor(s, id, pkcs11js.CKO_PRIVATE_KEY);
      const native = this.mechanismSet?.has(pkcs11js.CKM_RSA_PKCS_OAEP) ?? false;
      if (native && !this.rawOaepHashes.has(hash)) {
        let initialized = false;
        try {
          this.p.C_DecryptInit(s, oaepMechanism(hash), key);
          initialized = true;
        } catch (e) {
          const code = ckrOf(e);
          if (code !== pkcs11js.CKR_ARGUMENTS_BAD && code !== pkcs11js.CKR_MECHANISM_PARAM_INVALID) throw e;
          this.rawOaepHashes.add(hash);
          this.log.info({ token: this.opts.tokenLabel, hash }, 'module refuses this OAEP hash; using raw RSA and OAEP decoding');
        }
        if (initialized) return this.p.C_DecryptAsync(s, ciphertext, Buffer.alloc(k)).catch(failed);
      }
      this.p.C_DecryptInit(s, { mechanism: pkcs11js.CKM_RSA_X_509 }, key);
      const out = await this.p.C_DecryptAsync(s, ciphertext, Buffer.alloc(k)).catch(failed);
      const em = out.length === k ? out : Buffer.concat([Buffer.alloc(k - out.length), out]);
      const plaintext = oaepDecode(hash, em, k);
      out.fill(0);
      em.fill(0);
      if (!plaintext) throw new AuthenticationFailed();
      return plaintext;
    });
  }

  /** The public half as DER SubjectPublicKeyInfo. */
  async publicKeyInfo(id: Buffer, kind: KeyKind): Promise<Buffer> {
    const hex = id.toString('hex');
    const cached = this.publicKeys.get(hex);
    if (cached) return cached;
    const spki = await this.run((s) => {
      const h = this.objectFor(s, id, pkcs11js.CKO_PUBLIC_KEY);
      if (kind.type === 'rsa') {
        const [n, e] = this.p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]);
        return rsaSpki(n?.value as Buffer, e?.value as Buffer);
      }
      if (kind.type !== 'ec') throw Errors.unsupported('This key has no public key.');
      const [point] = this.p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_EC_POINT }]);
      return ecSpki(kind.curve, unwrapEcPoint(point?.value as Buffer, kind.curve));
    });
    this.publicKeys.set(hex, spki);
    return spki;
  }

  /**
   * ECDH (CKM_ECDH1_DERIVE, no KDF) with the private half and a peer's uncompressed point. The
   * raw shared secret is what AWS returns, so it is derived as a short-lived session object that
   * may be read, read once, and destroyed.
   */
  deriveEcdh(id: Buffer, curve: keyof typeof CURVES, peerPoint: Buffer): Promise<Buffer> {
    return this.run(async (s) => {
      const secret = await this.p.C_DeriveKeyAsync(
        s,
        {
          mechanism: pkcs11js.CKM_ECDH1_DERIVE,
          parameter: { type: pkcs11js.CK_PARAMS_EC_DH, kdf: pkcs11js.CKD_NULL, publicData: peerPoint } as pkcs11js.ECDH1,
        },
        this.objectFor(s, id, pkcs11js.CKO_PRIVATE_KEY),
        [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
          { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
          { type: pkcs11js.CKA_VALUE_LEN, value: CURVES[curve].bytes },
          { type: pkcs11js.CKA_TOKEN, value: false },
          { type: pkcs11js.CKA_PRIVATE, value: true },
          { type: pkcs11js.CKA_SENSITIVE, value: false },
          { type: pkcs11js.CKA_EXTRACTABLE, value: true },
        ],
      );
      try {
        const [value] = this.p.C_GetAttributeValue(s, secret, [{ type: pkcs11js.CKA_VALUE }]);
        return Buffer.from(value?.value as Buffer);
      } finally {
        this.p.C_DestroyObject(s, secret);
      }
    });
  }

  /**
   * A data key pair for GenerateDataKeyPair: generated by the token as session objects (gone
   * when the session closes), the private half extractable only by wrapping. It is wrapped
   * (CKM_AES_KEY_WRAP_PAD, RFC 5649) under a one-time AES-256 key made from the token's RNG,
   * unwrapped here, and returned as PKCS#8 DER with the public half as SubjectPublicKeyInfo.
   * Every object is destroyed before this returns; the caller zeroes the private key after use.
   */
  generateExportablePair(kind: KeyKind): Promise<{ privateKey: Buffer; publicKey: Buffer }> {
    return this.run(async (s) => {
      const kekValue = this.p.C_GenerateRandom(s, Buffer.alloc(32));
      const created: Handle[] = [];
      try {
        const kek = this.p.C_CreateObject(s, [...this.sessionAesTemplate({ wrap: true }), { type: pkcs11js.CKA_VALUE, value: kekValue }]);
        created.push(kek);
        let pair: pkcs11js.KeyPair;
        try {
          pair = await this.p.C_GenerateKeyPairAsync(
            s,
            keyGenMechanism(kind),
            [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY }, ...pairShape(kind), { type: pkcs11js.CKA_TOKEN, value: false }],
            [
              { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
              { type: pkcs11js.CKA_KEY_TYPE, value: pairKeyType(kind) },
              { type: pkcs11js.CKA_TOKEN, value: false },
              { type: pkcs11js.CKA_PRIVATE, value: true },
              { type: pkcs11js.CKA_SENSITIVE, value: true },
              { type: pkcs11js.CKA_EXTRACTABLE, value: true },
              { type: pkcs11js.CKA_SIGN, value: false },
              { type: pkcs11js.CKA_DECRYPT, value: false },
              { type: pkcs11js.CKA_DERIVE, value: false },
            ],
          );
        } catch (e) {
          this.keyGenFailed(e, kind);
        }
        created.push(pair.privateKey, pair.publicKey);
        const wrapped = await this.p.C_WrapKeyAsync(s, { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD }, kek, pair.privateKey, Buffer.alloc(8192));
        const kwp = createDecipheriv('id-aes256-wrap-pad', kekValue, Buffer.from('a65959a6', 'hex'));
        const pkcs8 = Buffer.concat([kwp.update(wrapped), kwp.final()]);
        // Re-encoded in OpenSSL's canonical form (an EC key then carries its curve and public point).
        const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
        pkcs8.fill(0);
        return {
          privateKey: key.export({ type: 'pkcs8', format: 'der' }),
          publicKey: createPublicKey(key).export({ type: 'spki', format: 'der' }),
        };
      } finally {
        kekValue.fill(0);
        for (const h of created) {
          try {
            this.p.C_DestroyObject(s, h);
          } catch {
            /* a session object dies with its session anyway */
          }
        }
      }
    });
  }

  // ── Imported key material (issue #4) ──

  private readonly oaepSupport = new Map<OaepHash, Promise<boolean>>();

  /** Whether the token lists this mechanism in C_GetMechanismList (read when the slot is found). */
  private hasMechanism(mechanism: number): boolean {
    return this.mechanismSet?.has(mechanism) ?? false;
  }

  /**
   * What this token lacks for importing key material wrapped this way (unwrapAesKey), by
   * PKCS#11 name, or undefined when it has everything.
   */
  async missingForImport(wrapping: { hash: OaepHash; aesKeyWrap: boolean }): Promise<string | undefined> {
    if (!this.hasMechanism(pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN)) return 'CKM_RSA_PKCS_KEY_PAIR_GEN';
    if (!this.hasMechanism(pkcs11js.CKM_AES_ECB)) return 'CKM_AES_ECB (used for key-material check values)';
    if (!(await this.supportsOaep(wrapping.hash))) {
      const hash = wrapping.hash === 'sha1' ? 'SHA-1' : 'SHA-256';
      return `CKM_RSA_PKCS_OAEP with ${hash} and MGF1-${hash}`;
    }
    if (wrapping.aesKeyWrap && !this.hasMechanism(pkcs11js.CKM_AES_KEY_WRAP_PAD)) {
      return 'CKM_RSA_AES_KEY_WRAP or its parts (CKM_RSA_PKCS_OAEP and CKM_AES_KEY_WRAP_PAD)';
    }
    return undefined;
  }

  /**
   * Whether C_UnwrapKey with CKM_RSA_PKCS_OAEP and this hash (MGF1 with the same hash) works in
   * this token. Listing CKM_RSA_PKCS_OAEP says nothing about its hashes (SoftHSM 2.6.1 accepts
   * only SHA-1), so the first call probes a round trip with a throwaway session key pair.
   */
  private supportsOaep(hash: OaepHash): Promise<boolean> {
    let known = this.oaepSupport.get(hash);
    if (!known) {
      known = this.probeOaep(hash);
      this.oaepSupport.set(hash, known);
      known.catch(() => this.oaepSupport.delete(hash));
    }
    return known;
  }

  private probeOaep(hash: OaepHash): Promise<boolean> {
    if (!this.hasMechanism(pkcs11js.CKM_RSA_PKCS_OAEP) || !this.hasMechanism(pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN)) {
      return Promise.resolve(false);
    }
    return this.run(async (s) => {
      const pair = await this.p.C_GenerateKeyPairAsync(
        s,
        { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN },
        [
          { type: pkcs11js.CKA_TOKEN, value: false },
          { type: pkcs11js.CKA_MODULUS_BITS, value: 2048 },
          { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
          { type: pkcs11js.CKA_ENCRYPT, value: true },
        ],
        [
          { type: pkcs11js.CKA_TOKEN, value: false },
          { type: pkcs11js.CKA_SENSITIVE, value: true },
          { type: pkcs11js.CKA_EXTRACTABLE, value: false },
          { type: pkcs11js.CKA_UNWRAP, value: true },
        ],
      );
      const created: Handle[] = [pair.publicKey, pair.privateKey];
      try {
        const mech = oaepMechanism(hash);
        this.p.C_EncryptInit(s, mech, pair.publicKey);
        // A throwaway random value, not key material: it only proves the round trip.
        const wrapped = await this.p.C_EncryptAsync(s, randomBytes(32), Buffer.alloc(512));
        created.push(await this.p.C_UnwrapKeyAsync(s, mech, pair.privateKey, wrapped, this.sessionAesTemplate()));
        return true;
      } catch (e) {
        if (isSessionLost(e) || isStaleHandle(e)) throw e;
        return false;
      } finally {
        this.destroyQuietly(s, created);
      }
    });
  }

  /**
   * Generates the RSA key pair for one import: the private key is a token object that can only
   * unwrap (sensitive, non-extractable); the public key is a session object, read and destroyed.
   * Returns the public key as DER SubjectPublicKeyInfo.
   */
  generateRsaWrappingKeyPair(id: Buffer, label: string, modulusBits: number): Promise<Buffer> {
    return this.run(async (s) => {
      const privateTemplate: pkcs11js.Template = [
        { type: pkcs11js.CKA_ID, value: id },
        { type: pkcs11js.CKA_LABEL, value: label },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: false },
        { type: pkcs11js.CKA_UNWRAP, value: true },
        { type: pkcs11js.CKA_DECRYPT, value: false },
        { type: pkcs11js.CKA_SIGN, value: false },
        { type: pkcs11js.CKA_SIGN_RECOVER, value: false },
        { type: pkcs11js.CKA_DERIVE, value: false },
      ];
      if (this.opts.modifiableFalse) privateTemplate.push({ type: pkcs11js.CKA_MODIFIABLE, value: false });
      const pair = await this.p.C_GenerateKeyPairAsync(
        s,
        { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN },
        [
          { type: pkcs11js.CKA_TOKEN, value: false },
          { type: pkcs11js.CKA_MODULUS_BITS, value: modulusBits },
          { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
          { type: pkcs11js.CKA_ENCRYPT, value: false },
          { type: pkcs11js.CKA_WRAP, value: false },
          { type: pkcs11js.CKA_VERIFY, value: false },
        ],
        privateTemplate,
      );
      try {
        const [n, e] = this.p.C_GetAttributeValue(s, pair.publicKey, [
          { type: pkcs11js.CKA_MODULUS },
          { type: pkcs11js.CKA_PUBLIC_EXPONENT },
        ]);
        const jwk = { kty: 'RSA', n: (n?.value as Buffer).toString('base64url'), e: (e?.value as Buffer).toString('base64url') };
        return createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'der' });
      } catch (err) {
        this.destroyQuietly(s, [pair.privateKey]);
        throw err;
      } finally {
        this.destroyQuietly(s, [pair.publicKey]);
      }
    });
  }

  /**
   * Unwraps imported AES-256 key material with the wrapping private key `wrappingKeyId`, inside
   * the token: the material never exists in this process. With `target`, the result is a token
   * object like generateAesKey's (sensitive, non-extractable, encrypt/decrypt only); without, a
   * session object destroyed before returning (to recognise material before committing to it).
   *
   * RSA_AES_KEY_WRAP (`aesKeyWrap`) is done as its two halves, both in the token: CKM_RSA_PKCS_OAEP
   * unwraps the first modulus-length bytes into an ephemeral AES session key (unwrap-only), and
   * CKM_AES_KEY_WRAP_PAD (RFC 5649) unwraps the rest with it. That is what CKM_RSA_AES_KEY_WRAP does,
   * and it works on tokens (SoftHSM 2.6.1) that do not offer that mechanism.
   *
   * Returns the material's check value: SHA-256 over a domain string and a fixed block encrypted
   * with the key (CKM_AES_ECB) in the token. Equal material gives an equal check value; the value
   * reveals nothing usable about the key (the block is not the zero block AES-GCM derives its
   * hash key from, and only a digest of the output leaves this class).
   *
   * Throws UnwrapFailed when the blob does not unwrap, KeyMaterialRejected when the result is not
   * usable AES-256 key material (wrong length where the token reports it, or unusable by AES).
   */
  unwrapAesKey(
    wrappingKeyId: Buffer,
    wrapping: { hash: OaepHash; aesKeyWrap: boolean; modulusBytes: number },
    blob: Buffer,
    target?: { id: Buffer; label: string },
  ): Promise<Buffer> {
    return this.run(async (s) => {
      const rsa = this.handleFor(s, wrappingKeyId);
      const template = target
        ? this.secretKeyTemplate(target.id, target.label).filter((a) => a.type !== pkcs11js.CKA_VALUE_LEN)
        : this.sessionAesTemplate({ encrypt: true });
      const ephemeral: Handle[] = [];
      let key: Handle | undefined;
      try {
        const unwrap = async (mech: pkcs11js.Mechanism, withKey: Handle, data: Buffer, t: pkcs11js.Template) => {
          try {
            return await this.p.C_UnwrapKeyAsync(s, mech, withKey, data, t);
          } catch (e) {
            if (ckrOf(e) !== undefined && !isSessionLost(e) && !isStaleHandle(e)) throw new UnwrapFailed();
            throw e;
          }
        };
        if (wrapping.aesKeyWrap) {
          const kek = await unwrap(
            oaepMechanism(wrapping.hash), rsa, blob.subarray(0, wrapping.modulusBytes), this.sessionAesTemplate({ unwrap: true }),
          );
          ephemeral.push(kek);
          key = await unwrap({ mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD }, kek, blob.subarray(wrapping.modulusBytes), template);
        } else {
          key = await unwrap(oaepMechanism(wrapping.hash), rsa, blob, template);
        }
        const check = await this.checkValueOf(s, key);
        if (target) this.handles.set(target.id.toString('hex'), key);
        else ephemeral.push(key);
        key = undefined;
        return check;
      } finally {
        // A key that failed its checks is destroyed, token object or not.
        this.destroyQuietly(s, key === undefined ? ephemeral : [...ephemeral, key]);
      }
    });
  }

  /** The check value of an AES key object (see unwrapAesKey). */
  private async checkValueOf(s: Handle, key: Handle): Promise<Buffer> {
    const [len] = this.p.C_GetAttributeValue(s, key, [{ type: pkcs11js.CKA_VALUE_LEN }]);
    const reported = len?.value instanceof Buffer && len.value.length > 0 ? readUlong(len.value) : 0;
    // The standard says the token sets CKA_VALUE_LEN on an unwrapped key; SoftHSM 2.6.1 leaves it 0.
    if (reported !== 0 && reported !== 32) throw new KeyMaterialRejected();
    let block: Buffer;
    try {
      this.p.C_EncryptInit(s, { mechanism: pkcs11js.CKM_AES_ECB }, key);
      block = await this.p.C_EncryptAsync(s, CHECK_BLOCK, Buffer.alloc(16));
    } catch (e) {
      if (ckrOf(e) !== undefined && !isSessionLost(e) && !isStaleHandle(e)) throw new KeyMaterialRejected();
      throw e;
    }
    return createHash('sha256').update(CHECK_DOMAIN).update(block).digest();
  }

  /**
   * An AES secret-key template for a short-lived session object (never stored in the token),
   * sensitive, non-extractable and allowed only the given usage.
   */
  private sessionAesTemplate(usage: { encrypt?: boolean; wrap?: boolean; unwrap?: boolean } = {}): pkcs11js.Template {
    return [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_TOKEN, value: false },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_ENCRYPT, value: usage.encrypt ?? false },
      { type: pkcs11js.CKA_DECRYPT, value: false },
      { type: pkcs11js.CKA_WRAP, value: usage.wrap ?? false },
      { type: pkcs11js.CKA_UNWRAP, value: usage.unwrap ?? false },
    ];
  }

  private destroyQuietly(s: Handle, handles: Handle[]): void {
    for (const h of handles) {
      try {
        this.p.C_DestroyObject(s, h);
      } catch {
        /* a session object dies with its session anyway */
      }
    }
  }

  // ---- Audit trail (issue 7): the seal key and the chain head live in the token too. ----

  /** Whether a secret key object with this CKA_ID exists (used to find the audit seal key). */
  hasKey(id: Buffer): Promise<boolean> {
    return this.run((s) => {
      try {
        this.handleFor(s, id);
        return true;
      } catch (e) {
        if (e instanceof KmsError) return false;
        throw e;
      }
    });
  }

  /** The values of the token data objects (CKO_DATA) with this label: normally one (see writeDataObject). */
  readDataObjects(label: string): Promise<Buffer[]> {
    return this.run((s) =>
      this.find(s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_LABEL, value: label },
      ]).map((h) => (this.p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_VALUE }])[0]?.value as Buffer) ?? Buffer.alloc(0)),
    'none', 'read-data');
  }

  /**
   * Replaces the private token data object with this label (created first, then the old one
   * destroyed, so a crash leaves the old or both, never neither). Not secret, but only a
   * logged-in user can change it.
   */
  writeDataObject(label: string, value: Buffer): Promise<void> {
    return this.run((s) => {
      const template: pkcs11js.Template = [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_LABEL, value: label },
      ];
      const old = this.find(s, template);
      this.p.C_CreateObject(s, [...template, { type: pkcs11js.CKA_PRIVATE, value: true }, { type: pkcs11js.CKA_VALUE, value }]);
      for (const h of old) this.p.C_DestroyObject(s, h);
    }, 'none', 'write-data');
  }
}

export type OaepHash = 'sha1' | 'sha256';

/** Thrown when a wrapped key does not unwrap (wrong wrapping key, algorithm, or a damaged blob). */
export class UnwrapFailed extends AuthenticationFailed {}
/** Thrown when unwrapped material is not usable as the AES-256 key it should be. */
export class KeyMaterialRejected extends AuthenticationFailed {}

/** The block encrypted for check values: fixed, and deliberately not the all-zero block. */
const CHECK_BLOCK = Buffer.from('p11kms check val', 'ascii');
const CHECK_DOMAIN = 'p11kms:key-material-check:v1';


/** A CK_ULONG attribute value in the platform's byte order and width. */
function readUlong(b: Buffer): number {
  if (b.length >= 8) return Number(b.readBigUInt64LE(0));
  return b.readUInt32LE(0);
}

/** A loss reason for logs: a PKCS#11 return value's name or an error message (never secrets). */
export function describeReason(reason: unknown): string {
  if (reason instanceof KmsError) return reason.message;
  const code = ckrOf(reason);
  if (code !== undefined) return ckrName(code);
  return reason instanceof Error ? reason.message : String(reason);
}
