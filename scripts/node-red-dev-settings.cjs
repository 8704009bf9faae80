// Node-RED with the Portcullis nodes, outside the appliance (`npm run flows:dev`): for writing and trying flows
// on a laptop or a development machine against a gateway's control socket. It listens on loopback only and has
// no editor login — never expose it; the appliance's hardened settings are systemd/node-red-settings.cjs.
// The nodes are found through the npm workspace (node_modules/node-red-contrib-portcullis → nodes/).
'use strict';

module.exports = {
  uiHost: process.env.PORTCULLIS_FLOWS_HOST || '127.0.0.1',
  uiPort: Number(process.env.PORTCULLIS_FLOWS_PORT || 1880),
  flowFile: 'flows.json',
  // The flows' control tokens sit in flows_cred.json encrypted with this; Node-RED makes one on first start
  // and keeps it in the user directory (.config.runtime.json) when it is unset.
  credentialSecret: process.env.PORTCULLIS_FLOWS_SECRET || undefined,
  functionExternalModules: false,
  externalModules: { palette: { allowInstall: false } },
  logging: { console: { level: 'info', metrics: false, audit: false } },
  editorTheme: { projects: { enabled: false }, tours: false },
};
