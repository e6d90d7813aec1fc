import { randomBytes } from 'node:crypto';
import type { Principal, SigningCredential } from '../model/identity.js';
import type { Logger } from '../log.js';
import { Secret } from '../secret.js';
import type { MetadataStore } from '../store/types.js';
import { compilePolicy, PolicyError, type CompiledPolicy } from './policy-document.js';

export interface Credential extends SigningCredential {
  principal: Principal;
}

export type PrincipalKind = 'root' | 'user' | 'role';

/** What the admin interface shows of a credential: never the secret. */
export interface CredentialInfo {
  AccessKeyId: string;
  PrincipalArn: string;
  AccountId: string;
  PrincipalType: Principal['type'];
  Enabled: boolean;
  CreatedAt: string;
  Description: string;
  /** Configured in the daemon's configuration file or environment, not in the registry. */
  FromConfig: boolean;
}

export interface CreatedCredential {
  AccessKeyId: string;
  SecretAccessKey: string;
  PrincipalArn: string;
}

/** A failure the admin interface reports to its caller as a 400 with this message. */
export class AdminError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

interface Entry {
  secret: Secret;
  principal: Principal;
  enabled: boolean;
  createdAt: number;
  description: string;
  fromConfig: boolean;
}

const NAME = /^[\w+=,.@-]{1,64}$/;
const ACCOUNT = /^\d{12}$/;
const POLICY_NAME = /^[\w+=,.@-]{1,128}$/;
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
/** IAM's limit on a user's or role's inline policies, all together (non-whitespace characters). */
const MAX_IDENTITY_POLICY_CHARS = 10_240;

const TYPES: Record<PrincipalKind, Principal['type']> = { root: 'Root', user: 'IAMUser', role: 'AssumedRole' };

export function principalArn(kind: PrincipalKind, accountId: string, name?: string): string {
  return kind === 'root' ? `arn:aws:iam::${accountId}:root` : `arn:aws:iam::${accountId}:${kind}/${name}`;
}

/** Parses a principal ARN this registry can hold: an account root, a user or a role. */
export function parseRegistryArn(arn: string): { kind: PrincipalKind; accountId: string; name?: string } | undefined {
  const m = /^arn:aws:iam::(\d{12}):(root|user\/([\w+=,.@-]{1,64})|role\/([\w+=,.@-]{1,64}))$/.exec(arn);
  if (!m) return undefined;
  const accountId = m[1] as string;
  if (m[2] === 'root') return { kind: 'root', accountId };
  return m[3] ? { kind: 'user', accountId, name: m[3] } : { kind: 'role', accountId, name: m[4] as string };
}

function newAccessKeyId(): string {
  const bytes = randomBytes(16);
  let id = 'AKIA';
  for (const b of bytes) id += BASE32[b & 31];
  return id;
}

/**
 * Access keys the daemon accepts, and the identity policies of the principals behind them.
 *
 * The bootstrap admin comes from configuration and acts as its account root. Every other
 * credential lives in the metadata store with its secret sealed under a key kept in the token;
 * at start-up the secrets are unsealed into memory (SigV4 verification is synchronous and
 * needs them). Changes made through the admin interface take effect on the next request.
 */
/**
 * Seals and opens credential secrets (SigV4 needs the secret itself, so a hash would not do).
 * The core's SecretBox (src/kms/secret-box.ts) implements it under a key in the token:
 * authorization never calls the token itself.
 */
export interface SecretSealer {
  seal(accessKeyId: string, secret: string): Promise<Buffer>;
  open(accessKeyId: string, blob: Buffer): Promise<string>;
}

export class CredentialRegistry {
  private readonly byAccessKey = new Map<string, Entry>();
  /** principal ARN → policy name → document; compiled lists cached per principal. */
  private readonly policies = new Map<string, Map<string, { document: string; compiled: CompiledPolicy }>>();
  private readonly compiled = new Map<string, readonly CompiledPolicy[]>();

  constructor(
    private readonly store?: MetadataStore,
    private readonly box?: SecretSealer,
    private readonly log?: Logger,
  ) {}

  addRoot(accountId: string, accessKeyId: string, secret: Secret): void {
    this.byAccessKey.set(accessKeyId, {
      secret,
      principal: { type: 'Root', arn: principalArn('root', accountId), accountId, accessKeyId },
      enabled: true,
      createdAt: 0,
      description: 'bootstrap admin (configuration)',
      fromConfig: true,
    });
  }

