import type { FC } from 'hono/jsx';
import type { VerifyResult } from '../../../gateway/src/audit/index.ts';
import type { AuditRow } from '../../../gateway/src/store/index.ts';
import { when } from './components.tsx';
import { actionLabel } from './labels.ts';

export interface AuditFilter {
  actor: string;
  action: string;
  target: string;
  before: number | undefined;
}

export const AuditPage: FC<{
  rows: AuditRow[];
  filter: AuditFilter;
  verify: VerifyResult | undefined;
  pageSize: number;
}> = ({ rows, filter, verify, pageSize }) => {
  const q = (extra: Record<string, string>) =>
    new URLSearchParams({
      actor: filter.actor,
      action: filter.action,
      target: filter.target,
      ...extra,
    }).toString();
  const last = rows.at(-1);
  return (
    <>
      <h1>Audit log</h1>
      <p class="row">
        <a class="button" href={`/audit?${q({ verify: '1' })}`}>
          Verify the hash chain
        </a>
        <a class="button" href={`/audit/export?${q({})}`} download="portcullis-audit.jsonl">
          Export (JSON lines)
        </a>
      </p>
      {verify ? (
        <p class={`flash ${verify.ok ? 'ok' : 'error'}`} role="status">
          {verify.ok
            ? `Chain intact: ${verify.entries} entries verified.`
            : `Chain broken at entry ${verify.firstBadSeq}: ${verify.reason}.`}
        </p>
      ) : null}
      <form method="get" action="/audit" class="row">
        <div>
          <label for="a-actor">Who</label>
          <input id="a-actor" name="actor" value={filter.actor} placeholder="ui:alice, anomaly, flows:…" />
        </div>
        <div>
          <label for="a-action">Action</label>
          <input id="a-action" name="action" value={filter.action} placeholder="device.quarantine" />
        </div>
        <div>
          <label for="a-target">Target</label>
          <input id="a-target" name="target" value={filter.target} placeholder="device id" />
        </div>
        <div>
          <button type="submit">Filter</button>
        </div>
      </form>
      <div class="scroll">
        <table>
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">When (UTC)</th>
              <th scope="col">Who</th>
              <th scope="col">Action</th>
              <th scope="col">Target</th>
              <th scope="col" class="hide-narrow">
                Details
              </th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr>
                <td>{r.seq}</td>
                <td>{when(r.ts)}</td>
                <td>{r.actor}</td>
                <td>
                  {actionLabel(r.action)}
                  <div class="muted">
                    <code>{r.action}</code>
                  </div>
                </td>
                <td>{r.target ?? '—'}</td>
                <td class="hide-narrow">
                  <code>{r.details.length > 160 ? `${r.details.slice(0, 160)}…` : r.details}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {rows.length === pageSize && last ? (
        <p>
          <a href={`/audit?${q({ before: String(last.seq) })}`}>Older entries</a>
        </p>
      ) : null}
    </>
  );
};
