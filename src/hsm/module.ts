import { realpathSync } from 'node:fs';
import pkcs11js from 'pkcs11js';
import { Errors } from '../errors.js';

/** A loaded PKCS#11 library. C_Initialize runs once per process per module, with OS locking. */
export interface LoadedModule {
  path: string;
  pkcs11: pkcs11js.PKCS11;
}

const modules = new Map<string, LoadedModule>();

function initialize(p: pkcs11js.PKCS11): void {
  try {
    // Without CKF_OS_LOCKING_OK SoftHSM2 turns its own locking off.
    p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if ((e as { code?: number }).code !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw e;
  }
}

export function loadModule(path: string, env: Record<string, string> = {}): LoadedModule {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    throw Errors.internal(`PKCS#11 module not found: ${path}`);
  }
  const existing = modules.get(real);
  if (existing) return existing;
  // Modules read their configuration (e.g. SOFTHSM2_CONF) from the environment at C_Initialize.
  for (const [k, v] of Object.entries(env)) process.env[k] = v;
  const pkcs11 = new pkcs11js.PKCS11();
  pkcs11.load(real);
  initialize(pkcs11);
  const mod = { path: real, pkcs11 };
  modules.set(real, mod);
  return mod;
}

/** C_Finalize + C_Initialize: some network HSMs only see a restarted token after this. */
export function reinitializeModule(mod: LoadedModule): void {
  try {
    mod.pkcs11.C_Finalize();
  } catch {
    /* not initialized any more */
  }
  initialize(mod.pkcs11);
}

export function closeModules(): void {
  for (const mod of modules.values()) {
    try {
      mod.pkcs11.C_Finalize();
    } catch {
      /* already finalized */
    }
  }
  modules.clear();
}