  /** Loads stored credentials (unsealing their secrets in the token) and identity policies. */
  async load(): Promise<void> {
    if (!this.store || !this.box) return;
    for (const p of this.store.listIdentityPolicies()) {
      try {
        this.setPolicy(p.principalArn, p.policyName, p.document);
      } catch (e) {
        this.log?.error({ principal: p.principalArn, policy: p.policyName, err: (e as Error).message }, 'stored identity policy ignored');
      }
    }
    for (const c of this.store.listCredentials()) {
      if (this.byAccessKey.has(c.accessKeyId)) continue; // the configured admin wins
      const parsed = parseRegistryArn(c.principalArn);
      if (!parsed) continue;
      try {
        const secret = new Secret(await this.box.open(c.accessKeyId, c.sealedSecret));
        this.byAccessKey.set(c.accessKeyId, {
          secret,
          principal: { type: TYPES[parsed.kind], arn: c.principalArn, accountId: parsed.accountId, accessKeyId: c.accessKeyId },
          enabled: c.enabled,
          createdAt: c.createdAt,
          description: c.description,
          fromConfig: false,
        });
      } catch (e) {
        this.log?.error({ accessKeyId: c.accessKeyId, err: (e as Error).message }, 'cannot unseal a stored credential; it is not usable');
      }
    }
  }

  /**
   * Re-reads credentials and identity policies after another daemon sharing the store changed
   * them (src/cluster/node.ts). What takes rights away (a deleted or disabled credential, a
   * changed policy) is applied before the first await; new secrets are unsealed afterwards.
   */
  async reload(): Promise<void> {
    if (!this.store || !this.box) return;
    const rows = new Map(this.store.listCredentials().map((c) => [c.accessKeyId, c]));
    const policies = this.store.listIdentityPolicies();
    this.policies.clear();
    this.compiled.clear();
    for (const p of policies) {
      try {
        this.setPolicy(p.principalArn, p.policyName, p.document);
      } catch {
        /* reported when it was loaded or stored */
      }
    }
    const unseal: string[] = [];
    for (const [id, e] of [...this.byAccessKey]) {
      if (e.fromConfig) continue;
      const row = rows.get(id);
      if (!row) this.byAccessKey.delete(id);
      else e.enabled = row.enabled;
    }
    for (const id of rows.keys()) if (!this.byAccessKey.has(id)) unseal.push(id);
    if (unseal.length === 0) return;
    const fresh = new CredentialRegistry(this.store, this.box, this.log);
    await fresh.load();
    // Deleted or disabled again while we were unsealing: the store decides.
    const now = new Map(this.store.listCredentials().map((c) => [c.accessKeyId, c]));
    for (const id of unseal) {
      const e = fresh.byAccessKey.get(id);
      const row = now.get(id);
      if (e && row && !this.byAccessKey.has(id)) this.byAccessKey.set(id, { ...e, enabled: row.enabled });
    }
  }

  lookup(accessKeyId: string): Credential | undefined {
    const entry = this.byAccessKey.get(accessKeyId);
    if (!entry || !entry.enabled) return undefined;
    return { accessKeyId, secretAccessKey: entry.secret.reveal(), principal: entry.principal };
  }

  /** The compiled identity policies of a user or role (none for an account root). */
  identityPolicies(arn: string): readonly CompiledPolicy[] {
    let list = this.compiled.get(arn);
    if (!list) {
      list = [...(this.policies.get(arn)?.values() ?? [])].map((p) => p.compiled);
      this.compiled.set(arn, list);
    }
    return list;
  }

  async create(opts: {
    kind: PrincipalKind;
    accountId: string;
    name?: string | undefined;
    description?: string | undefined;
    policies?: Record<string, string> | undefined;
  }): Promise<CreatedCredential> {
    if (!this.store || !this.box) throw new AdminError('This registry has no store.', 500);
    if (!ACCOUNT.test(opts.accountId)) throw new AdminError('The account id must be 12 digits.');
    if (opts.kind === 'root') {
      if (opts.name !== undefined) throw new AdminError('An account root has no name.');
      if (opts.policies && Object.keys(opts.policies).length) {
        throw new AdminError('An account root cannot have identity policies: it may do anything its account allows.');
      }
    } else if (!opts.name || !NAME.test(opts.name)) {
      throw new AdminError('The name must be 1 to 64 characters from letters, digits and +=,.@_-.');
    }
    const arn = principalArn(opts.kind, opts.accountId, opts.name);
    // Validate every policy before anything is written.
    const policies = Object.entries(opts.policies ?? {});
    for (const [name, doc] of policies) this.validatePolicy(arn, name, doc);
    let accessKeyId = newAccessKeyId();
    while (this.byAccessKey.has(accessKeyId)) accessKeyId = newAccessKeyId();
    const secret = randomBytes(30).toString('base64');
    const sealedSecret = await this.box.seal(accessKeyId, secret);
    const createdAt = Date.now();
    const description = opts.description ?? '';
    for (const [name, doc] of policies) this.store.putIdentityPolicy({ principalArn: arn, policyName: name, document: doc });
    this.store.putCredential({ accessKeyId, principalArn: arn, sealedSecret, enabled: true, createdAt, description });
    for (const [name, doc] of policies) this.setPolicy(arn, name, doc);
    this.byAccessKey.set(accessKeyId, {
      secret: new Secret(secret),
      principal: { type: TYPES[opts.kind], arn, accountId: opts.accountId, accessKeyId },
      enabled: true,
      createdAt,
      description,
      fromConfig: false,
    });
    return { AccessKeyId: accessKeyId, SecretAccessKey: secret, PrincipalArn: arn };
  }

