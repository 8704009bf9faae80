import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ConfigError } from '../config/errors.ts';
import { PortcullisError } from '../errors.ts';
import { VERSION } from '../version.ts';
import { backupCommands } from './backup-cli.ts';
import type { DeviceAddOptions } from './device-commands.ts';
import { EXIT } from './exit-codes.ts';
import { type Io, stdio } from './io.ts';
import { CREDSTORE_DIR, FLOWS_CONFIG_DIR } from './paths.ts';

// Each command's module is imported when that command runs, so `--version` or `device list` loads only what it
// needs (the gateway, the UI and the uplink stay unloaded unless `start` runs).
const commands = {
  anomaly: () => import('./anomaly-commands.ts'),
  audit: () => import('./audit-commands.ts'),
  commands: () => import('./commands.ts'),
  compliance: () => import('./compliance-commands.ts'),
  device: () => import('./device-commands.ts'),
  firmware: () => import('./firmware-commands.ts'),
  flows: () => import('./flows-commands.ts'),
  policy: () => import('./policy-commands.ts'),
  fleet: () => import('./fleet-commands.ts'),
  segmentation: () => import('./segmentation-commands.ts'),
  trust: () => import('./trust-commands.ts'),
  ui: () => import('./ui-commands.ts'),
  update: () => import('./update-commands.ts'),
};

const HELP_FOOTER = `
Configuration: --config FILE, else $PORTCULLIS_CONFIG, else /etc/portcullis/config.yaml if it exists,
else embedded defaults (data in ./var, UI on https://127.0.0.1:8443, DTLS on 127.0.0.1:5684).

Exit codes: 0 ok; 1 failure (e.g. broken audit chain, runtime error); 2 bad usage or invalid configuration.`;

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

function positiveNumber(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
}

/** What each group of commands registers on, and how its action reports an exit code. */
interface Cli {
  program: Command;
  io: Io;
  setCode: (code: number) => void;
  configOpt: () => string | undefined;
}

// The fleet operator's commands talk to a broker like the uplink does.
const brokerOpts = (c: Command) =>
  c
    .requiredOption('--broker <url>', 'mqtts:// URL of the broker')
    .requiredOption('--ca <file>', "CA certificate (PEM) the broker's certificate is checked against")
    .requiredOption('--cert <file>', "the operator's client certificate (PEM)")
    .requiredOption('--key <file>', "the operator's client key (PEM)");
type BrokerArgs = { broker: string; ca: string; cert: string; key: string };
const broker = (o: BrokerArgs) => ({ url: o.broker, ca: o.ca, cert: o.cert, key: o.key });

function coreCommands({ program, io, setCode, configOpt }: Cli): void {
  program
    .command('start')
    .description('run the gateway until SIGTERM/SIGINT')
    .action(async () => setCode(await (await commands.commands()).startCommand(configOpt())));

  const config = program.command('config').description('configuration tools');
  config
    .command('check [file]')
    .description('validate a configuration file (default: the one start would use) and change nothing')
    .option('--print', 'print the effective configuration, defaults filled in')
    .action(async (file: string | undefined, opts: { print?: boolean }) =>
      setCode((await commands.commands()).configCheckCommand(file ?? configOpt(), opts.print ?? false, io)),
    );
}

function auditCommands({ program, io, setCode, configOpt }: Cli): void {
  const audit = program.command('audit').description('the hash-chained audit log');
  audit
    .command('verify')
    .description('check the chain, keyed head and signed checkpoints; names the first bad sequence number')
    .action(async () => setCode((await commands.audit()).auditVerifyCommand(configOpt(), io)));
  audit
    .command('export')
    .description('write entries to stdout (for a SIEM: with --checkpoints)')
    .addOption(
      new Option('--format <format>', 'output format').choices(['jsonl', 'syslog']).makeOptionMandatory(),
    )
    .option('--from <seq>', 'first sequence number', positiveInt, 1)
    .option('--checkpoints', 'also the signed checkpoints, each after the entry it names')
    .action(async (opts: { format: 'jsonl' | 'syslog'; from: number; checkpoints?: boolean }) =>
      setCode(
        (await commands.audit()).auditExportCommand(
          configOpt(),
          opts.format,
          opts.from,
          io,
          opts.checkpoints ?? false,
        ),
      ),
    );
  audit
    .command('reseal')
    .description('after verify found tampering: record it in the log and let the gateway write again')
    .requiredOption('--reason <text>', 'why (recorded in the audit log)')
    .action(async (opts: { reason: string }) =>
      setCode((await commands.audit()).auditResealCommand(configOpt(), opts.reason, io)),
    );
}

