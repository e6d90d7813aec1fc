import pkcs11js from 'pkcs11js';

/** A PKCS#11 return value carried by a pkcs11js error, or undefined for non-PKCS#11 failures. */
export function ckrOf(e: unknown): number | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'number' && e instanceof Error && e.name === 'Pkcs11Error' ? code : undefined;
}

export function ckrName(code: number | undefined): string {
  if (code === undefined) return 'native error';
  for (const [name, value] of Object.entries(pkcs11js)) {
    if (name.startsWith('CKR_') && value === code) return name;
  }
  return `CKR_0x${code.toString(16)}`;
}

/**
 * Return values after which the session, the login or the whole module must be rebuilt.
 * Network HSMs report these after a restart; SoftHSM2 after C_CloseAllSessions.
 */
const SESSION_LOST = new Set<number>([
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
  pkcs11js.CKR_DEVICE_ERROR,
  pkcs11js.CKR_DEVICE_REMOVED,
  pkcs11js.CKR_TOKEN_NOT_PRESENT,
  pkcs11js.CKR_TOKEN_NOT_RECOGNIZED,
  pkcs11js.CKR_SLOT_ID_INVALID,
  pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED,
  pkcs11js.CKR_SESSION_COUNT,
]);

/** Those that need C_Finalize + C_Initialize before the module sees the token again. */
const MODULE_LOST = new Set<number>([
  pkcs11js.CKR_DEVICE_REMOVED,
  pkcs11js.CKR_TOKEN_NOT_PRESENT,
  pkcs11js.CKR_TOKEN_NOT_RECOGNIZED,
  pkcs11js.CKR_SLOT_ID_INVALID,
  pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED,
]);

export const isSessionLost = (e: unknown): boolean => SESSION_LOST.has(ckrOf(e) ?? -1);
export const isModuleLost = (e: unknown): boolean => MODULE_LOST.has(ckrOf(e) ?? -1);
export const isStaleHandle = (e: unknown): boolean =>
  ckrOf(e) === pkcs11js.CKR_OBJECT_HANDLE_INVALID || ckrOf(e) === pkcs11js.CKR_KEY_HANDLE_INVALID;
