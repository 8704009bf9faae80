// The allowed import graph (DESIGN.md §7), enforced by `npm run lint:deps` in the test command.
//
//   entry points   cli · ui · control · fleet · main          parse, authorise, call a service, render
//        │
//   services       identity · policy · anomaly · segmentation · updates · firmware · users · uplink · audit
//                  compliance · hardware · pull · datapath · flows · backup · maintenance · core · health
//        │
//   base           store (the only SQL) · keystore · dtls · coap · config · clock · log · errors · events
//
// A layer may import its own and lower layers only. dtls is a pure protocol library (node:crypto and its own
// addon). Known violations that are still being removed are listed in .dependency-cruiser-known-violations.json
// and reported as warnings; anything new fails the check.
const ENTRY = '^(gateway/src/(cli|control|fleet)/|gateway/src/main\\.ts$|ui/src/)';
const SERVICES =
  '^gateway/src/(identity|policy|anomaly|segmentation|updates|firmware|users|uplink|audit|compliance|hardware|pull|datapath|flows|backup|maintenance)/|^gateway/src/(core|health)\\.ts$';
const BASE =
  '^gateway/src/(store|keystore|dtls|coap|config|net)/|^gateway/src/(clock|log|log-throttle|errors|digest|json|version|events|groups|child|http|systemd|connection-guard|setup-code-file)\\.ts$';

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'An import cycle: the two modules cannot be understood (or loaded lazily) apart.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'dtls-is-pure',
      comment: 'dtls is a protocol library: no database, config, logging framework or gateway code.',
      severity: 'error',
      from: { path: '^gateway/src/dtls/' },
      to: {
        pathNot: ['^gateway/src/dtls/', '^gateway/src/errors\\.ts$', 'portcullis-dtls-crypto'],
        dependencyTypesNot: ['core'],
      },
    },
    {
      name: 'base-imports-no-service',
      comment:
        'The base layer (store, keystore, dtls, coap, config, clock, log) must not depend on services.',
      severity: 'error',
      from: { path: BASE },
      to: { path: `${SERVICES}|${ENTRY}` },
    },
    {
      name: 'services-import-no-entry-point',
      comment: 'Services are called by the entry points, never the other way round.',
      severity: 'error',
      from: { path: SERVICES },
      to: { path: ENTRY },
    },
    {
      name: 'entry-points-use-services-not-the-store',
      comment:
        'An entry point calls a service method (state change + audit entry in one); it never runs store code.',
      severity: 'error',
      from: { path: '^(gateway/src/(cli|control|fleet)/|ui/src/)' },
      to: { path: '^gateway/src/store/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'only-the-store-uses-sqlite',
      comment: 'SQL lives in store/ repositories.',
      severity: 'error',
      from: { pathNot: '^gateway/src/store/' },
      to: { path: 'node_modules/better-sqlite3/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)dist/' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.tsx', '.js', '.mjs', '.cjs'] },
  },
};
