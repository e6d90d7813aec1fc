import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';

/**
 * Whether a token with this label is present, as a fresh process sees it.
 *
 * A module loaded in this process may not notice that a token came back (SoftHSM2 keeps a token
 * whose files vanished as a broken slot until C_Finalize; network HSM clients behave alike), and
 * reinitializing the module interrupts every other token on it. So the daemon asks a short-lived
 * child process, which loads the module from scratch, and reinitializes its own module only when
 * the answer is yes. The child never logs in: no PIN leaves this process, and a failed probe
 * cannot count towards a lock-out.
 */
export type ProbeResult = { present: true } | { present: false; reason: string };

const SCRIPT = `
const [pkcs11jsPath, modulePath, label, libraryParameters] = process.argv.slice(1);
const pkcs11js = require(pkcs11jsPath);
const p = new pkcs11js.PKCS11();
let out;
try {
  p.load(modulePath);
  p.C_Initialize(libraryParameters ? { libraryParameters, flags: pkcs11js.CKF_OS_LOCKING_OK } : { flags: pkcs11js.CKF_OS_LOCKING_OK });
  const labels = [];
  for (const s of p.C_GetSlotList(true)) {
    try { labels.push(p.C_GetTokenInfo(s).label.trim()); } catch { /* broken slot */ }
  }
  out = labels.includes(label) ? { present: true } : { present: false, reason: 'no token with this label' };
  try { p.C_Finalize(); } catch {}
} catch (e) {
  out = { present: false, reason: String(e && e.message || e) };
}
process.stdout.write(JSON.stringify(out));
`;

const pkcs11jsPath = createRequire(import.meta.url).resolve('pkcs11js');

/**
 * The daemon's environment for the child (modules read their own variables, e.g. SOFTHSM2_CONF,
 * ChrystokiConfigurationPath, CKNFAST_*), minus the daemon's own settings and secrets.
 */
function probeEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('P11KMS_') && !k.startsWith('AWS_')) env[k] = v;
  }
  return env;
}

export function probeToken(
  modulePath: string, label: string, moduleEnv: Record<string, string> = {}, timeoutMs = 10_000, libraryParameters?: string,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['-e', SCRIPT, pkcs11jsPath, modulePath, label, ...(libraryParameters ? [libraryParameters] : [])],
      { env: { ...probeEnv(), ...moduleEnv }, timeout: timeoutMs, maxBuffer: 64 * 1024 },
      (err, stdout) => {
        if (err) {
          resolve({ present: false, reason: `probe failed: ${err.message.split('\n')[0]}` });
          return;
        }
        try {
          resolve(JSON.parse(stdout) as ProbeResult);
        } catch {
          resolve({ present: false, reason: 'probe gave no answer' });
        }
      },
    );
  });
}
