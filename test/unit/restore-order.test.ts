/**
 * The order a restore stops components in: an etcd leader after its followers (by the
 * roles described just before the stop), every other plugin in its start order reversed.
 */
import { describe, expect, it } from 'vitest';
import { stopGroups } from '../../coordinator/restore/plan.js';
import type { RestoreTarget } from '../../coordinator/restore/context.js';
import type { Tier } from '../../lib/wire.js';

function target(node: string, plugin: string, tier: Tier, role: string): RestoreTarget {
  const live = { name: plugin, plugin, tier, role, shard: plugin, paths: {}, configFiles: [] };
  return { node, component: plugin, live, source: {} as RestoreTarget['source'] };
}

const names = (groups: RestoreTarget[][]) => groups.map((g) => g.map((t) => `${t.node}/${t.component}`).sort());

describe('restore stop order', () => {
  const etcd = [target('n1', 'etcd', 'storage', 'leader'), target('n2', 'etcd', 'storage', 'follower'), target('n3', 'etcd', 'storage', 'follower')];

  it('stops etcd followers first and the leader alone after them', () => {
    expect(names(stopGroups(etcd, new Map()))).toEqual([['n2/etcd', 'n3/etcd'], ['n1/etcd']]);
  });

  it('uses the roles as they are at the stop, not as they were planned', () => {
    const now = new Map([
      ['n1/etcd', 'follower'],
      ['n3/etcd', 'leader'],
    ]);
    expect(names(stopGroups(etcd, now))).toEqual([['n1/etcd', 'n2/etcd'], ['n3/etcd']]);
  });

  it('stops everything at once when no member says it leads (leader unknown)', () => {
    const unknown = new Map(etcd.map((t) => [`${t.node}/${t.component}`, 'unknown']));
    expect(names(stopGroups(etcd, unknown))).toEqual([['n1/etcd', 'n2/etcd', 'n3/etcd']]);
  });

  it('stops storage before meta for plugins without a stop order, group by group across plugins', () => {
    const dirs = [target('n1', 'directory', 'meta', 'primary'), target('n2', 'directory', 'storage', 'primary')];
    expect(names(stopGroups([...dirs, ...etcd], new Map()))).toEqual([
      ['n2/directory', 'n2/etcd', 'n3/etcd'],
      ['n1/directory', 'n1/etcd'],
    ]);
  });
});