function deviceCommands({ program, io, setCode, configOpt }: Cli): Command {
  const device = program.command('device').description('sensors: provisioning, inventory, decommissioning');
  device
    .command('add <id>')
    .description('pre-provision a PSK or raw-public-key sensor (active at once)')
    .option('--psk-identity <identity>', 'the PSK identity the sensor sends')
    .option(
      '--psk-text <text>',
      "the PSK as text, as libcoap's -k takes it (16-64 bytes); - reads it from stdin (one line)",
    )
    .option('--psk <hex>', 'the PSK, 16-64 bytes of hex')
    .option('--generate-psk', 'make a 128-bit PSK and print it once (hex)')
    .option('--allow-weak-psk', "admit a legacy sensor's key under 16 bytes; the device is marked weak")
    .option(
      '--rpk <file>',
      'pin a raw-public-key sensor by its key (PEM; a private key file gives its public half)',
    )
    .option('--pull <url>', 'the sensor is a CoAP server: poll this coaps:// resource (PSK sensors)')
    .option('--interval <seconds>', 'polling interval for --pull (default 60)', positiveInt)
    .option('--segment <name>', 'network segment')
    .option('--name <name>', 'human-readable name')
    .option('--type <type>', 'device type')
    .addHelpText(
      'after',
      `
A sensor that takes its key as text (libcoap: coap-client -u boiler-3 -k "$(cat boiler-3.key)"):
  openssl rand -base64 18 > boiler-3.key
  portcullis device add boiler-3 --psk-identity boiler-3 --psk-text - < boiler-3.key`,
    )
    .action(async (id: string, opts: DeviceAddOptions) =>
      setCode((await commands.device()).deviceAddCommand(configOpt(), id, opts, io)),
    );
  device
    .command('list')
    .description('all devices')
    .option('--json', 'JSON output')
    .action(async (opts: { json?: boolean }) =>
      setCode((await commands.device()).deviceListCommand(configOpt(), opts.json ?? false, io)),
    );
  device
    .command('show <id>')
    .description('one device and its credentials (never the secrets)')
    .option('--json', 'JSON output')
    .action(async (id: string, opts: { json?: boolean }) =>
      setCode((await commands.device()).deviceShowCommand(configOpt(), id, opts.json ?? false, io)),
    );
  device
    .command('approve <id>')
    .description('let a pending certificate sensor in')
    .action(async (id: string) =>
      setCode((await commands.device()).deviceApproveCommand(configOpt(), id, io)),
    );
  device
    .command('decommission <id>')
    .description('revoke and crypto-erase its credentials, close its sessions, for good')
    .option('--reason <text>', 'recorded in the audit log')
    .action(async (id: string, opts: { reason?: string }) =>
      setCode((await commands.device()).deviceDecommissionCommand(configOpt(), id, opts.reason, io)),
    );
  return device;
}

