/** The fleet plane's MQTT topics (docs/fleet.md); every gateway's are under its uplink topic prefix. */
export const fleetTopics = (prefix: string) => ({
  status: `${prefix}/gateway/status`,
  state: `${prefix}/gateway/state`,
  alerts: `${prefix}/gateway/alerts`,
  audit: `${prefix}/gateway/audit`,
  auditAck: `${prefix}/gateway/audit/ack`,
  desired: `${prefix}/gateway/desired`,
  result: `${prefix}/gateway/desired/result`,
});

/** Topic suffixes under the prefix, for messages that go through the uplink's durable queue. */
export const STREAM_SUFFIX = { alerts: 'gateway/alerts', audit: 'gateway/audit' } as const;

export function groupTopic(template: string, group: string): string {
  return template.replaceAll('{group}', group);
}