  list(): CredentialInfo[] {
    return [...this.byAccessKey.entries()]
      .map(([id, e]) => ({
        AccessKeyId: id,
        PrincipalArn: e.principal.arn,
        AccountId: e.principal.accountId,
        PrincipalType: e.principal.type,
        Enabled: e.enabled,
        CreatedAt: new Date(e.createdAt).toISOString(),
        Description: e.description,
        FromConfig: e.fromConfig,
      }))
      .sort((a, b) => a.PrincipalArn.localeCompare(b.PrincipalArn) || a.AccessKeyId.localeCompare(b.AccessKeyId));
  }

  private stored(accessKeyId: string): Entry {
    const e = this.byAccessKey.get(accessKeyId);
    if (!e) throw new AdminError(`No credential with access key id ${accessKeyId}.`, 404);
    if (e.fromConfig) throw new AdminError('The bootstrap admin is configured in the configuration file, not here.');
    return e;
  }

  setEnabled(accessKeyId: string, enabled: boolean): void {
    const e = this.stored(accessKeyId);
    this.store?.setCredentialEnabled(accessKeyId, enabled);
    e.enabled = enabled;
  }

  delete(accessKeyId: string): void {
    this.stored(accessKeyId);
    this.store?.deleteCredential(accessKeyId);
    this.byAccessKey.delete(accessKeyId);
  }

  policiesOf(arn: string): Record<string, string> {
    return Object.fromEntries([...(this.policies.get(arn)?.entries() ?? [])].map(([n, p]) => [n, p.document]));
  }

  putPolicy(arn: string, name: string, document: string): void {
    const parsed = parseRegistryArn(arn);
    if (!parsed) throw new AdminError(`'${arn}' is not a user or role ARN of the form arn:aws:iam::<account>:user/<name>.`);
    if (parsed.kind === 'root') throw new AdminError('An account root cannot have identity policies.');
    this.validatePolicy(arn, name, document);
    this.store?.putIdentityPolicy({ principalArn: arn, policyName: name, document });
    this.setPolicy(arn, name, document);
  }

  deletePolicy(arn: string, name: string): void {
    if (!this.policies.get(arn)?.has(name)) throw new AdminError(`${arn} has no policy named ${name}.`, 404);
    this.store?.deleteIdentityPolicy(arn, name);
    this.policies.get(arn)?.delete(name);
    this.compiled.delete(arn);
  }

  private validatePolicy(arn: string, name: string, document: string): void {
    if (!POLICY_NAME.test(name)) throw new AdminError('The policy name must be 1 to 128 characters from letters, digits and +=,.@_-.');
    try {
      compilePolicy(document, 'identity');
    } catch (e) {
      if (e instanceof PolicyError) throw new AdminError(`MalformedPolicyDocument: ${e.message}`);
      throw e;
    }
    let total = document.replace(/\s/g, '').length;
    for (const [n, p] of this.policies.get(arn) ?? []) if (n !== name) total += p.document.replace(/\s/g, '').length;
    if (total > MAX_IDENTITY_POLICY_CHARS) {
      throw new AdminError(`The inline policies of ${arn} would exceed ${MAX_IDENTITY_POLICY_CHARS} characters.`);
    }
  }

  private setPolicy(arn: string, name: string, document: string): void {
    let byName = this.policies.get(arn);
    if (!byName) this.policies.set(arn, (byName = new Map()));
    byName.set(name, { document, compiled: compilePolicy(document, 'identity') });
    this.compiled.delete(arn);
  }
}