function deviceStateCommands({ io, setCode, configOpt }: Cli, device: Command): void {
  device
    .command('place <id>')
    .description('set the segment and/or IPv4 address the firewall knows the device by')
    .option('--segment <name>', 'segment (from the configuration)')
    .option('--address <ipv4>', 'its address (a DHCP reservation or static address in the segment)')
    .action(async (id: string, opts: { segment?: string; address?: string }) =>
      setCode((await commands.segmentation()).devicePlaceCommand(configOpt(), id, opts, io)),
    );
  device
    .command('quarantine <id>')
    .description("cut a device off: it keeps only the gateway's DTLS endpoint (observe) or nothing (isolate)")
    .requiredOption('--reason <text>', 'why (recorded in the audit log)')
    .addOption(
      new Option('--mode <mode>', 'default: firewall.quarantineMode').choices(['observe', 'isolate']),
    )
    .action(async (id: string, opts: { reason: string; mode?: 'observe' | 'isolate' }) =>
      setCode(await (await commands.segmentation()).deviceQuarantineCommand(configOpt(), id, opts, io)),
    );
  device
    .command('release <id>')
    .description('end a quarantine: the device returns to its previous state')
    .option('--reason <text>', 'recorded in the audit log')
    .action(async (id: string, opts: { reason?: string }) =>
      setCode(await (await commands.segmentation()).deviceReleaseCommand(configOpt(), id, opts.reason, io)),
    );

  device
    .command('profile <id> [name]')
    .description('the policy profile a device takes (policy.profiles), and fields it overrides')
    .option('--default', "take policy.defaultProfile (forget the device's own)")
    .option(
      '--overrides <json|file>',
      'profile fields for this device only (a JSON object; replaces the last)',
    )
    .option('--clear-overrides', 'drop the device overrides')
    .action(
      async (
        id: string,
        name: string | undefined,
        opts: { default?: boolean; overrides?: string; clearOverrides?: boolean },
      ) => setCode((await commands.policy()).deviceProfileCommand(configOpt(), id, name, opts, io)),
    );
  device
    .command('unlimit <id>')
    .description('lift an automatic rate limit (an anomaly response) before it expires')
    .action(async (id: string) =>
      setCode((await commands.anomaly()).deviceUnlimitCommand(configOpt(), id, io)),
    );
}

function policyCommands({ program, io, setCode, configOpt }: Cli): void {
  const policy = program
    .command('policy')
    .description('device profiles: the per-message decision (docs/policy.md)');
  policy
    .command('show <id>')
    .description("a device's effective policy and where each field comes from")
    .option('--json', 'JSON output')
    .action(async (id: string, opts: { json?: boolean }) =>
      setCode((await commands.policy()).policyShowCommand(configOpt(), id, opts.json ?? false, io)),
    );
  policy
    .command('test')
    .description('what the policy decides for one message now, and the rule (exit 0 allow, 1 refuse)')
    .requiredOption('--device <id>', 'device id')
    .requiredOption('--method <method>', 'GET, POST, PUT or DELETE')
    .requiredOption('--resource <path>', 'e.g. /telemetry')
    .option('--content-format <n>', 'CoAP Content-Format number (50 JSON, 60 CBOR)', (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be 0-65535');
      return n;
    })
    .option('--payload <file>', 'the payload (a file, or - for stdin)')
    .option('--json', 'JSON output')
    .action(
      async (opts: {
        device: string;
        method: string;
        resource: string;
        contentFormat?: number;
        payload?: string;
        json?: boolean;
      }) => setCode((await commands.policy()).policyTestCommand(configOpt(), opts, io)),
    );

  program
    .command('detect')
    .description('behaviour detection offline: replay events (JSON lines) through the live detector')
    .requiredOption('--replay <file>', 'events file, or - for standard input')
    .option(
      '--learning-hours <h>',
      'learning period per device (default: anomaly.learningHours)',
      positiveNumber,
    )
    .option('--window-seconds <s>', 'scoring window (default: anomaly.windowSeconds)', positiveInt)
    .action(async (opts: { replay: string; learningHours?: number; windowSeconds?: number }) =>
      setCode(await (await commands.anomaly()).detectReplayCommand(configOpt(), opts.replay, opts, io)),
    );

  program
    .command('compliance')
    .description('self-assessment of the running configuration (ETSI EN 303 645, NIST IR 8259A)')
    .option('--json', 'JSON output')
    .option('--html', 'a printable HTML report')
    .action(async (opts: { json?: boolean; html?: boolean }) =>
      setCode(
        await (await commands.compliance()).complianceCommand(
          configOpt(),
          opts.json ? 'json' : opts.html ? 'html' : 'text',
          io,
        ),
      ),
    );
}

