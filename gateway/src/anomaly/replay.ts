import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { Detector, type DetectorOptions, type Finding } from './detector.ts';
import { parseEventLine } from './events.ts';

export interface ReplaySummary {
  events: number;
  malformed: number;
  findings: number;
  devices: number;
}

/** The replay output line (docs/anomaly.md): the same findings the live path turns into alerts. */
function outputLine(f: Finding): string {
  return JSON.stringify({
    ts: new Date(f.ts).toISOString(),
    device: f.device,
    score: f.score,
    severity: f.severity,
    reasons: f.reasons.map(({ feature, observed, expected, text }) => ({
      feature,
      observed,
      expected,
      text,
    })),
  });
}

/**
 * Runs events from a JSON-lines stream through the live detector, in the events' own time. Malformed lines
 * are reported (with their number) and skipped; events must come in time order per device (late ones are
 * counted in the window they arrive in).
 */
export async function replay(
  input: Readable,
  options: Partial<DetectorOptions>,
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<ReplaySummary> {
  const detector = new Detector(options);
  const summary: ReplaySummary = { events: 0, malformed: 0, findings: 0, devices: 0 };
  let lineNo = 0;
  let last = Number.NEGATIVE_INFINITY;
  const emit = (fs: Finding[]) => {
    for (const f of fs) {
      summary.findings++;
      out(outputLine(f));
    }
  };
  for await (const line of createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })) {
    lineNo++;
    if (line.trim() === '') continue;
    const r = parseEventLine(line);
    if (!r.ok) {
      summary.malformed++;
      err(`line ${lineNo}: ${r.error} (skipped)`);
      continue;
    }
    summary.events++;
    last = Math.max(last, r.event.ts);
    emit(detector.observe(r.event));
  }
  // Close the windows still open at the end of the input.
  if (Number.isFinite(last)) emit(detector.flush(last + detector.options.windowMs));
  summary.devices = detector.deviceCount;
  return summary;
}
