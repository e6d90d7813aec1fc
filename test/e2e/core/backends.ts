import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createNssDb, NSS_MODULE } from '../../helpers/nss.js';
import { createTempToken, SOFTHSM_MODULE } from '../../helpers/softhsm.js';

/**
 * The PKCS#11 implementations the end-to-end core (suite.ts) runs against. Each backend makes
 * a fresh token, names the module and profile (native-config/<profile>.json, `hsm.capabilities`)
 * and says what the token refuses, so the suite asserts the refusal instead of skipping.
 *
 * To add one (e.g. the HSM emulator configured as a vendor): add a Backend here and a
 * test/e2e/core/<name>.test.ts that calls runCore(backends.<name>).
 */
export interface BackendToken {
  /** Temp dir for the daemon's data; removed by cleanup(). */
  dir: string;
  module: string;
  label: string;
  pin: string;
  libraryParameters?: string;
  /** Environment the module reads (SOFTHSM2_CONF …), for this process and the inspector. */
  env: Record<string, string>;
  cleanup(): void;
}

export interface Backend {
  name: string;
  /** native-config/<profile>.json gives capabilities and maxSessions. */
  profile: string;
  /** Capabilities layered over the profile's (a variant of a real module). */
  overrides?: Record<string, unknown>;
  create(): BackendToken;
  /** Key specs this token cannot generate: the suite expects UnsupportedOperationException naming the mechanism. */
  refuses: { keySpec: string; message: RegExp }[];
  /** Whether the token takes RSAES_OAEP_SHA_256 (otherwise the daemon's raw-RSA fallback is used, still in the token). */
  oaepSha256: boolean;
  /** Whether imports are possible (a token whose symmetric keys are two objects cannot take one imported AES key). */
  imports: boolean;
  /**
   * Whether the module lets C_WrapKey take a CKA_EXTRACTABLE=false key out under a key the
   * caller made. True only for NSS softoken (non-FIPS mode), observed here: a reason it is a
   * test implementation, not a production key store (README, "Running on a production HSM").
   */
  wrapsNonExtractable: boolean;
}

const ROOT = resolve(import.meta.dirname, '../../..');

function softhsm(): BackendToken {
  const t = createTempToken();
  return { dir: t.dir, module: SOFTHSM_MODULE, label: t.label, pin: t.userPin, env: { SOFTHSM2_CONF: t.conf }, cleanup: t.cleanup };
}

export const backends = {
  softhsm2: {
    name: 'SoftHSM2',
    profile: 'softhsm2',
    create: softhsm,
    refuses: [{ keySpec: 'ECC_NIST_EDWARDS25519', message: /ECC_NIST_EDWARDS25519/ }],
    oaepSha256: false,
    imports: true,
    wrapsNonExtractable: false,
  },
  /** SoftHSM2 with its GCM left unused: the AES-CBC + HMAC-SHA-256 construction of tokens without GCM (YubiHSM 2), on a real token. */
  softhsm2CbcHmac: {
    name: 'SoftHSM2, AES-CBC + HMAC-SHA-256 (no-GCM construction)',
    profile: 'softhsm2',
    overrides: { aead: 'aes-cbc-hmac-sha256' },
    create: softhsm,
    refuses: [{ keySpec: 'ECC_NIST_EDWARDS25519', message: /ECC_NIST_EDWARDS25519/ }],
    oaepSha256: false,
    imports: false,
    wrapsNonExtractable: false,
  },
  nss: {
    name: 'NSS softoken',
    profile: 'nss',
    create: () => {
      const db = createNssDb();
      return { dir: db.dir, module: NSS_MODULE, label: db.label, pin: db.userPin, libraryParameters: db.libraryParameters, env: {}, cleanup: db.cleanup };
    },
    refuses: [
      { keySpec: 'ECC_NIST_EDWARDS25519', message: /ECC_NIST_EDWARDS25519/ },
      { keySpec: 'ECC_SECG_P256K1', message: /secp256k1|ECC_SECG_P256K1/ },
    ],
    oaepSha256: true,
    imports: true,
    wrapsNonExtractable: true,
  },
} satisfies Record<string, Backend>;

/** The daemon's configuration file for this backend: the profile's hsm section pointed at the fresh token. */
export function configFile(backend: Backend, token: BackendToken): string {
  const profile = JSON.parse(readFileSync(join(ROOT, 'native-config', `${backend.profile}.json`), 'utf8')) as {
    hsm: { capabilities: Record<string, unknown>; maxSessions: number; sessionWaitMs: number };
  };
  const file = join(token.dir, 'p11kms-core.json');
  writeFileSync(file, JSON.stringify({
    hsm: {
      module: token.module,
      tokenLabel: token.label,
      maxSessions: profile.hsm.maxSessions,
      sessionWaitMs: profile.hsm.sessionWaitMs,
      ...(token.libraryParameters ? { libraryParameters: token.libraryParameters } : {}),
      capabilities: { ...profile.hsm.capabilities, ...backend.overrides },
    },
  }));
  return file;
}
