import pkcs11js from 'pkcs11js';
import { mechanismLabel, type ResolvedProfile } from './profile.js';

/**
 * What the daemon learns from the token at start-up (and after every reconnect): its mechanism
 * list with each mechanism's flags and key sizes, its session limit and its flags. The profile
 * is checked against it, so a profile that claims what the token does not have fails start-up
 * with a message naming both, instead of failing on the first request.
 */
export interface TokenFacts {
  mechanisms: Map<number, pkcs11js.MechanismInfo | undefined>;
  /** ulMaxRwSessionCount, or undefined when the token reports none (CK_EFFECTIVELY_INFINITE / CK_UNAVAILABLE_INFORMATION). */
  maxRwSessions: number | undefined;
  flags: number;
}

export function probeSlot(p: pkcs11js.PKCS11, slot: Buffer): TokenFacts {
  const mechanisms = new Map<number, pkcs11js.MechanismInfo | undefined>();
  for (const m of p.C_GetMechanismList(slot)) {
    let info: pkcs11js.MechanismInfo | undefined;
    try {
      info = p.C_GetMechanismInfo(slot, m);
    } catch {
      info = undefined; // listed but not described: trust the list
    }
    mechanisms.set(m, info);
  }
  const token = p.C_GetTokenInfo(slot);
  const max = token.maxRwSessionCount;
  // 0 is CK_EFFECTIVELY_INFINITE; ~0 (read as a huge double) is CK_UNAVAILABLE_INFORMATION.
  const maxRwSessions = max > 0 && max < 0xffffffff ? max : undefined;
  return { mechanisms, maxRwSessions, flags: token.flags };
}

interface Need {
  name: string;
  mechanism: number;
  flags: number;
  /** AES key length in bytes the mechanism must accept (AES mechanisms report key sizes in bytes). */
  keyBytes?: number;
}

/** What the profile's symmetric scheme needs from the token. */
function needs(profile: ResolvedProfile): Need[] {
  const { caps } = profile;
  const gen: Need = { name: 'CKM_AES_KEY_GEN', mechanism: pkcs11js.CKM_AES_KEY_GEN, flags: pkcs11js.CKF_GENERATE, keyBytes: 32 };
  if (caps.aead === 'aes-cbc-hmac-sha256') {
    return [
      gen,
      { name: 'CKM_AES_CBC', mechanism: pkcs11js.CKM_AES_CBC, flags: pkcs11js.CKF_ENCRYPT | pkcs11js.CKF_DECRYPT, keyBytes: 32 },
      { name: 'CKM_GENERIC_SECRET_KEY_GEN', mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN, flags: pkcs11js.CKF_GENERATE },
      { name: 'CKM_SHA256_HMAC', mechanism: pkcs11js.CKM_SHA256_HMAC, flags: pkcs11js.CKF_SIGN | pkcs11js.CKF_VERIFY },
    ];
  }
  return [
    gen,
    { name: mechanismLabel(caps.gcmMechanism), mechanism: profile.gcmMechanism, flags: pkcs11js.CKF_ENCRYPT | pkcs11js.CKF_DECRYPT, keyBytes: 32 },
  ];
}

/**
 * The first contradiction between profile and token, as a sentence naming both, or undefined.
 * `profileName` says where the profile came from (e.g. "hsm.capabilities").
 */
export function contradiction(profile: ResolvedProfile, facts: TokenFacts, tokenLabel: string): string | undefined {
  const { caps } = profile;
  const claim =
    caps.aead === 'aes-gcm'
      ? `aead 'aes-gcm' with gcmMechanism ${caps.gcmMechanism} (gcmIv '${caps.gcmIv}')`
      : "aead 'aes-cbc-hmac-sha256'";
  for (const need of needs(profile)) {
    if (!facts.mechanisms.has(need.mechanism)) {
      return `The profile says ${claim}, but token '${tokenLabel}' does not list ${need.name}`;
    }
    const info = facts.mechanisms.get(need.mechanism);
    if (!info) continue;
    // Some modules leave the flags 0 for mechanisms they do support; only a set flag word is evidence.
    if (info.flags !== 0 && (info.flags & need.flags) !== need.flags) {
      return `The profile says ${claim}, but token '${tokenLabel}' reports ${need.name} without the functions it needs (flags 0x${info.flags.toString(16)})`;
    }
    if (need.keyBytes !== undefined && info.maxKeySize !== 0 && (info.minKeySize > need.keyBytes || info.maxKeySize < need.keyBytes)) {
      // Some modules report AES sizes in bits; accept either unit.
      const bits = need.keyBytes * 8;
      if (info.minKeySize > bits || info.maxKeySize < bits) {
        return `The profile says ${claim}, but token '${tokenLabel}' reports ${need.name} for key sizes ${info.minKeySize}..${info.maxKeySize}, without AES-256`;
      }
    }
  }
  // The RFC 5649 wrap under the other number: the profile names the wrong one for this module.
  const other = profile.keyWrapPad === 0x210a ? 0x210b : 0x210a;
  if (!facts.mechanisms.has(profile.keyWrapPad) && facts.mechanisms.has(other)) {
    const otherName = other === 0x210a ? 'CKM_AES_KEY_WRAP_PAD (0x210A)' : 'CKM_AES_KEY_WRAP_KWP (0x210B)';
    return `The profile says keyWrapPad ${caps.keyWrapPad}, but token '${tokenLabel}' lists RFC 5649 key wrap as ${otherName}`;
  }
  return undefined;
}

/**
 * Operation sessions for the pool: the configured number, but never more than the token or
 * module allows, less the persistent login session.
 */
export function poolSize(configured: number, facts: TokenFacts, profile: ResolvedProfile): number {
  let size = configured;
  if (facts.maxRwSessions !== undefined) size = Math.min(size, facts.maxRwSessions - 1);
  if (profile.caps.maxSessionsPerApplication !== undefined) size = Math.min(size, profile.caps.maxSessionsPerApplication - 1);
  return Math.max(1, size);
}
