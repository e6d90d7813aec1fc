// Cost of one authorization decision (the engine behind authorize()), without HTTP or the token.
// usage: npm run build && node bench/authz.mjs
// Compares with @cloud-copilot/iam-simulate's runSimulation on the same key-policy decision.
import { randomUUID } from 'node:crypto';
import { Authz } from '../dist/authz/engine.js';
import { CredentialRegistry } from '../dist/authz/credentials.js';
import { newGrantId, newGrantToken } from '../dist/authz/grant-rules.js';

const A = '111122223333';
const region = 'us-east-1';
const keyId = randomUUID();
const arn = `arn:aws:kms:${region}:${A}:key/${keyId}`;
const rootAll = { Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${A}:root` }, Action: 'kms:*', Resource: '*' };
const app = `arn:aws:iam::${A}:role/app`;
const doc = (...Statement) => JSON.stringify({ Version: '2012-10-17', Statement });

const grants = [];
const store = {
  grantsForKey: () => grants,
  getTags: () => [],
  listAliases: () => ({ items: [] }),
};
const credentials = new CredentialRegistry();
credentials.putPolicy(`arn:aws:iam::${A}:user/alice`, 'p', doc({ Effect: 'Allow', Action: ['kms:Encrypt', 'kms:Decrypt'], Resource: `arn:aws:kms:*:${A}:key/*` }));
const authz = new Authz({ store, clock: { now: () => new Date() }, region, log: console }, credentials);

const key = (policy) => ({
  keyId, arn, accountId: A, region, createdAt: 0, description: '', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT',
  origin: 'AWS_KMS', keyManager: 'CUSTOMER', state: 'Enabled', policy, currentVersion: 1,
});
const ctx = (type, principalArn, input) => ({
  principal: { type, arn: principalArn, accountId: A, accessKeyId: 'AKIA' }, requestId: 'r', sourceIp: '127.0.0.1',
  input, authz,
});

const scenarios = [
  ['root, default key policy', ctx('Root', `arn:aws:iam::${A}:root`, {}), key(doc(rootAll))],
  ['user via account root + identity policy', ctx('IAMUser', `arn:aws:iam::${A}:user/alice`, {}), key(doc(rootAll))],
  ['role named in key policy, EncryptionContext condition', ctx('AssumedRole', app, { EncryptionContext: { tenant: 'a', app: 'x' } }),
    key(doc(rootAll, { Effect: 'Allow', Principal: { AWS: app }, Action: 'kms:Encrypt', Resource: '*', Condition: { StringEquals: { 'kms:EncryptionContext:tenant': 'a' }, IpAddress: { 'aws:SourceIp': '127.0.0.0/8' } } }))],
  ['role via one of 10,000 grants (constraint)', ctx('AssumedRole', app, { EncryptionContext: { tenant: 'a' } }), key(doc(rootAll))],
];
for (let i = 0; i < 10_000; i++) {
  const grantId = newGrantId();
  grants.push({
    grantId, keyId, granteePrincipal: i === 9_999 ? app : `arn:aws:iam::${A}:role/other${i}`, operations: ['Encrypt'],
    constraints: { EncryptionContextSubset: { tenant: 'a' } }, issuingAccount: A, createdAt: 0, token: newGrantToken(grantId),
  });
}

const N = 200_000;
for (const [name, c, k] of scenarios) {
  for (let i = 0; i < 2_000; i++) authz.check(c, 'Encrypt', k);
  const t = process.hrtime.bigint();
  for (let i = 0; i < N; i++) authz.check(c, 'Encrypt', k);
  const ns = Number(process.hrtime.bigint() - t) / N;
  console.log(`${name.padEnd(58)} ${(ns / 1000).toFixed(2)} µs per decision`);
}

try {
  const { runSimulation } = await import('@cloud-copilot/iam-simulate');
  const sim = {
    request: { principal: app, action: 'kms:Encrypt', resource: { resource: arn, accountId: A }, contextVariables: { 'aws:SourceIp': '127.0.0.1' } },
    identityPolicies: [], serviceControlPolicies: [], resourceControlPolicies: [],
    resourcePolicy: JSON.parse(doc(rootAll, { Effect: 'Allow', Principal: { AWS: app }, Action: 'kms:Encrypt', Resource: '*', Condition: { IpAddress: { 'aws:SourceIp': '127.0.0.0/8' } } })),
  };
  for (let i = 0; i < 200; i++) await runSimulation(sim, {});
  const M = 2_000;
  const t = process.hrtime.bigint();
  for (let i = 0; i < M; i++) await runSimulation(sim, {});
  const ns = Number(process.hrtime.bigint() - t) / M;
  console.log(`${'iam-simulate runSimulation, role in key policy, IP condition'.padEnd(58)} ${(ns / 1000).toFixed(2)} µs per decision`);
} catch (e) {
  console.log(`iam-simulate not measured: ${e.message}`);
}
