/**
 * Which backups a retention policy keeps (prune's selection), rule by rule, on a made-up
 * history: times in UTC, a bucket (hour, day, ISO week, month, year) keeps its newest
 * backup, and only buckets that have a backup count.
 */
import { describe, expect, it } from 'vitest';
import { parseSpan, selectKept, spanBefore, type RetentionPolicy } from '../../lib/repo/prune.js';

/** a backup committed at `at` (ISO, UTC), named by it */
const b = (at: string) => ({ backupId: at, committedAt: at });

/** a backup every 6 hours from 2025-11-01T00 through 2026-12-05T18 (one year, one month and more) */
const history = (() => {
  const out: { backupId: string; committedAt: string }[] = [];
  for (let t = Date.UTC(2025, 10, 1); t <= Date.UTC(2026, 11, 5, 18); t += 6 * 3600_000) out.push(b(new Date(t).toISOString()));
  return out;
})();

const kept = (policy: RetentionPolicy, backups = history) => [...selectKept(backups, policy).keys()].sort();

describe('retention policy', () => {
  it('keep-last keeps the newest N whatever their times', () => {
    expect(kept({ keepLast: 3 })).toEqual(['2026-12-05T06:00:00.000Z', '2026-12-05T12:00:00.000Z', '2026-12-05T18:00:00.000Z']);
  });

  it('keep-hourly, -daily, -monthly, -yearly keep the newest of each of the last N hours, days, months, years that have one', () => {
    // every 6 hours: the last 3 hours that have a backup are the last 3 backups
    expect(kept({ keepHourly: 3 })).toEqual(kept({ keepLast: 3 }));
    expect(kept({ keepDaily: 3 })).toEqual(['2026-12-03T18:00:00.000Z', '2026-12-04T18:00:00.000Z', '2026-12-05T18:00:00.000Z']);
    expect(kept({ keepMonthly: 3 })).toEqual(['2026-10-31T18:00:00.000Z', '2026-11-30T18:00:00.000Z', '2026-12-05T18:00:00.000Z']);
    expect(kept({ keepYearly: 5 })).toEqual(['2025-12-31T18:00:00.000Z', '2026-12-05T18:00:00.000Z']);
  });

  it('keep-weekly buckets by ISO week (Monday to Sunday)', () => {
    // 2026-11-29 is a Sunday: the newest of its week; 2026-12-05 is a Saturday
    expect(kept({ keepWeekly: 3 })).toEqual(['2026-11-22T18:00:00.000Z', '2026-11-29T18:00:00.000Z', '2026-12-05T18:00:00.000Z']);
    // the ISO year: 2026-01-01 (a Thursday) is in week 1 of 2026, 2025-12-28 (a Sunday) in week 52 of 2025
    const why = selectKept([b('2025-12-28T10:00:00.000Z'), b('2025-12-29T10:00:00.000Z'), b('2026-01-01T10:00:00.000Z')], { keepWeekly: 5 });
    expect(why.get('2026-01-01T10:00:00.000Z')).toEqual(['weekly 2026-W01']);
    expect(why.has('2025-12-29T10:00:00.000Z')).toBe(false); // the same week, older
    expect(why.get('2025-12-28T10:00:00.000Z')).toEqual(['weekly 2025-W52']);
  });

  it('a bucket without a backup does not count: the last N days that have one, however far back', () => {
    const sparse = [b('2026-01-10T01:00:00.000Z'), b('2026-03-02T01:00:00.000Z'), b('2026-03-02T05:00:00.000Z'), b('2026-06-30T23:59:59.000Z')];
    expect(kept({ keepDaily: 3 }, sparse)).toEqual(['2026-01-10T01:00:00.000Z', '2026-03-02T05:00:00.000Z', '2026-06-30T23:59:59.000Z']);
  });

  it('keep-within keeps every backup within the span before the newest one, not before now', () => {
    const within = kept({ keepWithin: parseSpan('1d')! });
    expect(within).toEqual(['2026-12-04T18:00:00.000Z', '2026-12-05T00:00:00.000Z', '2026-12-05T06:00:00.000Z', '2026-12-05T12:00:00.000Z', '2026-12-05T18:00:00.000Z']);
    // a history that stopped a year ago keeps the same: the span is counted from its newest backup
    const old = history.filter((x) => x.committedAt < '2025-12-01');
    expect(kept({ keepWithin: parseSpan('12h')! }, old)).toEqual(['2025-11-30T06:00:00.000Z', '2025-11-30T12:00:00.000Z', '2025-11-30T18:00:00.000Z']);
    // spans far back keep everything
    expect(kept({ keepWithin: parseSpan('999999y')! })).toHaveLength(history.length);
  });

  it('rules add up; each kept backup says why', () => {
    const why = selectKept(history, { keepLast: 1, keepDaily: 2, keepYearly: 2, keepWithin: parseSpan('6h')! });
    expect(why.get('2026-12-05T18:00:00.000Z')).toEqual(['last', 'within 6h', 'daily 2026-12-05', 'yearly 2026']);
    expect(why.get('2026-12-05T12:00:00.000Z')).toEqual(['within 6h']);
    expect(why.get('2026-12-04T18:00:00.000Z')).toEqual(['daily 2026-12-04']);
    expect(why.get('2025-12-31T18:00:00.000Z')).toEqual(['yearly 2025']);
    expect(why.size).toBe(4);
  });

  it('spans: years, months, weeks, days, hours in that order; calendar months', () => {
    expect(parseSpan('1y6m')).toMatchObject({ years: 1, months: 6, weeks: 0, days: 0, hours: 0 });
    expect(parseSpan('2w3d12h')).toMatchObject({ weeks: 2, days: 3, hours: 12 });
    for (const bad of ['', '7', 'd', '3d1w', '1.5d', '-1d', '7x', '1 d']) expect(parseSpan(bad), bad).toBeUndefined();
    expect(new Date(spanBefore(new Date('2026-03-31T10:00:00Z'), parseSpan('1m')!)).toISOString()).toBe('2026-03-03T10:00:00.000Z');
    expect(new Date(spanBefore(new Date('2026-12-05T10:00:00Z'), parseSpan('1y2w36h')!)).toISOString()).toBe('2025-11-19T22:00:00.000Z');
  });
});
