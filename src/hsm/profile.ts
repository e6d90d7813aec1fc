import pkcs11js from 'pkcs11js';
import { z } from 'zod';

/**
 * A module's capability profile: everything the daemon does differently per PKCS#11 module,
 * as data (native-config/<vendor>.json, `capabilities`). No code branches on a vendor; the
 * verbs read these fields. The start-up probe (probe.ts) checks them against the token.
 *
 * Mechanisms are named by their PKCS#11 name (`CKM_AES_GCM`) or, for vendor mechanisms, by
 * number (`"0x80001087"`); return values by name (`CKR_GENERAL_ERROR`) or number.
 */

/** How the module handles the AES-GCM IV on encrypt (decrypt always takes the IV back). */
export const GCM_IV_MODES = ['caller', 'token-generated', 'token-appended', 'token-prepended'] as const;
export type GcmIvMode = (typeof GCM_IV_MODES)[number];

/** The authenticated-encryption schemes of symmetric KMS keys; which one is a property of the token. */
export type AeadScheme = 'aes-gcm' | 'aes-cbc-hmac-sha256';

const MechanismRef = z.union([z.string().regex(/^CKM_[A-Z0-9_]+$/), z.string().regex(/^0x[0-9a-fA-F]{1,8}$/)]);
const CkrRef = z.union([z.string().regex(/^CKR_[A-Z0-9_]+$/), z.string().regex(/^0x[0-9a-fA-F]{1,8}$/)]);

export const CapabilitiesSchema = z
  .object({
    /** 'aes-gcm', or for modules without GCM (YubiHSM 2) AES-CBC + HMAC-SHA-256 computed in the token. */
    aead: z.enum(['aes-gcm', 'aes-cbc-hmac-sha256']).default('aes-gcm'),
    /** See GcmIvMode; README "Running on a production HSM". */
    gcmIv: z.enum(GCM_IV_MODES).default('caller'),
    /** IV length the module generates ('token-appended': 16 before Luna 7.9.3; ulIvBits asks for it) or the daemon uses. */
    gcmIvBytes: z.union([z.literal(12), z.literal(16)]).default(12),
    /** The GCM mechanism: CKM_AES_GCM, or a vendor one (CKM_CLOUDHSM_AES_GCM 0x80001087, kmsp11's CKM_CLOUDKMS_AES_GCM 0x8001e101). */
    gcmMechanism: MechanismRef.default('CKM_AES_GCM'),
    /** 'token-generated': the module requires pIv to point to a zero-filled buffer (always true in that mode; kept for old profiles). */
    gcmZeroIvBuffer: z.boolean().default(false),
    /** RFC 5649 key wrap: CKM_AES_KEY_WRAP_PAD (0x210A, SoftHSM2) or CKM_AES_KEY_WRAP_KWP (0x210B, NSS, YubiHSM). */
    keyWrapPad: z.enum(['CKM_AES_KEY_WRAP_PAD', 'CKM_AES_KEY_WRAP_KWP']).default('CKM_AES_KEY_WRAP_PAD'),
    /** Whether CKM_RSA_PKCS_OAEP takes SHA-256 (with MGF1-SHA-256); unset: found by a round-trip probe on first use. */
    oaepSha256: z.boolean().optional(),
    /** Return values that mean "this ciphertext does not authenticate" in C_Decrypt; any other is a token fault. */
    decryptFailure: z.array(CkrRef).default(['CKR_ENCRYPTED_DATA_INVALID', 'CKR_ENCRYPTED_DATA_LEN_RANGE', 'CKR_GENERAL_ERROR']),
    /** Whether the module accepts CKA_MODIFIABLE=false on generated keys (set only when true). */
    modifiableFalse: z.boolean().default(true),
    /** Whether AES key generation templates may carry an explicit CKA_SENSITIVE=true (CloudHSM refuses it; its keys are sensitive anyway). */
    aesExplicitSensitive: z.boolean().default(true),
    /** An in-process software token (SoftHSM2, NSS): its calls are CPU work, run on worker threads; a network HSM's are waits, run on the libuv pool. */
    softwareToken: z.boolean().default(false),
    /**
     * Operator opt-in: for imports wrapped with an OAEP hash the module lacks, raw RSA in the token
     * and OAEP decoding in the daemon (the decoded key passes through its memory, zeroed after use).
     * Allowed without it on an in-process software token (softwareToken), whose keys are in this
     * process's memory anyway.
     */
    daemonOaepDecode: z.boolean().default(false),
    /** Whether the module offers read-only sessions at all (CloudHSM SDK 5 does not). The daemon opens RW sessions always; documentation and emulator data. */
    readOnlySessions: z.boolean().default(true),
    /**
     * How the module sees token objects another process created. 'live': every C_FindObjects
     * does (a network HSM's server holds the objects). 'per-process': the module keeps its own
     * list, which can miss them until it is reinitialized: SoftHSM 2.6's file store re-reads the
     * token directory only when the token's generation file moved since this process last
     * looked, and this process's own object creation adopts the new value without looking
     * (OSToken::index, Generation::commit), so several daemons on one token directory can miss
     * each other's keys. On a miss the daemon looks again: after a reinitialization for
     * 'per-process', after a short pause for 'live'.
     */
    objectList: z.enum(['live', 'per-process']).default('live'),
    /** The module's own session limit per application, when it has one the token info does not report (CloudHSM: 1024). */
    maxSessionsPerApplication: z.number().int().min(1).optional(),
  })
  .strict();

