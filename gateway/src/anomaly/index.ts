export {
  type BehaviourStatus,
  DEFAULT_DETECTOR_OPTIONS,
  Detector,
  type DetectorOptions,
  type ExpectedChangeReason,
  type Finding,
  type FindingKind,
  type Reason,
  type Severity,
} from './detector.ts';
export { type DetectorEvent, parseEventLine } from './events.ts';
export { replay } from './replay.ts';
export { AnomalyService, responseFor } from './service.ts';
export { type AlertRecord, alertRecord, toSyslogRecord } from './siem.ts';
