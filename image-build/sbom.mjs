// One CycloneDX 1.5 SBOM for the appliance: the Debian packages of the root file system (purl pkg:deb) and the
// npm packages of the release (from `npm sbom`). Usage: node sbom.mjs DPKG.tsv NPM-SBOM.json VERSION
import { readFileSync } from 'node:fs';

const [dpkgFile, npmFile, version] = process.argv.slice(2);
if (!dpkgFile || !npmFile || !version) {
  process.stderr.write('usage: node sbom.mjs DPKG.tsv NPM-SBOM.json VERSION\n');
  process.exit(2);
}
const debian = readFileSync(dpkgFile, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((line) => {
    const [name, ver, arch] = line.split('\t');
    return {
      type: 'library',
      'bom-ref': `pkg:deb/debian/${name}@${ver}?arch=${arch}`,
      name,
      version: ver,
      purl: `pkg:deb/debian/${name}@${encodeURIComponent(ver)}?arch=${arch}`,
    };
  });
const npm = JSON.parse(readFileSync(npmFile, 'utf8'));
const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? Math.floor(Date.now() / 1000));
process.stdout.write(
  `${JSON.stringify(
    {
      bomFormat: 'CycloneDX',
      specVersion: '1.5',
      version: 1,
      metadata: {
        timestamp: new Date(epoch * 1000).toISOString(),
        component: { type: 'firmware', name: 'portcullis-appliance', version },
      },
      components: [...debian, ...(npm.components ?? [])],
    },
    null,
    2,
  )}\n`,
);