function flowsCommands({ program, io, setCode, configOpt }: Cli): void {
  const flows = program
    .command('flows')
    .description('policy flows (Node-RED): control API tokens, editor setup and admins');
  const token = flows
    .command('token')
    .description('tokens the Portcullis nodes present on the control socket');
  token
    .command('create')
    .description('a new token with scopes; printed once')
    .requiredOption('--name <name>', 'what the audit log will call it (flows:<name>)')
    .requiredOption(
      '--scopes <list>',
      'comma-separated: events:read, device:read, device:quarantine, uplink:publish, audit:write, policy:decide',
    )
    .action(async (opts: { name: string; scopes: string }) =>
      setCode((await commands.flows()).flowsTokenCreateCommand(configOpt(), opts.name, opts.scopes, io)),
    );
  token
    .command('list')
    .description('tokens, their scopes and state (never the secrets)')
    .action(async () => setCode((await commands.flows()).flowsTokenListCommand(configOpt(), io)));
  token
    .command('revoke <name>')
    .description('refuse the token from the next call on')
    .action(async (name: string) =>
      setCode((await commands.flows()).flowsTokenRevokeCommand(configOpt(), name, io)),
    );
  flows
    .command('setup')
    .description(
      "first boot of the appliance's Node-RED: credential secret and editor TLS key as encrypted systemd credentials, the editor certificate, an empty admin list (idempotent)",
    )
    .option('--config-dir <dir>', "Node-RED's settings folder", FLOWS_CONFIG_DIR)
    .option('--credstore <dir>', 'where LoadCredentialEncrypted= finds the credentials', CREDSTORE_DIR)
    .action(async (opts: { configDir: string; credstore: string }) =>
      setCode(
        await (await commands.flows()).flowsSetupCommand(
          { configDir: opts.configDir, credstoreDir: opts.credstore },
          io,
        ),
      ),
    );
  flows
    .command('admin')
    .description('Node-RED editor accounts')
    .command('add <name>')
    .description('add an editor admin; the password is read from stdin (asked twice on a terminal)')
    .option('--config-dir <dir>', "Node-RED's settings folder", FLOWS_CONFIG_DIR)
    .option('--replace', 'set a new password for an existing admin')
    .action(async (name: string, opts: { configDir: string; replace?: boolean }) =>
      setCode(
        await (await commands.flows()).flowsAdminAddCommand(opts.configDir, name, opts.replace ?? false, io),
      ),
    );
}

function updateCommands({ program, io, setCode, configOpt }: Cli): void {
  const update = program
    .command('update')
    .description('signed gateway updates: A/B, health-checked, anti-rollback');
  update
    .command('apply <bundle>')
    .description('verify, install beside the current release, switch, health-check; roll back if unhealthy')
    .action(async (bundle: string) =>
      setCode(await (await commands.update()).updateApplyCommand(configOpt(), bundle, io)),
    );
  update
    .command('rollback')
    .description('link the release before the current one again (it runs from the next restart)')
    .action(async () => setCode((await commands.update()).updateRollbackCommand(configOpt(), io)));
  update
    .command('status')
    .description('the linked release, releases on disk, the anti-rollback floor and the history')
    .option('--json', 'JSON output')
    .action(async (opts: { json?: boolean }) =>
      setCode((await commands.update()).updateStatusCommand(configOpt(), opts.json ?? false, io)),
    );
  update
    .command('keygen <dir>')
    .description('release manager: a new Ed25519 release key pair (never on the appliance)')
    .action(async (dir: string) => setCode((await commands.update()).updateKeygenCommand(dir, io)));
  update
    .command('build')
    .description('release manager: hash and sign a release folder into a bundle')
    .requiredOption(
      '--source <dir>',
      'the release folder (what /opt/portcullis/releases/<version> will hold)',
    )
    .requiredOption('--release <version>', 'its semantic version')
    .requiredOption('--min-version <version>', 'the oldest installed version it may replace')
    .option('--hardware <list>', 'x64,arm64', 'x64,arm64')
    .option('--notes <text>', 'release notes', '')
    .requiredOption('--key <file>', 'the release private key (PEM)')
    .requiredOption('--out <file>', 'the bundle to write')
    .action(
      async (o: {
        source: string;
        release: string;
        minVersion: string;
        hardware: string;
        notes: string;
        key: string;
        out: string;
      }) => setCode(await (await commands.update()).updateBuildCommand({ ...o, version: o.release }, io)),
    );
}

