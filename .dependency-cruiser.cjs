// The layers of p11kms as rules (README "Architecture in brief").
// `npm run check:layers` runs them; ./scripts/test runs that right after the typecheck,
// so an import against the direction of the layers fails CI.
//
//   src/api/<door>   decode, authenticate, call the core, encode
//   src/kms          KMS semantics (the core); no HTTP
//   src/authz        policies and grants, beside the core
//   src/audit        the audit trail, beside the core: the core hands it facts
//   src/store        metadata only
//   src/hsm          the only PKCS#11 code; no KMS semantics
//   src/model        plain types shared by several layers; imports nothing of the layers
//
// Type-only imports count (tsPreCompilationDeps): a type is a dependency too.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'door-not-token-or-store',
      comment: 'A front door (src/api/**) only decodes, authenticates, calls the core and encodes: it never reaches the token or the store.',
      severity: 'error',
      from: { path: '^src/api/' },
      to: { path: '^src/(hsm|store)/' },
    },
    {
      name: 'core-knows-no-http',
      comment: 'The KMS core and the layers beside and below it know nothing of HTTP or of any front door: adding a door touches no core file.',
      severity: 'error',
      from: { path: '^src/(kms|authz|audit|store|hsm)/' },
      to: { path: ['^src/api/', '(^|/)node_modules/express/'] },
    },
    {
      name: 'core-knows-no-http-modules',
      comment: 'Node\'s HTTP servers belong to the front doors (src/api, src/net), not the core.',
      severity: 'error',
      from: { path: '^src/(kms|authz|audit|store|hsm)/' },
      to: { dependencyTypes: ['core'], path: '^(node:)?https?$' },
    },
    {
      name: 'hsm-knows-no-kms',
      comment: 'src/hsm is PKCS#11 only: it knows nothing of KMS semantics, the store, authorization, audit or a front door.',
      severity: 'error',
      from: { path: '^src/hsm/' },
      to: { path: '^src/(kms|store|authz|audit|api)/' },
    },
    {
      name: 'only-hsm-speaks-pkcs11',
      comment: 'src/hsm is the only code that imports pkcs11js: above it, keys are handles with verbs and failures are named, never CKR codes.',
      severity: 'error',
      from: { pathNot: '^src/hsm/' },
      to: { path: '(^|/)node_modules/(pkcs11js|graphene-pk11)/' },
    },
    {
      name: 'store-is-metadata-only',
      comment: 'src/store holds metadata: it never calls the token, nor the core or the layers above it.',
      severity: 'error',
      from: { path: '^src/store/' },
      to: { path: '^src/(hsm|kms|authz|audit|api)/' },
    },
    {
      name: 'authz-not-token-or-door',
      comment: 'Authorization is decided before any token call and knows no front door: sealed secrets go through a core service, request facts arrive as plain types.',
      severity: 'error',
      from: { path: '^src/authz/' },
      to: { path: '^src/(hsm|api)/' },
    },
    {
      name: 'audit-beside-core',
      comment: 'Audit records the facts the core hands it (key ARN, key-material id, principal); it never resolves keys, parses ciphertexts or knows a front door.',
      severity: 'error',
      from: { path: '^src/audit/' },
      to: { path: '^src/(kms|api)/' },
    },
    {
      name: 'model-is-plain',
      comment: 'src/model holds plain types shared by several layers; it depends on none of them.',
      severity: 'error',
      from: { path: '^src/model/' },
      to: { path: '^src/(api|kms|authz|audit|store|hsm|net|metrics|cli)/' },
    },
    {
      name: 'no-circular',
      comment: 'No import circles between files (type-only imports included): a circle makes every file in it depend on all the others.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import the checker cannot resolve would hide a dependency from every rule above.',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.cts', '.js', '.cjs', '.d.ts'],
    },
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
};