export type CapabilitiesInput = z.input<typeof CapabilitiesSchema>;
export type Capabilities = z.output<typeof CapabilitiesSchema>;

export const DEFAULT_CAPABILITIES: Capabilities = CapabilitiesSchema.parse({});

/** A mechanism reference's number: a PKCS#11 constant pkcs11js knows, or a hex number. */
export function mechanismNumber(ref: string): number {
  if (ref.startsWith('0x')) return Number.parseInt(ref, 16);
  if (ref === 'CKM_AES_KEY_WRAP_KWP') return 0x210b; // PKCS#11 3.0; pkcs11js has no constant for it
  const value = (pkcs11js as unknown as Record<string, unknown>)[ref];
  if (typeof value !== 'number') throw new Error(`unknown mechanism ${ref}`);
  return value;
}

export function ckrNumber(ref: string): number {
  if (ref.startsWith('0x')) return Number.parseInt(ref, 16);
  const value = (pkcs11js as unknown as Record<string, unknown>)[ref];
  if (typeof value !== 'number') throw new Error(`unknown return value ${ref}`);
  return value;
}

/** A mechanism number's name for messages: the profile's own spelling when it is one of its refs. */
export function mechanismLabel(ref: string): string {
  return ref.startsWith('0x') ? `vendor mechanism ${ref}` : ref;
}

/** The profile facts the verbs need, resolved to numbers once. */
export interface ResolvedProfile {
  caps: Capabilities;
  gcmMechanism: number;
  keyWrapPad: number;
  decryptFailure: Set<number>;
}

export function resolveProfile(caps: Capabilities): ResolvedProfile {
  return {
    caps,
    gcmMechanism: mechanismNumber(caps.gcmMechanism),
    keyWrapPad: mechanismNumber(caps.keyWrapPad),
    decryptFailure: new Set(caps.decryptFailure.map(ckrNumber)),
  };
}

/** Checks the parts of a profile that contradict each other, before any token is asked. */
export function checkProfile(caps: Capabilities): string | undefined {
  try {
    resolveProfile(caps);
  } catch (e) {
    return (e as Error).message;
  }
  if (caps.gcmIv === 'token-prepended' && caps.gcmMechanism === 'CKM_AES_GCM') {
    return "gcmIv 'token-prepended' needs the vendor mechanism that prepends the IV (gcmMechanism), not CKM_AES_GCM";
  }
  if (caps.gcmIv === 'caller' && caps.gcmIvBytes !== 12) return "gcmIv 'caller' uses 12-byte IVs (gcmIvBytes 12)";
  return undefined;
}