function firmwareCommands({ program, io, setCode, configOpt }: Cli): void {
  const firmware = program.command('firmware').description('sensor firmware: vendor keys, images, campaigns');
  firmware
    .command('vendor')
    .description('vendor keys')
    .command('add')
    .description('the key a vendor signs manifests with, for one device class (= device type)')
    .requiredOption('--vendor <name>', 'vendor')
    .requiredOption('--class <name>', 'device class, matched against device types')
    .requiredOption('--key <file>', 'public key (PEM, Ed25519 or EC P-256)')
    .action(async (o: { vendor: string; class: string; key: string }) =>
      setCode((await commands.firmware()).firmwareVendorAddCommand(configOpt(), o, io)),
    );
  firmware
    .command('upload')
    .description('verify an image against its vendor-signed manifest and store it once')
    .requiredOption('--image <file>', 'the firmware image')
    .requiredOption('--manifest <file>', 'manifest.json: vendor, class, version, digest, size, severity')
    .requiredOption('--signature <file>', "the vendor's signature over the manifest (base64)")
    .action(async (o: { image: string; manifest: string; signature: string }) =>
      setCode((await commands.firmware()).firmwareUploadCommand(configOpt(), o, io)),
    );
  firmware
    .command('list')
    .description('images and campaigns')
    .action(async () => setCode((await commands.firmware()).firmwareListCommand(configOpt(), io)));
  const campaign = firmware.command('campaign').description('staged rollouts of an image');
  campaign
    .command('create')
    .description("target the active devices of the image's class (not yet on its version)")
    .requiredOption('--image <digest>', 'the image (SHA-256)')
    .option('--segment <name>', 'only this segment')
    .option('--versions <list>', 'only devices now on one of these versions (comma-separated)')
    .option(
      '--window <spec>',
      'tell devices only then: DAYS:FROM-TO[@UTC-OFFSET-MIN], e.g. 1,2,3,4,5:7-19@60',
    )
    .option('--canary <percent>', 'first stage share (default 10)')
    .option('--max-failures <percent>', 'halt above this failure share (default 10)')
    .option('--min-sample <n>', 'finished devices before the failure share counts (default 5)')
    .action(
      async (o: {
        image: string;
        segment?: string;
        versions?: string;
        canary?: string;
        maxFailures?: string;
        minSample?: string;
      }) => setCode((await commands.firmware()).campaignCreateCommand(configOpt(), o, io)),
    );
  campaign
    .command('status <id>')
    .description('state, counts and every device')
    .option('--json', 'JSON output')
    .action(async (id: string, o: { json?: boolean }) =>
      setCode((await commands.firmware()).campaignStatusCommand(configOpt(), id, o.json ?? false, io)),
    );
  campaign
    .command('pause <id>')
    .description('tell no further device')
    .action(async (id: string) =>
      setCode((await commands.firmware()).campaignPauseCommand(configOpt(), id, true, io)),
    );
  campaign
    .command('resume <id>')
    .description('carry on')
    .action(async (id: string) =>
      setCode((await commands.firmware()).campaignPauseCommand(configOpt(), id, false, io)),
    );
}

