import type { MetadataStore } from '../store/types.js';

/**
 * Per-key serialisation of the lifecycle changes that await the token (rotation, import,
 * deletion of material, deletion of the key): without it two rotations could pick the same
 * version number, or a scheduled deletion could list a key's objects while a rotation adds one.
 * With SQLite one daemon owns the metadata file, so the in-process lock suffices; a shared store
 * (PostgreSQL, several daemons) adds its cluster-wide lock of the key inside the in-process one.
 * Locks belong to a store, so daemons started one after another in one process never share them.
 */
const locksByStore = new WeakMap<MetadataStore, Map<string, Promise<unknown>>>();

export async function withKeyLock<T>(store: MetadataStore, keyId: string, fn: () => Promise<T>): Promise<T> {
  let locks = locksByStore.get(store);
  if (!locks) {
    locks = new Map();
    locksByStore.set(store, locks);
  }
  const previous = locks.get(keyId) ?? Promise.resolve();
  const locked = async () => {
    const unlock = await store.shared?.lockKey(keyId);
    try {
      return await fn();
    } finally {
      await unlock?.();
    }
  };
  const run = previous.then(locked, locked);
  const tail = run.then(
    () => undefined,
    () => undefined,
  );
  locks.set(keyId, tail);
  try {
    return await run;
  } finally {
    if (locks.get(keyId) === tail) locks.delete(keyId);
  }
}

/** Whether a lifecycle change of this key is running or queued. */
export function isKeyLocked(store: MetadataStore, keyId: string): boolean {
  return locksByStore.get(store)?.has(keyId) ?? false;
}
