import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AUDIT_FILE } from '../audit/chain.js';
import { TokenSealer } from '../audit/sealer.js';
import { verifyFiles, type VerifyReport } from '../audit/verify.js';
import { ConfigError, loadConfig } from '../config.js';
import { closeModules } from '../hsm/module.js';
import { Token } from '../hsm/token.js';
import { silentLogger } from '../log.js';

const USAGE = `usage: p11kms audit verify [--no-token] [--partial] [--json] [FILE|DIR ...]

Verifies audit files as one hash chain: every record's hash, the links between records and
files, the seals (HMAC recomputed inside the token) and, against the chain head kept in the
token, that no record was removed from the end. With no FILE, verifies every file in the
configured audit directory (audit.dir, default <dataDir>/audit). With several daemons (each
keeps its own chain, its node id in every record), a DIR may hold every node's trail, e.g. one
subdirectory per node: each node's chain is verified against its own chain head and reported.

The token is opened with the daemon's configuration: P11KMS_CONFIG, P11KMS_PKCS11_MODULE,
P11KMS_TOKEN_LABEL and the user PIN from P11KMS_PIN, P11KMS_PIN_FILE, hsm.pin in the config
file, or <dataDir>/softhsm/user.pin (SoftHSM2 also needs SOFTHSM2_CONF). It may run while
the daemon runs.

  --no-token  check the hash chain only (seals and truncation are then not checked)
  --partial   the files may be a part of the trail (not from the first record, not to the last)
  --json      print the report as JSON

Exit status: 0 verified (warnings allowed), 1 tampering or loss found, 2 usage or token error.`;

export async function auditCli(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== 'verify') {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const flags = new Set(rest.filter((a) => a.startsWith('--')));
  for (const f of flags) {
    if (!['--no-token', '--partial', '--json', '--help'].includes(f)) {
      process.stderr.write(`p11kms audit verify: unknown option ${f}\n${USAGE}\n`);
      return 2;
    }
  }
  if (flags.has('--help')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError && flags.has('--no-token')) config = undefined;
    else {
      process.stderr.write(`p11kms audit verify: ${(e as Error).message}\n`);
      return 2;
    }
  }
  const args = rest.filter((a) => !a.startsWith('--'));
  const files = expand(args.length ? args : config ? [config.audit.dir] : []);
  if (!files.length) {
    process.stderr.write('p11kms audit verify: no audit files found\n');
    return 2;
  }
  let token: Token | undefined;
  try {
    if (!flags.has('--no-token') && config) {
      try {
        token = Token.open({ ...config.hsm, maxSessions: 1 }, silentLogger);
        await TokenSealer.open(token, false);
      } catch (e) {
        process.stderr.write(`p11kms audit verify: cannot use the token: ${(e as Error).message}\n`);
        return 2;
      }
    }
    // Several daemons (High availability): one chain per node, each verified against its own chain head.
    const byNode = groupByNode(files);
    const reports: { node: string | undefined; report: VerifyReport }[] = [];
    for (const [node, group] of byNode) {
      const sealer = token && (await TokenSealer.open(token, false, node));
      reports.push({ node, report: await verifyFiles(group, { sealer, partial: flags.has('--partial') }) });
    }
    if (byNode.size === 1 && reports[0]!.node === undefined) {
      const { report } = reports[0]!;
      process.stdout.write(flags.has('--json') ? `${JSON.stringify(report, null, 2)}\n` : format(report));
    } else if (flags.has('--json')) {
      process.stdout.write(`${JSON.stringify({ ok: reports.every((r) => r.report.ok), nodes: reports }, null, 2)}\n`);
    } else {
      for (const { node, report } of reports) process.stdout.write(`node ${node ?? '(single-node trail)'}:\n${format(report)}`);
    }
    return reports.every((r) => r.report.ok) ? 0 : 1;
  } finally {
    token?.close();
    closeModules();
  }
}

/** Directories expand to the audit files in them and in their subdirectories (one per node); files are taken as given. */
function expand(args: string[]): string[] {
  return args.flatMap((a) => {
    try {
      if (statSync(a).isDirectory()) {
        const entries = readdirSync(a, { withFileTypes: true });
        const sub = entries.filter((e) => e.isDirectory()).flatMap((e) => expand([join(a, e.name)]).filter((f) => f !== join(a, e.name)));
        return [...entries.filter((e) => e.isFile() && AUDIT_FILE.test(e.name)).map((e) => join(a, e.name)).sort(), ...sub];
      }
    } catch {
      /* reported by the verifier when it reads it */
    }
    return [a];
  });
}

/** Files by the node id in their first record (undefined: a single daemon's trail, or unreadable: the verifier reports it). */
function groupByNode(files: string[]): Map<string | undefined, string[]> {
  const groups = new Map<string | undefined, string[]>();
  for (const f of files) {
    let node: string | undefined;
    try {
      const first = readFileSync(f, 'utf8').split('\n', 1)[0] ?? '';
      const id = (JSON.parse(first) as { nodeId?: unknown }).nodeId;
      node = typeof id === 'string' ? id : undefined;
    } catch {
      /* the verifier reports it */
    }
    groups.set(node, [...(groups.get(node) ?? []), f]);
  }
  return groups;
}

function format(r: VerifyReport): string {
  const errors = r.findings.filter((f) => f.severity === 'error');
  const warnings = r.findings.filter((f) => f.severity === 'warning');
  const lines = [
    `${r.files.length} file(s), ${r.records} record(s) (${r.events} event(s)), seq ${r.firstSeq ?? '-'}..${r.lastSeq ?? '-'}`,
    `seals: ${r.seals.valid} valid, ${r.seals.invalid} invalid, ${r.seals.unchecked} unchecked, ${r.seals.failed} without MAC; ` +
      `sealed through seq ${r.sealedThrough ?? '-'}; token chain head: ${r.anchor ? `seq ${r.anchor.seq} (${r.anchor.file})` : '-'}`,
  ];
  for (const f of r.findings) {
    const where = `${f.file}${f.line !== undefined ? `:${f.line}` : ''}${f.seq !== undefined ? ` (seq ${f.seq})` : ''}`;
    lines.push(`${f.severity === 'error' ? 'ERROR' : 'WARN '} ${where}: ${f.message}`);
  }
  lines.push(r.ok ? `VERIFIED (${warnings.length} warning(s))` : `FAILED: ${errors.length} error(s), ${warnings.length} warning(s)`);
  return `${lines.join('\n')}\n`;
}

auditCli(process.argv.slice(3)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`p11kms audit verify: ${(e as Error).message}\n`);
    process.exit(2);
  },
);
