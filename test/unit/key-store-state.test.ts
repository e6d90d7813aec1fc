import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite.js';

/**
 * The custom key store connection state kept in the store's row (issue #11): a database made
 * before the state was kept there is brought up to date (a store left wanted-connected is
 * CONNECTED), and a state change is written only on the epoch and from the states its writer read.
 */

const dir = mkdtempSync(join(tmpdir(), 'p11kms-cks-state-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('custom key store connection state in the row', () => {
  it('an older database gains the columns: wanted-connected stores are CONNECTED, the others DISCONNECTED', () => {
    const path = join(dir, 'old.sqlite');
    const old = new Database(path);
    old.exec(`CREATE TABLE custom_key_stores (id TEXT PRIMARY KEY, account_id TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
      hsm_name TEXT NOT NULL UNIQUE, trust_anchor TEXT, sealed_password BLOB NOT NULL, created_at INTEGER NOT NULL,
      want_connected INTEGER NOT NULL, UNIQUE (account_id, name))`);
    const insert = old.prepare('INSERT INTO custom_key_stores VALUES (?, ?, ?, ?, ?, NULL, ?, 1, ?)');
    insert.run('cks-on', '111122223333', 'on', 'AWS_CLOUDHSM', 'cluster-onstoreabcdef', Buffer.from([1]), 1);
    insert.run('cks-off', '111122223333', 'off', 'AWS_CLOUDHSM', 'cluster-offstoreabcde', Buffer.from([1]), 0);
    old.close();
    const store = new SqliteStore(path);
    try {
      expect(store.keyStores.get('cks-on')).toMatchObject({ connectionState: 'CONNECTED', connectionEpoch: 0, wantConnected: true });
      expect(store.keyStores.get('cks-off')).toMatchObject({ connectionState: 'DISCONNECTED', connectionEpoch: 0, wantConnected: false });
    } finally {
      store.close();
    }
  });

  it('a transition is written only on the epoch and from the states its writer read', () => {
    const store = new SqliteStore(join(dir, 'new.sqlite'));
    try {
      store.keyStores.insert({
        id: 'cks-t', accountId: '111122223333', name: 't', type: 'AWS_CLOUDHSM', hsmName: 'cluster-transitionsabc', sealedPassword: Buffer.from([1]),
        createdAt: 1, wantConnected: false, connectionState: 'DISCONNECTED', connectionEpoch: 0,
      });
      const connecting = store.keyStores.transition('cks-t', 0, ['DISCONNECTED'], { state: 'CONNECTING', owner: 'node-a', bumpEpoch: true });
      expect(connecting).toMatchObject({ connectionState: 'CONNECTING', connectionEpoch: 1, connectionOwner: 'node-a' });
      // A second Connect that read the old epoch, or the old state, loses.
      expect(store.keyStores.transition('cks-t', 0, ['DISCONNECTED'], { state: 'CONNECTING', owner: 'node-b', bumpEpoch: true })).toBeUndefined();
      expect(store.keyStores.transition('cks-t', 1, ['DISCONNECTED'], { state: 'CONNECTING', owner: 'node-b', bumpEpoch: true })).toBeUndefined();
      // A Disconnect comes first; the late outcome of the connect attempt (epoch 1) is not written.
      expect(store.keyStores.transition('cks-t', 1, ['CONNECTING', 'CONNECTED'], { state: 'DISCONNECTING', bumpEpoch: true })?.connectionEpoch).toBe(2);
      expect(store.keyStores.transition('cks-t', 1, ['CONNECTING'], { state: 'CONNECTED', wantConnected: true })).toBeUndefined();
      expect(store.keyStores.get('cks-t')).toMatchObject({ connectionState: 'DISCONNECTING', connectionEpoch: 2, wantConnected: false });
      const failed = store.keyStores.transition('cks-t', 2, ['DISCONNECTING'], { state: 'FAILED', errorCode: 'CLUSTER_NOT_FOUND', wantConnected: true });
      expect(failed).toMatchObject({ connectionState: 'FAILED', connectionErrorCode: 'CLUSTER_NOT_FOUND', wantConnected: true, connectionOwner: undefined });
    } finally {
      store.close();
    }
  });
});