function uiCommands({ program, io, setCode, configOpt }: Cli): void {
  const ui = program.command('ui').description('the technician web UI');
  ui.command('setup-code')
    .description('first boot: print a fresh one-time setup code (the previous one stops working)')
    .action(async () => setCode((await commands.ui()).uiSetupCodeCommand(configOpt(), io)));
  ui.command('user')
    .description('UI accounts')
    .command('unlock <name>')
    .description("clear an account's failed logins and lock (audited)")
    .action(async (name: string) =>
      setCode((await commands.ui()).uiUserUnlockCommand(configOpt(), name, io)),
    );

  const alerts = program.command('alerts').description('alerts: behaviour, firewall');
  alerts
    .command('list')
    .description('open alerts (all with --all)')
    .option('--all', 'include acknowledged alerts')
    .option('--device <id>', 'only this device')
    .option('--json', 'JSON output')
    .action(async (opts: { all?: boolean; json?: boolean; device?: string }) =>
      setCode((await commands.anomaly()).alertsListCommand(configOpt(), opts, io)),
    );
  alerts
    .command('ack <id>')
    .description('acknowledge an alert (recorded with your name); the next one of its kind opens a new alert')
    .action(async (id: string) =>
      setCode((await commands.anomaly()).alertsAckCommand(configOpt(), positiveInt(id), io)),
    );
}

function networkCommands({ program, io, setCode, configOpt }: Cli): void {
  const firewall = program
    .command('firewall')
    .description('the iptables/ipset ruleset compiled from segments and devices');
  firewall
    .command('render')
    .description('print the ipset and iptables-restore documents; change nothing')
    .option('--json', 'JSON output (hash, documents, warnings)')
    .action(async (opts: { json?: boolean }) =>
      setCode(
        await (await commands.segmentation()).firewallRenderCommand(configOpt(), opts.json ?? false, io),
      ),
    );
  firewall
    .command('apply')
    .description('dry-run, apply atomically, read back; on failure the previous ruleset stays in force')
    .action(async () => setCode(await (await commands.segmentation()).firewallApplyCommand(configOpt(), io)));
  firewall
    .command('status')
    .description('the ruleset in force and the last attempt')
    .action(async () => setCode((await commands.segmentation()).firewallStatusCommand(configOpt(), io)));

  const segment = program.command('segment').description('network segments (VLANs) from the configuration');
  segment
    .command('list')
    .description('configured segments')
    .action(async () => setCode((await commands.segmentation()).segmentListCommand(configOpt(), io)));
  segment
    .command('network-config')
    .description('VLAN interface configuration: systemd-networkd files (validated) or ip commands')
    .addOption(
      new Option('--format <format>', 'output format').choices(['networkd', 'ip']).default('networkd'),
    )
    .option('--out <dir>', 'write the networkd files here instead of printing them')
    .action(async (opts: { format: 'networkd' | 'ip'; out?: string }) =>
      setCode((await commands.segmentation()).segmentNetworkConfigCommand(configOpt(), opts, io)),
    );

  const mud = program.command('mud').description('RFC 8520 Manufacturer Usage Descriptions');
  mud
    .command('import <file>')
    .description("make a MUD file the device's whole allow-list (all of it or nothing)")
    .requiredOption('--device <id>', 'the device it describes')
    .action(async (file: string, opts: { device: string }) =>
      setCode((await commands.segmentation()).mudImportCommand(configOpt(), file, opts.device, io)),
    );
  const controller = mud
    .command('controller')
    .description("addresses of MUD 'controller' classes on this site");
  for (const op of ['add', 'remove'] as const) {
    controller
      .command(`${op} <uri> <address>`)
      .description(`${op} an address serving a controller URI (or a MUD URL, for my-controller)`)
      .action(async (uri: string, address: string) =>
        setCode((await commands.segmentation()).mudControllerCommand(configOpt(), op, uri, address, io)),
      );
  }
  controller
    .command('list')
    .description('registered controllers')
    .action(async () => setCode((await commands.segmentation()).mudControllerListCommand(configOpt(), io)));
}

