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

/**
 * What a refused C_Login says, in terms the layers above can map without PKCS#11 codes:
 * the PIN is wrong ('pin-incorrect'), malformed or expired ('pin-rejected'), locked
 * ('pin-locked'), or another user type is logged in ('user-conflict').
 */
export type LoginRefusal = 'pin-incorrect' | 'pin-rejected' | 'pin-locked' | 'user-conflict';

export function loginRefusalOf(code: number | undefined): LoginRefusal | undefined {
  switch (code) {
    case pkcs11js.CKR_PIN_INCORRECT:
      return 'pin-incorrect';
    case pkcs11js.CKR_PIN_INVALID:
    case pkcs11js.CKR_PIN_LEN_RANGE:
    case pkcs11js.CKR_PIN_EXPIRED:
      return 'pin-rejected';
    case pkcs11js.CKR_PIN_LOCKED:
      return 'pin-locked';
    case pkcs11js.CKR_USER_ANOTHER_ALREADY_LOGGED_IN:
    case pkcs11js.CKR_USER_TOO_MANY_TYPES:
      return 'user-conflict';
    default:
      return undefined;
  }
}

/** CKR_GENERAL_ERROR: the module failed without saying why. */
export const isGeneralError = (code: number | undefined): boolean => code === pkcs11js.CKR_GENERAL_ERROR;
