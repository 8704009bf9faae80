import type { FC } from 'hono/jsx';
import type { ComplianceReport } from '../../../gateway/src/compliance/index.ts';
import { Badge, when } from './components.tsx';

export const CompliancePage: FC<{ report: ComplianceReport }> = ({ report }) => (
  <>
    <h1>Compliance self-assessment</h1>
    <p>
      ETSI EN 303 645 and NIST IR 8259A, assessed from the running configuration at {when(report.generatedAt)}
      : {report.summary.met} met, {report.summary['not met']} not met, {report.summary['n.a.']} not
      applicable.{' '}
      <a href="/compliance/report" target="_blank" rel="noopener">
        Printable report (opens in a new tab; print it from there)
      </a>
    </p>
    <div class="scroll">
      <table>
        <thead>
          <tr>
            <th scope="col">Provision</th>
            <th scope="col">Title</th>
            <th scope="col">Status</th>
            <th scope="col">Evidence</th>
          </tr>
        </thead>
        <tbody>
          {report.findings.map((f) => (
            <tr>
              <td>
                {f.standard} {f.provision}
              </td>
              <td>{f.title}</td>
              <td>
                <Badge value={f.status} />
              </td>
              <td>
                <ul>
                  {f.evidence.map((e) => (
                    <li>{e}</li>
                  ))}
                </ul>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  </>
);
