import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { GENESIS, RECORD_SEAL, RECORD_START, sha256hex, splitHash, splitMac, type Anchor } from './chain.js';
import type { Sealer } from './sealer.js';
import type { Recovery } from './trail.js';

export interface Finding {
  severity: 'error' | 'warning';
  file: string;
  /** 1-based line number, when the finding is about one line. */
  line?: number | undefined;
  seq?: number | undefined;
  message: string;
}

export interface VerifyOptions {
  /** Checks seal MACs and the chain head in the token; without it only the hash chain is checked. */
  sealer?: Sealer | undefined;
  /** The files may start after the first record ever written and end before the token's chain head. */
  partial?: boolean | undefined;
}

export interface VerifyReport {
  ok: boolean;
  files: string[];
  records: number;
  events: number;
  firstSeq?: number | undefined;
  lastSeq?: number | undefined;
  seals: { valid: number; invalid: number; unchecked: number; failed: number };
  /** The last seq covered by a valid seal. */
  sealedThrough?: number | undefined;
  anchor?: Anchor | undefined;
  findings: Finding[];
}

interface Line {
  n: number;
  text: string;
  end: number;
  complete: boolean;
}

interface LoadedFile {
  path: string;
  name: string;
  lines: Line[];
  start?: { seq?: number; prev?: string; file?: string; previousFile?: string | null; recovery?: Recovery } | undefined;
}

interface Rec {
  seq?: unknown;
  prev?: unknown;
  eventType?: unknown;
  final?: unknown;
  nextFile?: unknown;
  macError?: unknown;
  eventID?: unknown;
}

const RECOVERY_TEXT: Record<string, string> = {
  'unclean-shutdown': 'the daemon stopped without closing it (crash or kill); the next file continues from its last complete record',
  'write-failure': 'a write failed (disk full or I/O error); records after the last one known written were abandoned',
  'corrupt-tail': 'when the daemon restarted, complete lines at its end did not verify: they were altered while the daemon was down',
  'anchor-mismatch': "when the daemon restarted, the token's chain head was not in the files: records had been removed",
  'files-missing': "when the daemon restarted, no audit file was found although the token had a chain head: files had been removed",
  'no-anchor': 'when the daemon restarted, the token had no chain head although audit files existed (another or a re-initialised token)',
};
const BENIGN = new Set(['unclean-shutdown', 'write-failure']);

function load(path: string): LoadedFile {
  const data = readFileSync(path);
  const lines: Line[] = [];
  let offset = 0;
  let n = 0;
  while (offset < data.length) {
    const nl = data.indexOf(0x0a, offset);
    const end = nl < 0 ? data.length : nl + 1;
    lines.push({ n: ++n, text: data.subarray(offset, nl < 0 ? data.length : nl).toString('utf8'), end, complete: nl >= 0 });
    offset = end;
  }
  let start: LoadedFile['start'];
  try {
    const first = lines[0] && (JSON.parse(lines[0].text) as Record<string, unknown>);
    if (first && first.eventType === RECORD_START) start = first as LoadedFile['start'];
  } catch {
    /* reported while verifying */
  }
  return { path, name: basename(path), lines, start };
}

/**
 * Verifies audit files as one chain: every line's hash, the links between lines (seq and prev)
 * within and across files, each file's start record and the previous file's final seal, every
 * seal's MAC (in the token), and, against the chain head kept in the token, that nothing was cut
 * from the end. Reports each problem with its file, line and seq.
 */
