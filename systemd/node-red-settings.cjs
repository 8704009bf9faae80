// Node-RED settings of the Portcullis appliance (installed as /etc/portcullis-flows/settings.js): the editor
// and its Admin API need a login, serve HTTPS only, and the defaults that let a flow reach beyond its
// control-API token are off. The two secrets come from systemd (LoadCredentialEncrypted= in
// portcullis-flows.service, made at first boot by `portcullis flows setup`), never from a plain file:
//   $CREDENTIALS_DIRECTORY/credential-secret  the key Node-RED encrypts flow credentials (the control token) with
//   $CREDENTIALS_DIRECTORY/tls-key            the editor's TLS private key
// Beside this file (PORTCULLIS_FLOWS_CONFIG overrides the folder; without systemd it also holds the two above,
// as files of the same names, for development and tests):
//   admin-users.json   [{"username": "...", "password": "<bcrypt hash>", "permissions": "*"}] (portcullis flows admin add)
//   tls/cert.pem
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dir = process.env.PORTCULLIS_FLOWS_CONFIG || __dirname;
const read = (name) => fs.readFileSync(path.join(dir, name), 'utf8');
// Fail closed: with neither the systemd credential nor the development file, Node-RED does not start.
const secret = (id) => fs.readFileSync(path.join(process.env.CREDENTIALS_DIRECTORY || dir, id), 'utf8');

module.exports = {
  uiHost: process.env.PORTCULLIS_FLOWS_HOST || '127.0.0.1',
  uiPort: Number(process.env.PORTCULLIS_FLOWS_PORT || 1880),
  https: { key: secret('tls-key'), cert: read('tls/cert.pem'), minVersion: 'TLSv1.2' },
  requireHttps: true,
  adminAuth: {
    type: 'credentials',
    users: JSON.parse(read('admin-users.json')),
    sessionExpiryTime: 8 * 3600,
  },
  credentialSecret: secret('credential-secret').trim(),
  // Flows expose nothing to the network: no HTTP-in endpoints, no static files.
  httpNodeRoot: false,
  // Function nodes get no modules and no shared globals; nothing is installed at run time.
  functionExternalModules: false,
  functionGlobalContext: {},
  exportGlobalContextKeys: false,
  externalModules: {
    autoInstall: false,
    palette: { allowInstall: false, allowUpload: false },
    modules: { allowInstall: false },
  },
  // Nodes that run programs or touch files are not even loaded (the service user could not reach the
  // gateway's files anyway; this keeps flows to what the Portcullis nodes and the control token allow).
  nodesExcludes: ['90-exec.js', '10-file.js', '23-watch.js'],
  editorTheme: {
    projects: { enabled: false },
    tours: false,
    palette: { catalogues: [] },
  },
  diagnostics: { enabled: false, ui: false },
  runtimeState: { enabled: false, ui: false },
  telemetry: { enabled: false },
  logging: { console: { level: 'info', metrics: false, audit: true } },
};
