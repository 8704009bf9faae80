import { readFileSync } from 'node:fs';

/** A group's id from /etc/group (the appliance has no NSS beyond files), or undefined if there is none. */
export function findGroupId(name: string, groupFile = '/etc/group'): number | undefined {
  for (const line of readFileSync(groupFile, 'utf8').split('\n')) {
    const [group, , gid] = line.split(':');
    if (group === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return undefined;
}