function trustCommands({ program, io, setCode, configOpt }: Cli): void {
  const identity = program.command('identity').description('trust in sensor manufacturers');
  const trust = identity.command('trust').description('manufacturer CAs for certificate sensors');
  trust
    .command('add')
    .description('trust a manufacturer CA: its sensors may ask to join and start as pending')
    .requiredOption('--name <name>', 'manufacturer name')
    .requiredOption('--ca <file>', 'CA certificate (PEM)')
    .action(async (opts: { name: string; ca: string }) =>
      setCode((await commands.device()).trustAddCommand(configOpt(), opts.name, opts.ca, io)),
    );
  trust
    .command('list')
    .description('trusted manufacturer CAs')
    .action(async () => setCode((await commands.device()).trustListCommand(configOpt(), io)));
  const crl = trust.command('crl').description("the manufacturer CAs' certificate revocation lists");
  crl
    .command('add')
    .description(
      'add a CRL the CA signed (PEM or DER) and/or its distribution URL; revoked sensors are refused and their live sessions closed',
    )
    .requiredOption('--name <name>', 'trust anchor name')
    .option('--crl <file>', 'CRL file (PEM or DER)')
    .option('--url <url>', 'http(s) URL the running gateway fetches the next CRL from')
    .option('--refresh <seconds>', 'how often to fetch --url (default 3600)', positiveInt)
    .action(async (opts: { name: string; crl?: string; url?: string; refresh?: number }) =>
      setCode(await (await commands.trust()).trustCrlAddCommand(configOpt(), opts, io)),
    );
  crl
    .command('list')
    .description('the CRL held per trust anchor and where the next comes from')
    .option('--json', 'JSON output')
    .action(async (opts: { json?: boolean }) =>
      setCode((await commands.trust()).trustCrlListCommand(configOpt(), opts.json ?? false, io)),
    );

  const uplink = program.command('uplink').description('the cloud MQTT uplink');
  uplink
    .command('csr')
    .description("print a PKCS#10 request for the uplink's client key (created on first use)")
    .requiredOption('--subject <dn>', 'subject, e.g. "CN=gateway-17,O=Example"')
    .action(async (opts: { subject: string }) =>
      setCode(await (await commands.device()).uplinkCsrCommand(configOpt(), opts.subject, io)),
    );
}

