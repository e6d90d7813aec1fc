import type { MetadataStore } from '../store/types.js';

/**
 * Per-key serialisation of the lifecycle changes that await the token (rotation, import,
 * deletion of material, deletion of the key): without it two rotations could pick the same
 * version number, or a scheduled deletion could list a key's objects while a rotation adds one.
 * One daemon owns the metadata file (SQLite exclusive lock), so an in-process lock suffices.
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
  const run = previous.then(fn, fn);
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
