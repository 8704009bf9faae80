import { randomUUID } from 'node:crypto';
import type { FlowDecider, FlowQuestion } from '../policy/service.ts';

/** Questions waiting for an answer at most (each is bounded by its budget anyway, ≤ 1 s). */
const MAX_PENDING = 10_000;

interface Point {
  send(line: string): boolean;
}

/**
 * Flows registered as synchronous decision points (control socket, scope `policy:decide`): a profile with
 * `decision: {flow: NAME}` has each of its messages put to the flow whose token is NAME, and the data path waits
 * up to the profile's budget. Only the flow asked may answer its question; an answer after the budget is
 * ignored (the message was already decided by `onTimeout`).
 */
export class DecisionPoints implements FlowDecider {
  private readonly points = new Map<string, Set<Point>>();
  private readonly pending = new Map<
    string,
    { flow: string; resolve: (a: 'allow' | 'deny' | undefined) => void; timer: NodeJS.Timeout }
  >();
  private turn = 0;

  /** Registers one stream of flow `flow`; the returned function unregisters it. */
  register(flow: string, point: Point): () => void {
    let set = this.points.get(flow);
    if (!set) {
      set = new Set();
      this.points.set(flow, set);
    }
    set.add(point);
    return () => {
      set.delete(point);
      if (set.size === 0) this.points.delete(flow);
    };
  }

  registered(flow: string): number {
    return this.points.get(flow)?.size ?? 0;
  }

  ask(flow: string, question: FlowQuestion, budgetMs: number): Promise<'allow' | 'deny' | undefined> {
    const set = this.points.get(flow);
    if (!set || set.size === 0 || this.pending.size >= MAX_PENDING) return Promise.resolve(undefined);
    const id = randomUUID();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(undefined);
      }, budgetMs);
      this.pending.set(id, { flow, resolve, timer });
      // Several editors' deploys may register the same flow: the questions go round them.
      const all = [...set];
      const point = all[this.turn++ % all.length]!;
      const line = `${JSON.stringify({ type: 'policy.question', id, budgetMs, ...question })}\n`;
      if (!point.send(line)) this.answer(flow, id, undefined);
    });
  }

  /** An answer from flow `flow`; false when no such question of that flow is waiting (late, or not its own). */
  answer(flow: string, id: string, allow: boolean | undefined): boolean {
    const p = this.pending.get(id);
    if (!p || p.flow !== flow) return false;
    this.pending.delete(id);
    clearTimeout(p.timer);
    p.resolve(allow === undefined ? undefined : allow ? 'allow' : 'deny');
    return true;
  }
}
