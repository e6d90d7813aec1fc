import pkcs11js from 'pkcs11js';
import { Errors, KmsError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Secret } from '../secret.js';
import { ckrName, ckrOf, isModuleLost, isSessionLost, isStaleHandle } from './ckr.js';
import { failedPhase, TokenExecutor } from './executor.js';
import { loadModule, reinitializeModule, type LoadedModule } from './module.js';
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
  }

  /** Connects and logs in; throws a clear error (without the PIN) when that is impossible. */
  static open(opts: TokenOptions, log: Logger): Token {
    const mod = loadModule(opts.module, opts.moduleEnv);
    try {
      return new Token(mod, opts, log);
    } catch (e) {
      if (e instanceof KmsError) throw e;
      throw Errors.internal(`Cannot open token '${opts.tokenLabel}': ${ckrName(ckrOf(e))}`);
    }
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
    const slots = this.p.C_GetSlotList(true).filter((s) => this.p.C_GetTokenInfo(s).label.trim() === this.opts.tokenLabel);
    if (slots.length === 0) throw Errors.internal(`No token labelled '${this.opts.tokenLabel}' in module ${this.opts.module}`);
    if (slots.length > 1) throw Errors.internal(`More than one token is labelled '${this.opts.tokenLabel}'; labels must be unique`);
    const slot = slots[0] as Handle;
    const mechanisms = new Set(this.p.C_GetMechanismList(slot));
    for (const [name, m] of REQUIRED_MECHANISMS) {
      if (!mechanisms.has(m)) throw Errors.unsupported(`Token '${this.opts.tokenLabel}' does not support ${name}`);
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
    for (let attempt = 0; ; attempt++) {
      if (this._state === 'closed') throw Errors.dependencyTimeout('The key store is shutting down.');
      if (this._state !== 'ready') await this.awaitRecovery();
      let pooled: Pooled<Handle> | undefined;
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
        if (e instanceof KmsError || e instanceof AuthenticationFailed) throw e;
        if (isStaleHandle(e) && attempt === 0) {
          this.handles.clear();
          continue;
        }
        if (isSessionLost(e)) {
          this.log.warn({ ckr: ckrName(ckrOf(e)), token: this.opts.tokenLabel }, 'token session lost; recovering');
          void this.recover(isModuleLost(e));
          if (attempt === 0) continue;
          throw Errors.dependencyTimeout('The key store is temporarily unavailable; the daemon is reconnecting.');
        }
        this.log.error({ ckr: ckrName(ckrOf(e)), err: (e as Error).message }, 'token operation failed');
        throw Errors.internal(`The key store failed the operation (${ckrName(ckrOf(e))}).`);
      }
    }
  }

  private async awaitRecovery(): Promise<void> {
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
    this._state = 'recovering';
    this.handles.clear();
    this.pool.invalidate();
    this.recovering = (async () => {
      let delay = 100;
      for (let attempt = 0; this._state !== 'closed'; attempt++) {
        try {
          this.dropLoginSession();
          // A plain re-login first; if that keeps failing, the module itself may need a restart.
          if (moduleLost || attempt >= 2) reinitializeModule(this.mod);
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

  /** Closes every session and logs out; the module is finalized by closeModules(). */
  close(): void {
    this._state = 'closed';
    void this.exec?.close();
    this.pool.close();
    this.dropLoginSession();
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

  /**
   * Generates a non-extractable, sensitive 256-bit generic secret that can only compute and
   * verify HMAC-SHA256 inside the token (the audit seal key).
   */
  async generateHmacKey(id: Buffer, label: string): Promise<void> {
    const t: pkcs11js.Template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
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
    if (this.opts.modifiableFalse) t.push({ type: pkcs11js.CKA_MODIFIABLE, value: false });
    await this.run(async (s) => {
      const h = await this.p.C_GenerateKeyAsync(s, { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN }, t);
      this.handles.set(id.toString('hex'), h);
    }, 'CKM_GENERIC_SECRET_KEY_GEN', 'generate');
  }

  /** HMAC-SHA256 computed inside the token with the key whose CKA_ID is `id`. */
  hmacSha256(id: Buffer, data: Buffer): Promise<Buffer> {
    return this.run((s) => {
      this.p.C_SignInit(s, { mechanism: pkcs11js.CKM_SHA256_HMAC }, this.handleFor(s, id));
      return this.p.C_SignAsync(s, data, Buffer.alloc(32));
    }, 'CKM_SHA256_HMAC', 'sign');
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