function fleetOperatorCommands({ program, io, setCode }: Cli): Command {
  // The fleet plane (docs/fleet.md): the operator's commands talk to any MQTT 5 broker, like the uplink.
  const fleet = program.command('fleet').description('many gateways over the cloud MQTT broker');
  fleet
    .command('keygen <dir>')
    .description('make an Ed25519 operator key pair (operator.key, operator.pub) in DIR')
    .action(async (dir: string) => setCode((await commands.fleet()).fleetKeygenCommand(dir, io)));
  fleet
    .command('sign <doc>')
    .description('sign a desired-state document (YAML) with the operator key')
    .requiredOption('--key <file>', 'operator private key (from fleet keygen)')
    // Not --version: the program's own --version is recognised anywhere on the command line.
    .requiredOption('--doc-version <n>', 'document version: above the last applied one', positiveInt)
    .requiredOption('--expires <time>', 'ISO time or a duration from now (30m, 24h, 7d)')
    .option('--recipients <file>', 'gateways to seal PSKs to: the output of fleet status --json')
    .option('--out <file>', 'write the signed document here (default: stdout)')
    .action(
      async (
        doc: string,
        o: { key: string; docVersion: number; expires: string; recipients?: string; out?: string },
      ) => setCode(await (await commands.fleet()).fleetSignCommand(doc, { ...o, version: o.docVersion }, io)),
    );
  brokerOpts(
    fleet
      .command('publish <signed>')
      .description('publish a signed document (retained) to one gateway or a group')
      .option('--gateway <prefix>', "the gateway's topic prefix")
      .option('--group <name>', 'a group of gateways')
      .option('--group-topic <template>', 'where groups listen', 'fleet/groups/{group}/desired'),
  ).action(async (signed: string, o: BrokerArgs & { gateway?: string; group?: string; groupTopic: string }) =>
    setCode(await (await commands.fleet()).fleetPublishCommand(broker(o), o, signed, io)),
  );
  brokerOpts(
    fleet
      .command('status')
      .description(
        'a table of the gateways from their retained presence and state; checks signed audit heads',
      )
      .option('--known <file>', 'what this operator saw before (identities, highest audit heads)')
      .option('--json', 'JSON output (also the input of fleet sign --recipients)')
      .option('--wait <ms>', 'longest wait for retained documents', positiveInt, 5000),
  ).action(async (o: BrokerArgs & { known?: string; json?: boolean; wait: number }) => {
    const m = await commands.fleet();
    setCode(
      await m.fleetStatusCommand(
        broker(o),
        { known: o.known ?? m.DEFAULT_KNOWN_FILE, json: o.json ?? false, waitMs: o.wait },
        io,
      ),
    );
  });
  brokerOpts(
    fleet
      .command('watch')
      .description('print alerts, presence changes and desired-state results as they arrive')
      .option('--count <n>', 'exit after this many messages', positiveInt),
  ).action(async (o: BrokerArgs & { count?: number }) =>
    setCode(await (await commands.fleet()).fleetWatchCommand(broker(o), o, io)),
  );
  return fleet;
}

function fleetGatewayCommands({ io, setCode, configOpt }: Cli, fleet: Command): void {
  fleet
    .command('show')
    .description(
      'on this gateway: the operator key in force, the fleet lock, the documents applied, the profiles they defined, recent refusals',
    )
    .option('--json', 'JSON output')
    .action(async (o: { json?: boolean }) =>
      setCode((await commands.fleet()).fleetShowCommand(configOpt(), o.json ?? false, io)),
    );
  fleet
    .command('lock')
    .description('on this gateway: refuse every remote desired-state document until unlock')
    .action(async () => setCode((await commands.fleet()).fleetLockCommand(configOpt(), true, io)));
  fleet
    .command('unlock')
    .description('on this gateway: accept signed remote documents again')
    .action(async () => setCode((await commands.fleet()).fleetLockCommand(configOpt(), false, io)));
}
function buildProgram(io: Io, setCode: (code: number) => void): Command {
  const program = new Command('portcullis')
    .description('Portcullis edge security gateway')
    .version(VERSION, '-V, --version')
    .option('-c, --config <file>', 'configuration file (YAML)')
    .addHelpText('after', HELP_FOOTER)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .showHelpAfterError();
  const configOpt = () => program.opts<{ config?: string }>().config;
  const cli: Cli = { program, io, setCode, configOpt };
  coreCommands(cli);
  auditCommands(cli);
  deviceStateCommands(cli, deviceCommands(cli));
  policyCommands(cli);
  flowsCommands(cli);
  updateCommands(cli);
  backupCommands(cli);
  firmwareCommands(cli);
  uiCommands(cli);
  networkCommands(cli);
  trustCommands(cli);
  fleetGatewayCommands(cli, fleetOperatorCommands(cli));
  return program;
}

/** Runs the CLI and returns the exit code; never throws. */
export async function main(argv: string[], io: Io = stdio): Promise<number> {
  let code: number = EXIT.ok;
  const program = buildProgram(io, (c) => {
    code = c;
  });
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version arrive here with exit code 0.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (err instanceof ConfigError) {
      io.err(`error [${err.code}]: ${err.message}`);
      return EXIT.usage;
    }
    if (err instanceof PortcullisError) {
      io.err(`error [${err.code}]: ${err.message}`);
      return EXIT.failure;
    }
    io.err(`error: ${err instanceof Error ? err.message : String(err)}`);
    return EXIT.failure;
  }
}
