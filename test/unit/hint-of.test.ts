/** The advice of failed fan-out outcomes, carried up to the error that sums them up. */
import { describe, expect, it } from 'vitest';
import { hintOf, type Outcome } from '../../coordinator/fanout.js';

const failed = (node: string, hint?: string): Outcome<unknown> => ({ target: { node, component: 'db' }, ok: false, error: { code: 'LOCKSTEP_E_STAGE_FAILED', message: 'no', ...(hint ? { hint } : {}) } });
const ok = (node: string): Outcome<unknown> => ({ target: { node, component: 'db' }, ok: true, result: {}, job: {} as never });

describe('hintOf', () => {
  it('gives one hint once, names each when they differ, and nothing when none advises', () => {
    expect(hintOf([ok('n1'), failed('n2')])).toEqual({});
    expect(hintOf([failed('n1', 'move the data down'), failed('n2', 'move the data down'), failed('n3')])).toEqual({ hint: 'move the data down' });
    expect(hintOf([failed('n1', 'move the data down'), ok('n2'), failed('n3', 'point it at /data')])).toEqual({ hint: 'n1/db: move the data down; n3/db: point it at /data' });
  });
});
