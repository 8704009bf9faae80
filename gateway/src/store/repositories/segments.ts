import type { Db } from '../database.ts';

export interface Segment {
  name: string;
  vlanId: number | null;
  parentInterface: string | null;
  subnet: string | null;
  gatewayAddress: string | null;
  defaultPolicy: 'deny' | 'allow';
  createdAt: string;
}

interface SegmentRow {
  name: string;
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
        `INSERT INTO segments (name, vlan_id, parent_interface, subnet, gateway_address, default_policy, created_at)
         VALUES (@name, @vlanId, @parentInterface, @subnet, @gatewayAddress, @defaultPolicy, @now)
         ON CONFLICT(name) DO UPDATE SET vlan_id = excluded.vlan_id, parent_interface = excluded.parent_interface,
           subnet = excluded.subnet, gateway_address = excluded.gateway_address, default_policy = excluded.default_policy`,
      )
      .run({ ...s, now });
    return this.get(s.name)!;
  }

  get(name: string): Segment | undefined {
    const row = this.db.prepare('SELECT * FROM segments WHERE name = ?').get(name) as SegmentRow | undefined;
    return row && toSegment(row);
  }

  list(): Segment[] {
    return (this.db.prepare('SELECT * FROM segments ORDER BY name').all() as SegmentRow[]).map(toSegment);
  }
}
