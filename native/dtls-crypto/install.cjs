// npm's install step for the addon. Without a C toolchain (cc, make, python3) the build fails; that must not fail
// `npm ci` for the whole gateway: Portcullis then runs its DTLS record crypto on node:crypto (same protocol,
// slower), says so in its start-up log and in /healthz (`dtlsCrypto: node-crypto`). The appliance image refuses
// to ship without the addon (image-build/customize.sh).
'use strict';
const { spawnSync } = require('node:child_process');

const r = spawnSync('node-gyp', ['rebuild', '--release'], { stdio: 'inherit', shell: true });
if (r.status !== 0) {
  process.stderr.write(
    'portcullis-dtls-crypto: not built (is a C toolchain installed? Debian: build-essential python3). ' +
      'The gateway will use node:crypto for DTLS; build it later with `npm rebuild portcullis-dtls-crypto`.\n',
  );
}
