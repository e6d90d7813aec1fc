/**
 * The shipped service files agree with the daemon: the example production configuration is
 * valid for loadConfig (its secret files replaced by the environment), its paths lie in the
 * unit's StateDirectory and RuntimeDirectory, and systemd accepts the unit.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';

const ROOT = resolve(import.meta.dirname, '../..');
const UNIT = readFileSync(join(ROOT, 'packaging/systemd/p11kms.service'), 'utf8');
const directive = (name: string) => new RegExp(`^${name}=(.*)$`, 'm').exec(UNIT)?.[1];
const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

describe('packaging', () => {
  it('the example configuration loads, and keeps its files where the unit lets the daemon write', () => {
    const config = loadConfig({
      P11KMS_CONFIG: join(ROOT, 'packaging/config.example.json'),
      P11KMS_PIN: 'placeholder', P11KMS_ADMIN_SECRET_ACCESS_KEY: 'placeholder', P11KMS_METRICS_BEARER_TOKEN: 'placeholder',
    });
    const state = `/var/lib/${directive('StateDirectory')}`;
    const runtime = `/run/${directive('RuntimeDirectory')}`;
    expect(config.dataDir).toBe(state);
    expect(config.audit.dir.startsWith(`${state}/`)).toBe(true);
    expect(config.socketPath.startsWith(`${runtime}/`)).toBe(true);
    for (const s of config.sidecars) expect(s.path.startsWith(`${runtime}/`)).toBe(true);
    expect(directive('Environment')).toBe('P11KMS_CONFIG=/etc/p11kms/config.json');
    expect(config.rest.tcp).toBe('sigv4');
  });

  it('the unit runs as its own user, sandboxed, restarting except on configuration errors', () => {
    expect(directive('User')).toBe('p11kms');
    for (const [k, v] of [['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['PrivateTmp', 'yes'], ['Restart', 'on-failure'], ['RestartPreventExitStatus', '2'], ['UMask', '0077']]) {
      expect([k, directive(k!)]).toEqual([k, v]);
    }
    expect(directive('ExecStart')).toMatch(/entry\.cjs serve$/);
  });

  it.skipIf(!hasAnalyze)('systemd-analyze verify accepts the unit', () => {
    const r = spawnSync('systemd-analyze', ['verify', join(ROOT, 'packaging/systemd/p11kms.service')], { encoding: 'utf8' });
    expect([r.status, r.stderr]).toEqual([0, '']);
  });
});
