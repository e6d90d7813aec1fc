import { realpathSync } from 'node:fs';
import pkcs11js from 'pkcs11js';
import { Errors } from '../errors.js';

/**
 * A loaded PKCS#11 library. C_Initialize runs once per process per module, with OS locking.
 *
 * Several tokens can share one module (the default token and custom key stores on the same
 * vendor library, e.g. two SoftHSM2 tokens). C_Finalize then ends every session of every one
 * of them, and must not run while another thread is inside the library. So a reinitialization
 * is a module-wide event: it waits until no token operation is in flight (new ones wait at a
 * gate), runs C_Finalize + C_Initialize, and tells every token on the module to log in again
 * before the gate opens.
 */
export interface LoadedModule {
  path: string;
  pkcs11: pkcs11js.PKCS11;
  /** Operations inside the library right now (between enterModule and leaveModule). */
  inflight: number;
  /** Set while a reinitialization drains the module; new operations wait for it. */
  gate: Promise<void> | undefined;
  /** Bumped by every reinitialization. */
  generation: number;
  /** Tokens on this module, told after each reinitialization. */
  readonly listeners: Set<() => void>;
  drained: (() => void) | undefined;
  /** C_Initialize's init arguments (NSS softoken), kept for reinitialization. */
  libraryParameters: string | undefined;
}

const modules = new Map<string, LoadedModule>();
/** How long a reinitialization waits for in-flight operations before going ahead anyway. */
const DRAIN_LIMIT_MS = 10_000;

function initialize(p: pkcs11js.PKCS11, libraryParameters: string | undefined): void {
  try {
    // Without CKF_OS_LOCKING_OK SoftHSM2 turns its own locking off; every module gets it.
    p.C_Initialize(libraryParameters ? { flags: pkcs11js.CKF_OS_LOCKING_OK, libraryParameters } : { flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if ((e as { code?: number }).code !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw e;
  }
}

export function loadModule(path: string, env: Record<string, string> = {}, libraryParameters?: string): LoadedModule {
  const real = realModulePath(path);
  const existing = modules.get(real);
  if (existing) return existing;
  // Modules read their configuration (e.g. SOFTHSM2_CONF) from the environment at C_Initialize.
  for (const [k, v] of Object.entries(env)) process.env[k] = v;
  const pkcs11 = new pkcs11js.PKCS11();
  pkcs11.load(real);
  initialize(pkcs11, libraryParameters);
  const mod: LoadedModule = {
    path: real, pkcs11, inflight: 0, gate: undefined, generation: 0, listeners: new Set(), drained: undefined, libraryParameters,
  };
  modules.set(real, mod);
  return mod;
}

/**
 * C_Finalize + C_Initialize of a module no token uses yet (nothing open, nothing in flight), at
 * once: for a start-up that must look at the module's slots afresh. Returns false (and does
 * nothing) when the module is in use; then reinitializeModule() is the way.
 */
export function reinitializeIdleModule(mod: LoadedModule): boolean {
  if (mod.listeners.size > 0 || mod.inflight > 0 || mod.gate) return false;
  restart(mod);
  return true;
}

function restart(mod: LoadedModule): void {
  try {
    mod.pkcs11.C_Finalize();
  } catch {
    /* not initialized any more */
  }
  initialize(mod.pkcs11, mod.libraryParameters);
  mod.generation++;
}

/** The module's real path (symlinks resolved): two configured paths to one library are one module. */
export function realModulePath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    throw Errors.internal(`PKCS#11 module not found: ${path}`);
  }
}

/** Marks an operation as inside the library; waits first while a reinitialization is running. */
export async function enterModule(mod: LoadedModule): Promise<void> {
  while (mod.gate) await mod.gate;
  mod.inflight++;
}

export function leaveModule(mod: LoadedModule): void {
  mod.inflight--;
  if (mod.inflight === 0) mod.drained?.();
}

const reinitializing = new WeakMap<LoadedModule, Promise<void>>();

/**
 * C_Finalize + C_Initialize: some network HSMs only see a restarted token after this, and
 * SoftHSM2 only sees a token whose files came back. Single-flight per module; waits for
 * in-flight operations first and notifies every token of the module afterwards.
 */
export function reinitializeModule(mod: LoadedModule): Promise<void> {
  const running = reinitializing.get(mod);
  if (running) return running;
  let open!: () => void;
  mod.gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  const done = (async () => {
    // Yield first: with nothing in flight the body would otherwise run (and its finally delete
    // the entry) before reinitializing.set below, leaving a settled promise that every later
    // call returned without reinitializing; and listeners would run inside the caller's
    // synchronous part, before it could record that a recovery is under way.
    await null;
    try {
      if (mod.inflight > 0) {
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          mod.drained = resolve;
          timer = setTimeout(resolve, DRAIN_LIMIT_MS);
        });
        clearTimeout(timer);
        mod.drained = undefined;
      }
      restart(mod);
      for (const listener of mod.listeners) {
        try {
          listener();
        } catch {
          /* each token handles its own failure */
        }
      }
    } finally {
      mod.gate = undefined;
      reinitializing.delete(mod);
      open();
    }
  })();
  reinitializing.set(mod, done);
  return done;
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
