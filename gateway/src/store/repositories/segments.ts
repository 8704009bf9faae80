import type { Db } from '../database.ts';

export type SegmentRole = 'sensors' | 'protected' | 'management';

export interface Segment {
  name: string;
  role: SegmentRole;
  /** The segment's interface on the gateway: a VLAN interface (`parent.vlan`), a bridge or a port. */
  interface: string | null;
  vlanId: number | null;
  parentInterface: string | null;
  subnet: string | null;
  gatewayAddress: string | null;
  defaultPolicy: 'deny' | 'allow';
  createdAt: string;
}

interface SegmentRow {
  name: string;
  role: SegmentRole;
  interface: string | null;
  vlan_id: number | null;
  parent_interface: string | null;
  subnet: string | null;
  gateway_address: string | null;
  default_policy: 'deny' | 'allow';
  created_at: string;
}

function toSegment(r: SegmentRow): Segment {
  return {
    name: r.name,
    role: r.role,
    interface: r.interface,
    vlanId: r.vlan_id,
    parentInterface: r.parent_interface,
    subnet: r.subnet,
    gatewayAddress: r.gateway_address,
    defaultPolicy: r.default_policy,
    createdAt: r.created_at,
  };
}

export class SegmentRepository {
  constructor(private readonly db: Db) {}

  upsert(s: Omit<Segment, 'createdAt'>, now: string): Segment {
    this.db
      .prepare(
        `INSERT INTO segments (name, role, interface, vlan_id, parent_interface, subnet, gateway_address,
           default_policy, created_at)
         VALUES (@name, @role, @interface, @vlanId, @parentInterface, @subnet, @gatewayAddress, @defaultPolicy, @now)
         ON CONFLICT(name) DO UPDATE SET role = excluded.role, interface = excluded.interface, vlan_id = excluded.vlan_id, parent_interface = excluded.parent_interface,
           subnet = excluded.subnet, gateway_address = excluded.gateway_address, default_policy = excluded.default_policy`,
      )
      .run({ ...s, now });
    return this.get(s.name)!;
  }

  get(name: string): Segment | undefined {
    const row = this.db.prepare('SELECT * FROM segments WHERE name = ?').get(name) as SegmentRow | undefined;
    return row && toSegment(row);
  }

  /** Removes a segment no device is in; returns false (and keeps it) while devices still are. */
  deleteIfUnused(name: string): boolean {
    const used = this.db.prepare('SELECT 1 FROM devices WHERE segment = ? LIMIT 1').get(name);
    if (used) return false;
    this.db.prepare('DELETE FROM segments WHERE name = ?').run(name);
    return true;
  }

  list(): Segment[] {
    return (this.db.prepare('SELECT * FROM segments ORDER BY name').all() as SegmentRow[]).map(toSegment);
  }
}
