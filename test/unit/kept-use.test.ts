/**
 * Jobs that use a component's kept snapshot (a staging that trusts its hashes, a backup
 * that takes it over or replaces it) run one at a time; other components do not wait.
 */
import { describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentNode } from '../../agent/node.js';
import type { AgentConfig } from '../../agent/config.js';
import { createLogger } from '../../lib/log.js';

/** a node whose components are etcd members (the etcd plugin always keeps its last snapshot) */
function node(): AgentNode {
  const components = ['etcd', 'a', 'b'].map((name) => ({ name, plugin: 'etcd', tier: 'meta' }));
  return new AgentNode({ node: 'n1', components } as unknown as AgentConfig, createLogger({ name: 'test', level: 'silent' }));
}

describe('use of a kept snapshot', () => {
  it('runs the jobs of one component one after another, in order, even after a failure', async () => {
    const n = node();
    const events: string[] = [];
    const job = (name: string, fail = false) =>
      n.withKept('etcd', async () => {
        events.push(`${name} start`);
        await sleep(30);
        events.push(`${name} end`);
        if (fail) throw new Error(`${name} failed`);
        return name;
      });
    const results = await Promise.allSettled([job('stage'), job('snapshot', true), job('cleanup')]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(events).toEqual(['stage start', 'stage end', 'snapshot start', 'snapshot end', 'cleanup start', 'cleanup end']);
  });

  it('lets other components run at the same time', async () => {
    const n = node();
    const events: string[] = [];
    const job = (component: string) =>
      n.withKept(component, async () => {
        events.push(`${component} start`);
        await sleep(30);
        events.push(`${component} end`);
      });
    await Promise.all([job('a'), job('b')]);
    expect(events.slice(0, 2).sort()).toEqual(['a start', 'b start']);
  });
});