export async function verifyFiles(paths: string[], opts: VerifyOptions = {}): Promise<VerifyReport> {
  const files = paths.map(load);
  // Chain order is seq order, whatever order the files were given in.
  files.sort((a, b) => (a.start?.seq ?? Number.MAX_SAFE_INTEGER) - (b.start?.seq ?? Number.MAX_SAFE_INTEGER) || a.name.localeCompare(b.name));
  const report: VerifyReport = { ok: false, files: files.map((f) => f.path), records: 0, events: 0, seals: { valid: 0, invalid: 0, unchecked: 0, failed: 0 }, findings: [] };
  const error = (file: string, message: string, line?: number, seq?: number) => report.findings.push({ severity: 'error', file, line, seq, message });
  const warn = (file: string, message: string, line?: number, seq?: number) => report.findings.push({ severity: 'warning', file, line, seq, message });

  let expectedSeq: number | undefined;
  let prevHash: string | undefined;
  const sealHashes = new Map<number, string>();
  let lastFinal = undefined as { file: string; nextFile?: string | undefined } | undefined;

  for (let i = 0; i < files.length; i++) {
    const f = files[i]!;
    const next = files[i + 1];
    const previous = files[i - 1];
    // A later file may say this one ended early (crash, write failure): verify only what it vouches for.
    const recoveryAfter = next?.start?.recovery?.previousFile === f.name ? next.start.recovery : undefined;
    // Benign endings (crash, failed write) are cut where the next file says; anything else is verified line by line.
    const cut = recoveryAfter && BENIGN.has(recoveryAfter.reason) ? recoveryAfter.validBytes : undefined;

    if (!f.start) {
      error(f.name, 'the file does not begin with its start record: its beginning was removed or edited', 1);
    } else {
      if (f.start.file !== f.name) warn(f.name, `the file was renamed (its start record names it ${f.start.file})`, 1, f.start.seq);
      const rec = f.start.recovery;
      if (rec) {
        const what = `${rec.previousFile ?? 'the previous file'}: ${RECOVERY_TEXT[rec.reason] ?? rec.reason}`;
        const detail = rec.anchor ? ` (token chain head: seq ${rec.anchor.seq} in ${rec.anchor.file}; files ended at seq ${rec.lastSeq})` : '';
        (BENIGN.has(rec.reason) ? warn : error)(f.name, `recorded at start: ${what}${detail}`, 1, f.start.seq);
      }
      if (previous) {
        if (f.start.previousFile !== previous.name) {
          error(f.name, `the file follows ${f.start.previousFile ?? '(nothing)'}, not ${previous.name}: a file between them is missing`, 1, f.start.seq);
        } else if (!rec && (!lastFinal || lastFinal.file !== previous.name)) {
          error(previous.name, 'the file does not end with its final seal: records at its end were removed (truncated)', previous.lines.length);
        } else if (!rec && lastFinal?.nextFile !== undefined && lastFinal.nextFile !== f.name) {
          error(previous.name, `its final seal names ${lastFinal?.nextFile} as the next file, not ${f.name}`, previous.lines.length);
        }
      } else if (f.start.seq !== 1 || f.start.prev !== GENESIS) {
        if (!opts.partial) {
          error(f.name, `the trail starts at seq ${f.start.seq}, not at the first record: earlier files are missing (use --partial to verify part of a trail)`, 1, f.start.seq);
        }
        expectedSeq = f.start.seq;
        prevHash = f.start.prev;
      }
    }
    lastFinal = undefined;

    for (const line of f.lines) {
      if (cut !== undefined && line.end > cut) {
        const ignored = f.lines.filter((l) => l.end > cut).length;
        warn(
          f.name,
          `${ignored} line(s) from here on are not part of the chain (${next!.name} continues from seq ${recoveryAfter!.lastSeq}: ${RECOVERY_TEXT[recoveryAfter!.reason]})`,
          line.n,
        );
        break;
      }
      if (!line.complete) {
        error(f.name, 'the last line is cut off: the file was truncated mid-record (if the daemon is writing this file now, run again)', line.n);
        break;
      }
      const parts = splitHash(line.text);
      let rec: Rec | undefined;
      try {
        rec = JSON.parse(line.text) as Rec;
      } catch {
        rec = undefined;
      }
      if (!parts || !rec || typeof rec.seq !== 'number') {
        error(f.name, 'the line is not a valid audit record: it was edited or inserted', line.n);
        prevHash = undefined;
        if (expectedSeq !== undefined) expectedSeq++;
        continue;
      }
      report.records++;
      const seq = rec.seq;
      if ((lastFinal as { file: string } | undefined)?.file === f.name) {
        error(f.name, `seq ${seq}: a record after the file's final seal: it was appended or inserted`, line.n, seq);
        lastFinal = undefined;
      }
      report.firstSeq ??= seq;
      report.lastSeq = seq;
      const problems: string[] = [];
      if (sha256hex(parts.text) !== parts.hash) problems.push('its content does not match its hash: the record was edited');
      if (expectedSeq !== undefined && seq !== expectedSeq) {
        problems.push(
          seq > expectedSeq
            ? `seq jumps from ${expectedSeq - 1} to ${seq}: ${seq - expectedSeq} record(s) before it were deleted`
            : `seq ${seq} where ${expectedSeq} was expected: records were reordered or inserted`,
        );
      }
      if (prevHash !== undefined && rec.prev !== prevHash && (expectedSeq === undefined || seq === expectedSeq)) {
        problems.push('it does not link to the record before it: that record was replaced, or records were inserted, removed or reordered here');
      }
      if (problems.length) error(f.name, `seq ${seq}: ${problems.join('; ')}`, line.n, seq);
      expectedSeq = seq + 1;
      prevHash = parts.hash;

      if (rec.eventType === RECORD_SEAL) {
        sealHashes.set(seq, parts.hash);
        if (rec.final === true) lastFinal = { file: f.name, nextFile: typeof rec.nextFile === 'string' ? rec.nextFile : undefined };
        const macParts = splitMac(parts.text);
        if (rec.macError !== undefined || !macParts) {
          report.seals.failed++;
          warn(f.name, 'this seal has no MAC (the token was unavailable when it was written); the next valid seal covers these records', line.n, seq);
        } else if (!opts.sealer) {
          report.seals.unchecked++;
        } else if (await opts.sealer.verify(macParts.text, macParts.mac)) {
          report.seals.valid++;
          report.sealedThrough = seq;
        } else {
          report.seals.invalid++;
          error(f.name, `seal at seq ${seq} does not verify: records before it were altered and re-hashed, or the seal was forged`, line.n, seq);
        }
      } else if (rec.eventType !== RECORD_START) {
        report.events++;
      }
    }
    if (recoveryAfter && !BENIGN.has(recoveryAfter.reason)) {
      // The next file continues from where the daemon found the chain intact; so does the check.
      expectedSeq = recoveryAfter.lastSeq + 1;
      prevHash = recoveryAfter.lastHash;
    }
  }

  const last = files[files.length - 1];
  if (last && report.lastSeq !== undefined) {
    if (opts.sealer && report.sealedThrough !== undefined && report.lastSeq > report.sealedThrough) {
      warn(last.name, `${report.lastSeq - report.sealedThrough} record(s) after the last seal (seq ${report.sealedThrough}) are not sealed yet: a running daemon seals them within its seal interval`);
    }
    if (!lastFinal) warn(last.name, 'the last file has no final seal: the daemon is still writing it, or stopped abruptly');
  }

  if (opts.sealer) {
    const anchor = await opts.sealer.readAnchor();
    report.anchor = anchor;
    const lastName = last?.name ?? '(no file)';
    if (!anchor) {
      if (!opts.partial) error(lastName, 'the token holds no audit chain head: this is not the token that sealed these files, or it was re-initialised');
    } else if (report.lastSeq === undefined || anchor.seq > report.lastSeq) {
      if (!opts.partial || anchor.file === last?.name) {
        error(lastName, `truncated: the token's chain head is seq ${anchor.seq} (${anchor.file}, ${anchor.time}) but the files end at seq ${report.lastSeq ?? 0}: later records were removed, or not every file was given`);
      }
    } else if (report.firstSeq !== undefined && anchor.seq >= report.firstSeq) {
      const h = sealHashes.get(anchor.seq);
      if (h !== anchor.hash) {
        error(anchor.file, `the record at seq ${anchor.seq} is not the seal the token vouches for: the trail was rewritten`, undefined, anchor.seq);
      }
    }
  } else {
    warn(last?.name ?? '(no file)', 'seals and the chain head were not checked (no token): only the hash chain was verified');
  }
  report.ok = !report.findings.some((x) => x.severity === 'error');
  return report;
}
