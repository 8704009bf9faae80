// Starts a TypeScript worker thread: a worker does not inherit the tsx loader of the thread that made it,
// so it registers it first, then loads `workerData.entry`.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
