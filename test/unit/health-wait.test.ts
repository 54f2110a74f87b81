/**
 * The wait for a started component: `timeoutMs` starts again each time the component's
 * progress changes (a dataset loading), up to `PROGRESS_CAP` times it in all; without
 * progress it ends after `timeoutMs`.
 */
import { describe, expect, it } from 'vitest';
import { PROGRESS_CAP, waitUntilHealthy } from '../../plugins/engines/health.js';
import { createLogger } from '../../lib/log.js';
import type { Health } from '../../lib/wire.js';

const ctx = () => ({ node: 'n1', log: createLogger({ level: 'silent', name: 'test' }), signal: new AbortController().signal });

/** a check that answers `answer(ms since the wait began)` */
function after(answer: (ms: number) => Health): () => Promise<Health> {
  const t0 = Date.now();
  return () => Promise.resolve(answer(Date.now() - t0));
}

describe('waiting for a component to become healthy', () => {
  it('goes on past timeoutMs while the component makes progress', async () => {
    await expect(
      waitUntilHealthy('loader', 200, ctx(), after((ms) => (ms > 700 ? { ok: true, message: 'up' } : { ok: false, message: 'LOADING', progress: `${Math.floor(ms / 50)}` })), { intervalMs: 20 }),
    ).resolves.toBeUndefined();
  });

  it('without progress, ends after timeoutMs; after progress stops, timeoutMs after the last change', async () => {
    const t0 = Date.now();
    await expect(waitUntilHealthy('idle', 200, ctx(), after(() => ({ ok: false, message: 'down' })), { intervalMs: 20 })).rejects.toMatchObject({
      code: 'LOCKSTEP_E_HEALTH_TIMEOUT',
      message: 'idle did not become healthy within 200 ms: down',
    });
    expect(Date.now() - t0).toBeLessThan(200 * PROGRESS_CAP);
    const stalled = waitUntilHealthy('stalled', 200, ctx(), after((ms) => ({ ok: false, message: 'LOADING', progress: `${Math.min(ms, 1500) >> 6}` })), { intervalMs: 20 });
    await expect(stalled).rejects.toMatchObject({ code: 'LOCKSTEP_E_HEALTH_TIMEOUT', message: expect.stringMatching(/^stalled did not become healthy within 200 ms \(\d+ ms in all; the last progress it showed: 23\): LOADING$/) });
  });

  it('stops at PROGRESS_CAP times timeoutMs however long the progress goes on', async () => {
    const t0 = Date.now();
    await expect(waitUntilHealthy('endless', 100, ctx(), after((ms) => ({ ok: false, message: 'syncing', progress: `${ms}` })), { intervalMs: 20 })).rejects.toMatchObject({ code: 'LOCKSTEP_E_HEALTH_TIMEOUT' });
    const waited = Date.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(100 * PROGRESS_CAP - 50);
    expect(waited).toBeLessThan(100 * PROGRESS_CAP + 2000);
  });
});
